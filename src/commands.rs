//! The offline subcommands: `check` (validate the cards directory and run every rule's test
//! cases) and `eval` (evaluate a request file and print the cards).

use crate::catalog::Catalog;
use crate::cli::{CheckArgs, EvalArgs, ReportArgs, SampleBundleArgs};
use crate::fhir::CdsRequest;
use crate::pipeline::{evaluate, plan_prefetch};
use crate::protocol::SchemaSet;
use std::process::ExitCode;

fn compile_schemas() -> Option<SchemaSet> {
    SchemaSet::compile().map_err(|e| eprintln!("embedded schemas do not compile: {e}")).ok()
}

pub fn check(args: CheckArgs) -> ExitCode {
    let Some(schemas) = compile_schemas() else { return ExitCode::from(2) };
    let catalog = match Catalog::load(&args.cards, &schemas) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("check: {} problem(s) in {}", errors.0.len(), args.cards.display());
            return ExitCode::from(1);
        }
    };
    let results = crate::rules::testcase::run_all(&catalog, &schemas);
    let width = results.iter().map(|r| r.0.len()).max().unwrap_or(10);
    println!("{:<width$}  {:<6}  case", "rule", "result");
    let mut failed = 0;
    for (rule, case, result) in &results {
        match result {
            Ok(()) => println!("{rule:<width$}  {:<6}  {case}", "pass"),
            Err(why) => {
                failed += 1;
                println!("{rule:<width$}  {:<6}  {case}: {why}", "FAIL");
            }
        }
    }
    let rules = catalog.rules.rules.len();
    println!(
        "\n{rules} rules, {} value sets, {} cases: {} passed, {failed} failed",
        catalog.rules.index.len(),
        results.len(),
        results.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn eval(args: EvalArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("eval: {msg}");
        ExitCode::from(2)
    };
    let Some(schemas) = compile_schemas() else { return ExitCode::from(2) };
    let catalog = match Catalog::load(&args.cards, &schemas) {
        Ok(c) => c,
        Err(errors) => return fail(format!("the cards directory is invalid:\n{errors}")),
    };
    let text = match std::fs::read(&args.file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", args.file.display())),
    };
    let mut value: serde_json::Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => return fail(format!("{}: not JSON: {e}", args.file.display())),
    };
    let now = args.now.unwrap_or_else(chrono::Utc::now);
    // Sample files carry relative dates: move them to the evaluation instant.
    crate::samples::resolve(&mut value, now);
    let hook = value.get("hook").and_then(|h| h.as_str()).unwrap_or_default().to_string();
    let service = match &args.service {
        Some(id) => catalog.service(id),
        None => catalog.services.iter().find(|s| s.hook == hook),
    };
    let Some(service) = service else { return fail(format!("no service answers hook '{hook}'")) };
    let mut request = match CdsRequest::from_value(value, &schemas, &service.hook) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let plan = plan_prefetch(&mut request, service);
    if !plan.missing.is_empty() {
        let keys: Vec<&str> = plan.missing.iter().map(|(k, _)| k.as_str()).collect();
        return fail(format!("prefetch keys missing (eval does not call FHIR servers): {}", keys.join(", ")));
    }
    let evaluation = evaluate(&catalog.rules, &request, &plan.resources, now);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation.response).expect("serialisable"));
    } else {
        println!("{} → {} card(s) at {}", service.id, evaluation.response.cards.len(), now.to_rfc3339());
        for card in &evaluation.response.cards {
            let rule = card.source.topic.as_ref().map(|t| t.code.as_str()).unwrap_or("");
            println!("{:<8}  {:<45}  {}", card.indicator.as_str(), rule, card.summary);
        }
        if let Some(w) = evaluation.response.extension.get(crate::pipeline::WARNINGS_EXTENSION) {
            println!("warnings: {w}");
        }
    }
    ExitCode::SUCCESS
}

pub fn report(args: ReportArgs) -> ExitCode {
    let store = match crate::store::FeedbackStore::open(&args.database, args.patient_key_secret.as_deref(), None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("report: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let rules = match runtime.block_on(store.analytics(args.since)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("report: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "rules": rules })).expect("serialisable"));
        return ExitCode::SUCCESS;
    }
    let width = rules.iter().map(|r| r.rule.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:>6}  {:>8}  {:>10}  {:>10}  {:>8}  top override reasons",
        "rule", "issued", "accepted", "overridden", "suppressed", "override"
    );
    for r in &rules {
        let reasons: Vec<String> = r.top_override_reasons.iter().map(|x| format!("{} ({})", x.code, x.count)).collect();
        println!(
            "{:<width$}  {:>6}  {:>8}  {:>10}  {:>10}  {:>7.0}%  {}",
            r.rule,
            r.issued,
            r.accepted,
            r.overridden,
            r.suppressed,
            r.override_rate * 100.0,
            reasons.join(", ")
        );
    }
    if rules.is_empty() {
        println!("(no cards recorded yet)");
    }
    ExitCode::SUCCESS
}

pub fn sample_bundle(args: SampleBundleArgs) -> ExitCode {
    let value = std::fs::read(&args.file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).map_err(|e| e.to_string()));
    let mut value = match value {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sample-bundle: {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    crate::samples::resolve(&mut value, args.now.unwrap_or_else(chrono::Utc::now));
    println!("{}", serde_json::to_string_pretty(&crate::samples::transaction_bundle(&value)).expect("serialisable"));
    ExitCode::SUCCESS
}
