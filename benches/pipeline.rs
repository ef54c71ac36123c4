//! Criterion benchmarks of the in-process pipeline, stage by stage, on a typical patient
//! (1 Patient, 10 Conditions, 10 medications, 31 Observations; 5 cards) and a large one
//! (2,000 resources from the PySynthea lifetime record), plus rule-count scaling: the 37
//! catalogue rules against 370 (the catalogue cloned 9 times with codes that never match).
//! `cargo bench` runs them; figures are reported, not asserted.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use leg_cramp_cds::cards::build_cards;
use leg_cramp_cds::catalog::Catalog;
use leg_cramp_cds::facts::PatientFacts;
use leg_cramp_cds::fhir::terminology::ResolvedCodes;
use leg_cramp_cds::fhir::CdsRequest;
use leg_cramp_cds::fhir::ResourceSet;
use leg_cramp_cds::protocol::SchemaSet;
use leg_cramp_cds::rules::{evaluate as evaluate_rules, RuleBook};
use leg_cramp_cds::service::{evaluate, plan_prefetch};
use std::hint::black_box;
use std::io::Read;
use std::path::Path;

// Same allocator as the binary, so the figures match what the service does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap();
    if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        bytes
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    "2026-06-15T12:00:00Z".parse().unwrap()
}

/// The catalogue plus `copies` clones of every rule and value set, renamed, with codes and
/// ingredient names altered so that the clones never match real data.
fn scaled_cards(copies: usize) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("cards");
    let dir = tempfile::tempdir().unwrap();
    for sub in ["", "rules", "valuesets"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for f in ["services.json", "conventions.json", "override-reasons.json", "brands.json", "medication-forms.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let read_dir = |sub: &str| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(src.join(sub))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.file_stem().unwrap().to_str().unwrap().to_string(), std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let valuesets = read_dir("valuesets");
    let rules = read_dir("rules");
    for (name, text) in &valuesets {
        std::fs::write(dir.path().join(format!("valuesets/{name}.json")), text).unwrap();
    }
    for (name, text) in &rules {
        std::fs::write(dir.path().join(format!("rules/{name}.json")), text).unwrap();
    }
    for k in 1..=copies {
        for (name, text) in &valuesets {
            let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
            v["id"] = format!("{name}_C{k}").into();
            for c in v.get_mut("codes").and_then(|x| x.as_array_mut()).into_iter().flatten() {
                c["code"] = format!("{}X{k}", c["code"].as_str().unwrap()).into();
            }
            for i in v.get_mut("ingredients").and_then(|x| x.as_array_mut()).into_iter().flatten() {
                *i = format!("{} zz{k}", i.as_str().unwrap()).into();
            }
            for w in v.pointer_mut("/salts/words").and_then(|x| x.as_array_mut()).into_iter().flatten() {
                *w = format!("{} zz{k}", w.as_str().unwrap()).into();
            }
            std::fs::write(dir.path().join(format!("valuesets/{name}_C{k}.json")), v.to_string()).unwrap();
        }
        for (name, text) in &rules {
            let mut t = text.clone();
            for (vs, _) in &valuesets {
                t = t.replace(&format!("\"{vs}\""), &format!("\"{vs}_C{k}\""));
            }
            for (rule, _) in &rules {
                t = t.replace(&format!("\"{rule}\""), &format!("\"{rule}-c{k}\""));
            }
            std::fs::write(dir.path().join(format!("rules/{name}-c{k}.json")), t).unwrap();
        }
    }
    dir
}

fn stages(c: &mut Criterion, label: &str, body: &[u8], catalog: &Catalog, schemas: &SchemaSet) {
    let service = catalog.service("leg-cramp-causes").unwrap();
    let parsed = CdsRequest::parse(body, schemas, "patient-view").unwrap();
    let mut planned = parsed.clone();
    let plan = plan_prefetch(&mut planned, service);
    let book = &catalog.rules;
    let facts = facts_of(book, &plan.resources);
    let findings = evaluate_rules(book, &facts);

    let mut g = c.benchmark_group(label);
    g.bench_function("parse+validate request", |b| {
        b.iter(|| CdsRequest::parse(black_box(body), schemas, "patient-view").unwrap())
    });
    g.bench_function("prefetch → patient facts", |b| {
        b.iter_batched(
            || parsed.clone(),
            |mut r| {
                let plan = plan_prefetch(&mut r, service);
                facts_of(book, &plan.resources)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rule evaluation", |b| b.iter(|| evaluate_rules(book, black_box(&facts))));
    g.bench_function("card building", |b| b.iter(|| build_cards(book, &facts, black_box(&findings), "p1")));
    g.bench_function("whole pipeline (bytes → response bytes)", |b| {
        b.iter(|| {
            let mut r = CdsRequest::parse(black_box(body), schemas, "patient-view").unwrap();
            let plan = plan_prefetch(&mut r, service);
            let e = evaluate(book, &r, &plan.resources, now());
            serde_json::to_vec(&e.response).unwrap()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let schemas = SchemaSet::compile().unwrap();
    let catalog = Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cards"), &schemas).unwrap();
    let typical = fixture("typical-patient-view.json");
    typical_is_whole(&typical, &catalog, &schemas);
    stages(c, "typical patient", &typical, &catalog, &schemas);
    stages(c, "large patient (2000 resources)", &fixture("large-patient-view.json.gz"), &catalog, &schemas);

    // Rule-count scaling on the typical patient's facts.
    let body = fixture("typical-patient-view.json");
    let mut request = CdsRequest::parse(&body, &schemas, "patient-view").unwrap();
    let plan = plan_prefetch(&mut request, catalog.service("leg-cramp-causes").unwrap());
    let scaled_dir = scaled_cards(9);
    let scaled = RuleBook::load(scaled_dir.path(), &schemas).unwrap_or_else(|e| {
        panic!("{} load errors, first: {}", e.len(), e.first().map(ToString::to_string).unwrap_or_default())
    });
    assert_eq!(scaled.rules.len(), 370);
    let mut g = c.benchmark_group("rule count scaling (typical patient)");
    for (label, book) in [("37 rules", &catalog.rules), ("370 rules", &scaled)] {
        let facts = facts_of(book, &plan.resources);
        // Clones never match the patient's codes; only the clones of the unanchored baseline
        // rule (gated on cramps alone) fire, so the real findings are all still there.
        let base = evaluate_rules(&catalog.rules, &facts_of(&catalog.rules, &plan.resources)).len();
        assert!(evaluate_rules(book, &facts).len() >= base);
        g.bench_function(format!("{label}: facts + evaluation"), |b| {
            b.iter(|| {
                let facts = facts_of(book, &plan.resources);
                evaluate_rules(book, &facts)
            })
        });
        g.bench_function(format!("{label}: evaluation only"), |b| b.iter(|| evaluate_rules(book, black_box(&facts))));
    }
    g.finish();
}

/// The typical patient must be evaluated as a whole: cards, and no resource skipped (its
/// subjects once named another patient than `context.patientId`, and every resource was set
/// aside unnoticed, so the figures measured an empty answer).
fn typical_is_whole(body: &[u8], catalog: &Catalog, schemas: &SchemaSet) {
    let mut r = CdsRequest::parse(body, schemas, "patient-view").unwrap();
    let plan = plan_prefetch(&mut r, catalog.service("leg-cramp-causes").unwrap());
    let e = evaluate(&catalog.rules, &r, &plan.resources, now());
    let text = serde_json::to_string(&e.response).unwrap();
    assert_eq!(e.response.cards.len(), 5, "{text}");
    assert!(!text.contains("skipped"), "{text}");
}

/// The patient facts of `resources` under `book`, offline (no terminology service).
fn facts_of(book: &RuleBook, resources: &ResourceSet) -> PatientFacts {
    PatientFacts::build(resources, &book.conventions, &book.index, &ResolvedCodes::none(), "patient-view", now())
}

criterion_group! {
    name = pipeline;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(pipeline);
