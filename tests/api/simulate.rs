//! `simulate` on the committed synthetic population (population/bulk): revision 2 section D
//! on its report, the same cards as the live service for the same patients, the same report
//! from Bulk NDJSON and from Bundles, malformed inputs reported and not fatal, and the report
//! page in a real headless Chromium.
use crate::helpers::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The population's dates are relative to this day (population/README.md).
pub(crate) const POPULATION_NOW: &str = "2026-12-01T12:00:00Z";
const KINDS: [&str; 5] = ["Patient", "Condition", "Observation", "MedicationRequest", "MedicationStatement"];

/// Runs `simulate` and returns its report.json; panics with its stderr when it fails.
pub(crate) fn simulate(inputs: &[&Path], out: &Path, extra: &[&str]) -> Value {
    let output = Command::new(BIN)
        .arg("simulate")
        .args(inputs)
        .args([
            "--now",
            POPULATION_NOW,
            "--out",
            out.to_str().unwrap(),
            "--cards",
            project_path("cards").to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "simulate failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The whole committed population, simulated once for the tests that read it.
pub(crate) struct Population {
    pub dir: tempfile::TempDir,
    pub report: Value,
}

pub(crate) fn population() -> &'static Population {
    static RUN: OnceLock<Population> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let report = simulate(&[&project_path("population/bulk")], dir.path(), &["--per-patient", "--responses"]);
        Population { dir, report }
    })
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn rule_ids() -> BTreeSet<String> {
    std::fs::read_dir(project_path("cards/rules"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_committed_population_meets_revision_2_section_d() {
    let run = population();
    let r = &run.report;
    assert!(run.dir.path().join("report.html").is_file());
    assert_eq!(r["malformed"]["count"], 0, "{}", r["malformed"]);
    assert_eq!(r["evaluated"], 2476, "the README's population size");
    let cramp = &r["cardsPerUnit"]["byNamedFact"]["LEG_CRAMP_PRESENT"];
    assert!(cramp["count"].as_u64().unwrap() >= 300, "enough patients with cramp evidence: {cramp}");
    // Section D: median ≤ 2 and p95 ≤ 4 cards for a patient with cramp evidence.
    assert!(cramp["median"].as_u64().unwrap() <= 2, "median: {cramp}");
    assert!(cramp["p95"].as_u64().unwrap() <= 4, "p95: {cramp}");
    // No response offers the same lab order twice, and lab orders are offered at all.
    assert_eq!(r["labOrders"]["responsesWithDuplicates"], 0, "{}", r["labOrders"]);
    assert!(!r["labOrders"]["offered"].as_array().unwrap().is_empty());
    // Every rule of cards/rules fires at least once.
    let fired: BTreeMap<String, u64> = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["rule"].as_str().unwrap().to_string(), l["fired"].as_u64().unwrap()))
        .collect();
    let never: Vec<String> = rule_ids().into_iter().filter(|id| fired.get(id).copied().unwrap_or(0) == 0).collect();
    assert!(never.is_empty(), "rules that never fired: {never:?}");
    // The data defects the population carries are reported by kind.
    let kinds: BTreeSet<&str> =
        r["dataWarnings"].as_array().unwrap().iter().map(|w| w["kind"].as_str().unwrap()).collect();
    for kind in ["unrecognised medication", "unreadable result (value or unit)"] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    // patients.ndjson: one line per patient, its rules and card count.
    let patients = lines(&run.dir.path().join("patients.ndjson"));
    assert_eq!(patients.len(), 2476);
    let total: u64 = patients.iter().map(|p| p["cards"].as_u64().unwrap()).sum();
    assert_eq!(total, r["cards"]["total"].as_u64().unwrap());
    let first = &patients[0];
    assert!(first["patient"].is_string() && first["rules"].is_array(), "{first}");
}

/// A response without what differs between two evaluations of the same request: the fresh
/// uuids of cards and suggestions.
fn without_uuids(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("uuid");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[tokio::test]
async fn simulate_and_the_live_service_give_the_same_cards() {
    let run = population();
    let calls = lines(&run.dir.path().join("responses.ndjson"));
    // 60 patient-view calls spread over the population, with and without cards, and every
    // order-sign call (patients with draft orders).
    let views: Vec<&Value> = calls.iter().filter(|c| c["service"] == "leg-cramp-causes").collect();
    let step = views.len() / 60;
    let mut chosen: Vec<&Value> = views.iter().step_by(step).take(60).copied().collect();
    chosen.extend(calls.iter().filter(|c| c["service"] == "leg-cramp-order-sign"));
    let patients: BTreeSet<&str> = chosen.iter().map(|c| c["patient"].as_str().unwrap()).collect();
    assert!(patients.len() >= 50, "{} patients", patients.len());
    let with_cards = chosen.iter().filter(|c| !c["response"]["cards"].as_array().unwrap().is_empty()).count();
    assert!(with_cards >= 20, "the comparison covers patients with cards: {with_cards}");

    let server = TestServer::builder().args(["--now", POPULATION_NOW]).start();
    for call in chosen {
        let path = format!("/cds-services/{}", call["service"].as_str().unwrap());
        let (status, live) = server.post_json(&path, &call["request"]).await;
        assert_eq!(status, 200, "{live}");
        assert_eq!(
            without_uuids(live),
            without_uuids(call["response"].clone()),
            "patient {} through {path}",
            call["patient"]
        );
    }
}

/// The population's resources of the chosen patients, per resource type, as NDJSON lines.
fn population_lines(keep: impl Fn(&str) -> bool) -> BTreeMap<&'static str, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    for kind in KINDS {
        let file = std::fs::File::open(project_path(&format!("population/bulk/{kind}.ndjson.gz"))).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(file).read_to_string(&mut text).unwrap();
        let chosen: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                let patient = match kind {
                    "Patient" => v["id"].as_str().unwrap().to_string(),
                    _ => v["subject"]["reference"].as_str().unwrap().trim_start_matches("Patient/").to_string(),
                };
                keep(&patient).then(|| (patient, line.to_string()))
            })
            .collect();
        out.insert(kind, chosen);
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn bulk_ndjson_and_bundles_give_the_same_report_for_the_same_patients() {
    // 150 patients drawn by prevalence and the 76 of the coverage cohort.
    let keep = |p: &str| p.starts_with("cov-") || p.trim_start_matches("pop-").parse::<u32>().is_ok_and(|n| n <= 150);
    let by_kind = population_lines(keep);
    let work = tempfile::tempdir().unwrap();
    let (bulk, bundles) = (work.path().join("bulk"), work.path().join("bundles"));
    std::fs::create_dir_all(&bulk).unwrap();
    std::fs::create_dir_all(&bundles).unwrap();
    // Bulk: each file in reverse order (not grouped like Patient.ndjson), two of them plain.
    let mut per_patient: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (kind, lines) in &by_kind {
        let text: String = lines.iter().rev().map(|(_, l)| format!("{l}\n")).collect();
        if *kind == "Condition" || *kind == "MedicationStatement" {
            std::fs::write(bulk.join(format!("{kind}.ndjson")), text).unwrap();
        } else {
            std::fs::write(bulk.join(format!("{kind}.ndjson.gz")), gzip(text.as_bytes())).unwrap();
        }
        for (patient, line) in lines {
            per_patient.entry(patient.clone()).or_default().push(serde_json::from_str(line).unwrap());
        }
    }
    // Bundles: one per patient, a collection; every other one gzipped.
    for (i, (patient, resources)) in per_patient.iter().enumerate() {
        let entries: Vec<Value> = resources
            .iter()
            .map(|r| serde_json::json!({"fullUrl": format!("urn:uuid:{}", uuid()), "resource": r}))
            .collect();
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries}).to_string();
        if i % 2 == 0 {
            std::fs::write(bundles.join(format!("{patient}.json")), bundle).unwrap();
        } else {
            std::fs::write(bundles.join(format!("{patient}.json.gz")), gzip(bundle.as_bytes())).unwrap();
        }
    }
    let (out_bulk, out_bundles) = (work.path().join("out-bulk"), work.path().join("out-bundles"));
    let mut from_bulk = simulate(&[&bulk], &out_bulk, &["--per-patient"]);
    let mut from_bundles = simulate(&[&bundles], &out_bundles, &["--per-patient"]);
    assert_eq!(from_bulk["evaluated"], 226);
    for r in [&mut from_bulk, &mut from_bundles] {
        r.as_object_mut().unwrap().remove("source");
    }
    assert_eq!(from_bulk, from_bundles);
    let sorted = |dir: &PathBuf| {
        let mut v: Vec<String> =
            std::fs::read_to_string(dir.join("patients.ndjson")).unwrap().lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&out_bulk), sorted(&out_bundles));
}

#[test]
fn a_malformed_patient_is_reported_and_the_others_are_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let patient = |id: &str| {
        serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": id, "gender": "female", "birthDate": "1950-01-01"}},
            {"resource": {"resourceType": "Condition", "id": format!("{id}-c"), "subject": {"reference": format!("Patient/{id}")},
             "clinicalStatus": {"coding": [{"code": "active"}]},
             "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.2"}]}}}]})
        .to_string()
    };
    std::fs::write(dir.path().join("a.json"), patient("a")).unwrap();
    std::fs::write(dir.path().join("b.json"), patient("b")).unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"resourceType\": \"Bundle\", \"entry\": [").unwrap();
    std::fs::write(dir.path().join("nobody.json"), r#"{"resourceType":"Bundle","entry":[]}"#).unwrap();
    let bulk = dir.path().join("bulk");
    std::fs::create_dir(&bulk).unwrap();
    std::fs::write(
        bulk.join("Observation.ndjson"),
        "not json\n{\"resourceType\":\"Observation\",\"id\":\"o\",\"subject\":{\"reference\":\"Patient/ghost\"}}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let report = simulate(&[dir.path(), &bulk], &out, &[]);
    assert_eq!(report["evaluated"], 2);
    assert_eq!(report["withNamedFact"]["LEG_CRAMP_PRESENT"], 2);
    assert_eq!(report["malformed"]["count"], 4, "{}", report["malformed"]);
    let text = report["malformed"]["examples"].to_string();
    for needle in ["broken.json", "not a FHIR Bundle", "nobody.json", "no Patient resource", "line 1", "Patient/ghost"]
    {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
}

#[test]
fn a_template_simulate_cannot_answer_stops_it_before_any_patient() {
    let dir = tempfile::tempdir().unwrap();
    let cards = dir.path().join("cards");
    copy_dir(&project_path("cards"), &cards);
    let path = cards.join("services.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("&_count=200", "&date=ge2026-01-01");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(BIN)
        .args(["simulate", project_path("population/bulk").to_str().unwrap(), "--cards", cards.to_str().unwrap()])
        .args(["--out", dir.path().join("out").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("prefetch labs") && err.contains("date=ge2026-01-01"), "{err}");
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test]
#[ignore = "needs Debian's chromium and chromium-driver (.ci/run installs them; run with --include-ignored)"]
async fn the_report_page_shows_its_charts_and_fetches_nothing() {
    let run = population();
    let html = run.dir.path().join("report.html");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Content-Security-Policy") && page.contains("default-src 'none'"));
    let browser = crate::browser::Browser::start().await;
    browser.goto(&format!("file://{}", html.display())).await;
    browser.wait_for("return document.readyState === 'complete'").await;
    // Every chart is drawn and visible: an SVG of real size with its bars.
    let charts = browser
        .script(
            "return [...document.querySelectorAll('figure.chart svg')].map(s => { const r = s.getBoundingClientRect(); \
             return {w: r.width, h: r.height, shapes: s.querySelectorAll('rect,polygon,path').length, \
             visible: getComputedStyle(s).visibility === 'visible' && getComputedStyle(s).display !== 'none'}; })",
        )
        .await;
    let charts = charts.as_array().unwrap();
    assert!(charts.len() >= 3, "histograms and the rules chart: {charts:?}");
    for c in charts {
        assert!(c["w"].as_f64().unwrap() > 200.0 && c["h"].as_f64().unwrap() > 150.0, "{c}");
        assert!(c["shapes"].as_u64().unwrap() > 3 && c["visible"] == true, "{c}");
    }
    // The page loaded nothing: no resource entry at all (no script, style, image or font).
    let requests = browser.script("return performance.getEntriesByType('resource').map(e => e.name)").await;
    assert_eq!(requests, serde_json::json!([]), "the report made requests");
    let navigation = browser.script("return performance.getEntriesByType('navigation').map(e => e.name)").await;
    assert!(navigation.as_array().unwrap().iter().all(|u| u.as_str().unwrap().starts_with("file://")), "{navigation}");
    browser.script("document.querySelector('figure.chart').scrollIntoView(); return true").await;
    browser.screenshot("simulation-report").await;
    let summary = browser.script("return document.querySelector('h1').textContent").await;
    assert_eq!(summary, "Alert burden report");
    let rows = browser.script("return document.querySelectorAll('table tbody tr').length").await;
    assert!(rows.as_u64().unwrap() > 40, "{rows}");
    let _ = browser.cmd(reqwest::Method::DELETE, "", None).await;
}
