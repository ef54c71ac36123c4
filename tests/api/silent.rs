//! Silent mode over HTTP, on SQLite and PostgreSQL: `serve --silent` and a service marked
//! `"silent": true` in services.json evaluate and record every card but answer
//! `{"cards": []}`; analytics and `report` count those cards apart from the issued ones.
use crate::feedback::{analytics, rule_stats, visit, Backend, Database, INFO, MG, NOW, SECRET};
use crate::helpers::*;
use crate::simulate::copy_dir;
use serde_json::{json, Value};
use std::process::Command;

async fn silent_patient_view(server: &TestServer, patient: &str) {
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &visit(patient, false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"cards": []}), "a silent service shows nothing, not even warnings");
}

async fn serve_silent_records_every_card_as_silent(backend: Backend) {
    let db = Database::new(backend);
    let server = db.server(&["--now", NOW, "--silent"]);
    silent_patient_view(&server, "pt-silent-1").await;
    silent_patient_view(&server, "pt-silent-2").await;
    let body = analytics(&server, "").await;
    for rule in [MG, INFO] {
        let stats = rule_stats(&body, rule);
        assert_eq!((stats["silent"].as_u64(), stats["issued"].as_u64()), (Some(2), Some(0)), "{rule}: {stats}");
    }
    let (_, metrics) = metrics_text(&server).await;
    assert!(metrics.contains("cds_cards_silent_total{"), "silent cards are counted apart");
    assert!(!metrics.contains(&format!("cds_cards_total{{indicator=\"warning\",rule=\"{MG}\"}}")), "not as issued");
}

async fn metrics_text(server: &TestServer) -> (u16, String) {
    let res = server.client.get(server.url("/metrics")).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The cards directory with leg-cramp-causes silent and the order services live.
fn cards_with_silent_patient_view() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&project_path("cards"), dir.path());
    let path = dir.path().join("services.json");
    let mut services: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for s in services["services"].as_array_mut().unwrap() {
        if s["id"] == "leg-cramp-causes" {
            s["silent"] = json!(true);
        }
    }
    std::fs::write(&path, services.to_string()).unwrap();
    dir
}

async fn a_silent_service_is_silent_alone_and_reported_apart(backend: Backend) {
    let db = Database::new(backend);
    let cards = cards_with_silent_patient_view();
    let server = db.server(&["--now", NOW, "--cards", cards.path().to_str().unwrap()]);
    let (_, discovery) = server.get("/cds-services").await;
    assert!(!discovery.to_string().contains("silent"), "silent is configuration, never sent: {discovery}");
    silent_patient_view(&server, "pt-silent-3").await;
    let (_, mut quinine, _) =
        crate::samples::samples().into_iter().find(|s| s.0 == "quinine-order-sign").expect("the quinine sample");
    leg_cramp_cds::samples::resolve(&mut quinine, NOW.parse().unwrap());
    let (status, body) = server.post_json("/cds-services/leg-cramp-order-sign", &quinine).await;
    assert_eq!(status, 200);
    assert!(!body["cards"].as_array().unwrap().is_empty(), "the order-sign service is not silent: {body}");
    let stats = analytics(&server, "").await;
    let quinine_stats = rule_stats(&stats, "treatment-safety-quinine");
    assert_eq!((quinine_stats["issued"].as_u64(), quinine_stats["silent"].as_u64()), (Some(1), Some(0)));
    let mg = rule_stats(&stats, MG);
    assert_eq!((mg["issued"].as_u64(), mg["silent"].as_u64()), (Some(0), Some(1)));

    // The report command counts them apart too: its table, and the burden report.
    let out = tempfile::tempdir().unwrap();
    let report = Command::new(BIN)
        .args(["report", "--database", &db.url, "--patient-key-secret", SECRET, "--html"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["unit"], "response");
    assert_eq!(json["evaluated"], 2, "two responses: {json}");
    assert_eq!(json["cards"]["silent"], 2, "the silent response's two cards: {}", json["cards"]);
    assert_eq!(json["cards"]["total"], 2 + body["cards"].as_array().unwrap().len());
    let line = json["rules"].as_array().unwrap().iter().find(|l| l["rule"] == MG).unwrap().clone();
    assert_eq!((line["fired"].as_u64(), line["feedback"]["silent"].as_u64()), (Some(1), Some(1)), "{line}");
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("of which silent") && html.contains("<svg"), "the page shows silent cards and charts");
    let table =
        Command::new(BIN).args(["report", "--database", &db.url, "--patient-key-secret", SECRET]).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let mg_row = table.lines().find(|l| l.starts_with(MG)).unwrap();
    let numbers: Vec<&str> = mg_row.split_whitespace().collect();
    assert_eq!((numbers[1], numbers[5]), ("0", "1"), "issued 0, silent 1: {table}");
}

// `on_both_backends!` comes from feedback.rs (`#[macro_use]` in main.rs).
on_both_backends!(serve_silent_records_every_card_as_silent, a_silent_service_is_silent_alone_and_reported_apart);
