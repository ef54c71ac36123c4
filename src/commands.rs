//! The offline subcommands: `check` (validate the cards directory and run every rule's test
//! cases) and `eval` (evaluate a request file and print the cards), both through the same
//! service function as a live call ([`crate::service::run_call`]).

use crate::catalog::Catalog;
use crate::cli::{CheckArgs, EvalArgs, ReportArgs, SampleBundleArgs, SimulateArgs};
use crate::protocol::SchemaSet;
use crate::store::RuleAnalytics;
use std::process::ExitCode;

mod eval;
pub mod simulate;

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
    let results = crate::service::cases::run_all(&catalog, &schemas);
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

/// `eval FILE`: the request file through the same service function as a live call.
pub fn eval(args: EvalArgs) -> ExitCode {
    match eval::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eval: {e}");
            ExitCode::from(2)
        }
    }
}

/// `simulate INPUT…`: a population through the live pipeline into the alert-burden report.
pub fn simulate(args: SimulateArgs) -> ExitCode {
    match simulate::run(&args) {
        Ok(s) => {
            eprintln!(
                "simulate: {} patients evaluated, {} inputs not evaluated; report in {}",
                s.evaluated,
                s.malformed,
                s.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::from(2)
        }
    }
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
    if let Some(dir) = &args.html {
        return match burden_report(&args, dir, store.backend_name, &rules) {
            Ok(()) => {
                eprintln!("report: written to {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("report: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "rules": rules })).expect("serialisable"));
        return ExitCode::SUCCESS;
    }
    print_analytics(&rules);
    ExitCode::SUCCESS
}

/// The alert-burden report of what the store recorded (issued and silent cards per response),
/// with each rule's feedback.
fn burden_report(
    args: &ReportArgs,
    dir: &std::path::Path,
    backend: &str,
    rules: &[RuleAnalytics],
) -> Result<(), String> {
    let cards = crate::store::recorded_cards(&args.database, args.since).map_err(|e| e.to_string())?;
    // The backend's name only: a database URL may carry a password.
    let source = format!("feedback store ({backend}): cards recorded in production, issued and silent");
    let since = args.since.map(|t| format!("since {}", t.to_rfc3339()));
    let report = crate::report::live::from_store(&cards, rules, source, since);
    crate::report::write_files(dir, &report).map_err(|e| e.to_string())
}

fn print_analytics(rules: &[RuleAnalytics]) {
    let width = rules.iter().map(|r| r.rule.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:>6}  {:>8}  {:>10}  {:>10}  {:>6}  {:>8}  top override reasons",
        "rule", "issued", "accepted", "overridden", "suppressed", "silent", "override"
    );
    for r in rules {
        let reasons: Vec<String> = r.top_override_reasons.iter().map(|x| format!("{} ({})", x.code, x.count)).collect();
        println!(
            "{:<width$}  {:>6}  {:>8}  {:>10}  {:>10}  {:>6}  {:>7.0}%  {}",
            r.rule,
            r.issued,
            r.accepted,
            r.overridden,
            r.suppressed,
            r.silent,
            r.override_rate * 100.0,
            reasons.join(", ")
        );
    }
    if rules.is_empty() {
        println!("(no cards recorded yet)");
    }
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
