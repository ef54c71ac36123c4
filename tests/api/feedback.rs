//! Feedback kept and used: storage, validation, idempotency, analytics, suppression and
//! durability, run against SQLite and (when available) PostgreSQL with the same tests.
use crate::helpers::*;
use serde_json::{json, Value};

pub(crate) const NOW: &str = "2026-06-15T12:00:00Z";
pub(crate) const SECRET: &str = "test-patient-key-secret-0123456789abcdef";

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test's data lives: a temp SQLite file, or a fresh PostgreSQL database.
pub(crate) struct Database {
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Database {
    pub(crate) fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Database { url: dir.path().join("store.sqlite").to_str().unwrap().to_string(), _dir: Some(dir) }
            }
            Backend::Postgres => {
                let admin = std::env::var("LEG_CRAMP_CDS_TEST_POSTGRES").expect(
                    "LEG_CRAMP_CDS_TEST_POSTGRES=postgres://user@host:port/db is needed for the PostgreSQL tests",
                );
                let name = format!("lcc_{}", uuid::Uuid::new_v4().simple());
                let create = format!("CREATE DATABASE {name}");
                let admin2 = admin.clone();
                // The sync client runs its own runtime: keep it off the test's runtime thread.
                std::thread::spawn(move || {
                    let mut c = postgres::Client::connect(&admin2, postgres::NoTls).expect("PostgreSQL reachable");
                    c.batch_execute(&create).unwrap();
                })
                .join()
                .unwrap();
                let (base, _) = admin.rsplit_once('/').unwrap();
                Database { url: format!("{base}/{name}"), _dir: None }
            }
        }
    }

    pub(crate) fn server(&self, extra: &[&str]) -> TestServer {
        TestServer::builder()
            .args(["--database", &self.url, "--patient-key-secret", SECRET])
            .args(extra.iter().map(|s| s.to_string()))
            .start()
    }

    /// Everything the store holds, as text, for the "no clear identifier" scan.
    fn dump(&self) -> String {
        if self.url.starts_with("postgres") {
            let url = self.url.clone();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let mut out = String::new();
                for table in ["issued_cards", "feedback", "suppressions", "suppressed_cards"] {
                    for row in c.query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[]).unwrap() {
                        out.push_str(&row.get::<_, String>(0));
                        out.push('\n');
                    }
                }
                out
            })
            .join()
            .unwrap()
        } else {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal"] {
                if let Ok(b) = std::fs::read(format!("{}{suffix}", self.url)) {
                    bytes.extend(b);
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

fn condition(code: &str) -> Value {
    json!({"resourceType": "Condition", "id": format!("c-{code}"), "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]}, "recordedDate": "2026-05-01"})
}

/// A patient with cramps, cirrhosis and low magnesium: a warning card with lab suggestions,
/// plus the cirrhosis info card. With `critical`, also a critical potassium.
pub(crate) fn visit(patient_id: &str, critical: bool) -> Value {
    let mut labs = vec![json!({"resourceType": "Observation", "id": "mg", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]}, "effectiveDateTime": "2026-06-10",
        "valueQuantity": {"value": 1.5, "unit": "mg/dL"}})];
    if critical {
        labs.push(json!({"resourceType": "Observation", "id": "k", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}, "effectiveDateTime": "2026-06-15",
            "valueQuantity": {"value": 2.2, "unit": "mmol/L"}}));
    }
    json!({
        "hook": "patient-view", "hookInstance": uuid(),
        "context": {"userId": "Practitioner/example", "patientId": patient_id},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": patient_id, "gender": "female", "birthDate": "1966-02-02"},
            "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": condition("R25.2")}, {"resource": condition("K74.60")}]},
            "medicationRequests": null, "medicationStatements": null,
            "labs": {"resourceType": "Bundle", "type": "searchset", "entry": labs.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()},
            "vitals": null, "pregnancy": null
        }
    })
}

pub(crate) async fn cards(server: &TestServer, patient_id: &str, critical: bool) -> Vec<Value> {
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes", &visit(patient_id, critical)).await;
    assert_eq!(status, 200, "{body}");
    body["cards"].as_array().unwrap().clone()
}

pub(crate) fn card_of<'a>(cards: &'a [Value], rule: &str) -> Option<&'a Value> {
    cards.iter().find(|c| c["source"]["topic"]["code"] == rule)
}

pub(crate) fn accepted(card: &Value) -> Value {
    json!({"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": NOW,
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]})
}

pub(crate) fn overridden(card: &Value, code: &str) -> Value {
    json!({"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": NOW,
        "overrideReason": {"reason": {"system": "urn:leg-cramp-cds:override-reason", "code": code, "display": code}, "userComment": "seen in clinic"}})
}

pub(crate) async fn send_feedback(server: &TestServer, items: Vec<Value>) -> (u16, Value) {
    server.post_json("/cds-services/leg-cramp-causes/feedback", &json!({"feedback": items})).await
}

pub(crate) async fn analytics(server: &TestServer, query: &str) -> Value {
    let (status, body) = server.get(&format!("/analytics/rules{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub(crate) fn rule_stats(body: &Value, rule: &str) -> Value {
    body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == rule)
        .cloned()
        .unwrap_or_else(|| panic!("{rule} missing"))
}

pub(crate) const MG: &str = "electrolyte-hypomagnesemia";
/// An info card shown beside the magnesium warning (the self-care baseline yields to warnings).
pub(crate) const INFO: &str = "renal-hepatic-cirrhosis";

async fn feedback_is_stored_idempotent_and_visible(backend: Backend) {
    let db = Database::new(backend);
    let server = db.server(&["--now", NOW]);
    let c = cards(&server, "pt-idem-01", false).await;
    let mg = card_of(&c, MG).unwrap();
    let (status, receipt) = send_feedback(&server, vec![accepted(mg)]).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt, json!({"stored": 1, "duplicates": 0, "unknownCards": 0}));
    let (status, receipt) = send_feedback(&server, vec![accepted(mg)]).await;
    assert_eq!(status, 200);
    assert_eq!(receipt, json!({"stored": 0, "duplicates": 1, "unknownCards": 0}), "identical repeat");
    let stats = rule_stats(&analytics(&server, "").await, MG);
    assert_eq!((stats["issued"].as_u64(), stats["accepted"].as_u64()), (Some(1), Some(1)), "{stats}");
    // The CDS Hooks Sandbox's own dismiss message (no reason) is accepted too.
    let sandbox = fixture("../fixtures/sandbox/feedback-overridden-request.json");
    let (status, receipt) = server.post_json("/cds-services/leg-cramp-causes/feedback", &sandbox).await;
    assert_eq!(status, 200);
    assert_eq!(receipt["unknownCards"], 1, "a card we never issued is stored but flagged");
    let stats = rule_stats(&analytics(&server, "").await, MG);
    assert_eq!(stats["overridden"], 0, "flagged feedback is not counted");
}

async fn each_validation_error_names_item_and_field(backend: Backend) {
    let db = Database::new(backend);
    let server = db.server(&["--now", NOW]);
    let c = cards(&server, "pt-valid-02", false).await;
    let mg = card_of(&c, MG).unwrap().clone();
    let other = card_of(&c, INFO).unwrap().clone();
    let good = accepted(&mg);
    let mut no_card = good.clone();
    no_card.as_object_mut().unwrap().remove("card");
    let mut bad_outcome = good.clone();
    bad_outcome["outcome"] = json!("ignored");
    let mut no_suggestions = good.clone();
    no_suggestions.as_object_mut().unwrap().remove("acceptedSuggestions");
    let mut empty_reason = overridden(&mg, "not-applicable");
    empty_reason["overrideReason"] = json!({});
    let mut bad_time = good.clone();
    bad_time["outcomeTimestamp"] = json!("yesterday at noon");
    let mut foreign_suggestion = good.clone();
    foreign_suggestion["acceptedSuggestions"] = json!([{"id": mg["suggestions"][0]["uuid"]}]);
    foreign_suggestion["card"] = other["uuid"].clone();
    let mut wrong_suggestion = good.clone();
    wrong_suggestion["acceptedSuggestions"] = json!([{"id": mg["suggestions"][0]["uuid"]}, {"id": "not-a-suggestion"}]);
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        ("card missing", vec![good.clone(), no_card], "/feedback/1/card"),
        ("bad outcome", vec![bad_outcome], "/feedback/0/outcome"),
        ("accepted without suggestions", vec![no_suggestions], "/feedback/0/acceptedSuggestions"),
        ("override reason without reason or comment", vec![empty_reason], "/feedback/0/overrideReason"),
        ("timestamp not RFC 3339", vec![bad_time], "/feedback/0/outcomeTimestamp"),
        ("suggestion of another card", vec![foreign_suggestion], "/feedback/0/acceptedSuggestions/0/id"),
        (
            "unknown suggestion (atomic: the good first item is not stored)",
            vec![good.clone(), wrong_suggestion],
            "/feedback/1/acceptedSuggestions/1/id",
        ),
    ];
    for (name, items, pointer) in cases {
        let (status, body) = send_feedback(&server, items).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_outcome(&body, pointer);
    }
    let (status, body) = server.post_json("/cds-services/leg-cramp-causes/feedback", &json!({"nofeedback": []})).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "/feedback");
    let (status, body) = server.post_json("/cds-services/nope/feedback", &json!({"feedback": [good.clone()]})).await;
    assert_eq!(status, 404);
    assert_outcome(&body, "nope");
    let (status, _) = server.post_raw("/cds-services/leg-cramp-causes/feedback", "{not json").await;
    assert_eq!(status, 400);
    // Nothing of the refused batches was stored.
    let stats = rule_stats(&analytics(&server, "").await, MG);
    assert_eq!(stats["accepted"], 0, "{stats}");
}

async fn already_addressed_suppresses_within_limits(backend: Backend) {
    let db = Database::new(backend);
    let server = db.server(&["--now", NOW]);
    let first = cards(&server, "pt-supp-03", true).await;
    let critical = card_of(&first, "red-flag-critical-electrolytes").expect("critical card").clone();
    let baseline = card_of(&first, INFO).unwrap().clone();
    // A "not applicable" override does not suppress; "already addressed" does, except critical.
    let (status, _) = send_feedback(
        &server,
        vec![overridden(&baseline, "already-addressed"), overridden(&critical, "already-addressed")],
    )
    .await;
    assert_eq!(status, 200);
    let second = cards(&server, "pt-supp-03", true).await;
    assert!(card_of(&second, INFO).is_none(), "info card snoozed");
    assert!(card_of(&second, "red-flag-critical-electrolytes").is_some(), "critical is never suppressed");
    // Another patient is not affected.
    assert!(card_of(&cards(&server, "pt-supp-04", false).await, INFO).is_some());
    let other = cards(&server, "pt-supp-07", false).await;
    send_feedback(&server, vec![overridden(card_of(&other, MG).unwrap(), "not-applicable")]).await;
    assert!(card_of(&cards(&server, "pt-supp-07", false).await, MG).is_some(), "not-applicable does not suppress");
    let stats = rule_stats(&analytics(&server, "").await, INFO);
    // Issued: pt-supp-03 first visit, pt-supp-04, pt-supp-07 twice; suppressed: pt-supp-03's second visit.
    assert_eq!((stats["issued"].as_u64(), stats["suppressed"].as_u64()), (Some(4), Some(1)), "{stats}");
    drop(server);
    // 29 days later still suppressed; 31 days later (default --suppress-days 30) it is back.
    let later = db.server(&["--now", "2026-07-14T12:00:00Z"]);
    assert!(card_of(&cards(&later, "pt-supp-03", false).await, INFO).is_none());
    drop(later);
    let after = db.server(&["--now", "2026-07-16T12:00:00Z"]);
    assert!(card_of(&cards(&after, "pt-supp-03", false).await, INFO).is_some());
    drop(after);
    let short = db.server(&["--now", NOW, "--suppress-days", "0"]);
    let c = cards(&short, "pt-supp-05", false).await;
    send_feedback(&short, vec![overridden(card_of(&c, INFO).unwrap(), "already-addressed")]).await;
    assert!(card_of(&cards(&short, "pt-supp-05", false).await, INFO).is_some(), "--suppress-days 0 disables it");
}

async fn analytics_match_a_scripted_sequence(backend: Backend) {
    let db = Database::new(backend);
    let server = db.server(&["--now", NOW]);
    let a = cards(&server, "pt-seq-A", false).await;
    let b = cards(&server, "pt-seq-B", false).await;
    let c = cards(&server, "pt-seq-C", false).await;
    let (status, _) = send_feedback(
        &server,
        vec![
            accepted(card_of(&a, MG).unwrap()),
            overridden(card_of(&b, MG).unwrap(), "not-applicable"),
            overridden(card_of(&c, MG).unwrap(), "already-addressed"),
            overridden(card_of(&a, INFO).unwrap(), "already-addressed"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // A comes back: the MG card again, the baseline suppressed.
    let again = cards(&server, "pt-seq-A", false).await;
    assert!(card_of(&again, MG).is_some() && card_of(&again, INFO).is_none());
    // Overriding the same card twice counts it once.
    send_feedback(
        &server,
        vec![{
            let mut o = overridden(card_of(&b, MG).unwrap(), "not-applicable");
            o["outcomeTimestamp"] = json!("2026-06-15T12:05:00Z");
            o
        }],
    )
    .await;
    let body = analytics(&server, "").await;
    let mg = rule_stats(&body, MG);
    assert_eq!(mg["issued"], 4);
    assert_eq!(mg["accepted"], 1);
    assert_eq!(mg["overridden"], 2);
    assert!((mg["overrideRate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9, "{mg}");
    assert_eq!(
        mg["topOverrideReasons"],
        json!([
            {"code": "already-addressed", "display": "already-addressed", "count": 1},
            {"code": "not-applicable", "display": "not-applicable", "count": 1}
        ])
    );
    let base = rule_stats(&body, INFO);
    assert_eq!(
        (base["issued"].as_u64(), base["overridden"].as_u64(), base["suppressed"].as_u64()),
        (Some(3), Some(1), Some(1))
    );
    // Every rule is listed, zeros included; a future window is empty.
    assert_eq!(body["rules"].as_array().unwrap().len(), crate::rules::catalog().rules.rules.len());
    let future = analytics(&server, "?since=2030-01-01T00:00:00Z").await;
    assert_eq!(rule_stats(&future, MG)["issued"], 0);
    let (status, bad) = server.get("/analytics/rules?since=last-week").await;
    assert_eq!(status, 400);
    assert_outcome(&bad, "since");
    // The report command prints the same numbers.
    drop(server);
    let out = std::process::Command::new(BIN)
        .args(["report", "--database", &db.url, "--patient-key-secret", SECRET])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with(MG)).unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..5], &["4", "1", "2", "0"], "{line}");
    // No clear patient identifier anywhere in the store.
    let dump = db.dump();
    assert!(dump.contains(MG), "the dump is real");
    for id in ["pt-seq-A", "pt-seq-B", "pt-seq-C", "1966-02-02"] {
        assert!(!dump.contains(id), "{id} stored in clear");
    }
}

async fn feedback_survives_kill_9(backend: Backend) {
    let db = Database::new(backend);
    let mut server = db.server(&["--now", NOW]);
    let c = cards(&server, "pt-kill-06", false).await;
    let (status, _) = send_feedback(&server, vec![accepted(card_of(&c, MG).unwrap())]).await;
    assert_eq!(status, 200);
    // kill -9 right after the 200: no chance to flush anything.
    let pid = server.pid();
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let _ = server.child().wait();
    drop(server);
    let restarted = db.server(&["--now", NOW]);
    let mg = rule_stats(&analytics(&restarted, "").await, MG);
    assert_eq!((mg["issued"].as_u64(), mg["accepted"].as_u64()), (Some(1), Some(1)), "{mg}");
    let base = rule_stats(&analytics(&restarted, "").await, INFO);
    assert_eq!(base["issued"], 1);
}

async fn a_clean_shutdown_loses_no_issued_card(backend: Backend) {
    let db = Database::new(backend);
    let mut server = db.server(&["--now", NOW]);
    for i in 0..20 {
        cards(&server, &format!("pt-term-{i}"), false).await;
    }
    let pid = server.pid();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let status = server.child().wait().unwrap();
    assert!(status.success(), "{status}");
    drop(server);
    let restarted = db.server(&["--now", NOW]);
    assert_eq!(rule_stats(&analytics(&restarted, "").await, INFO)["issued"], 20);
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[tokio::test]
            #[ignore = "needs PostgreSQL: set LEG_CRAMP_CDS_TEST_POSTGRES and run cargo test -- --include-ignored (.ci/run does)"]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}

on_both_backends!(
    feedback_is_stored_idempotent_and_visible,
    each_validation_error_names_item_and_field,
    already_addressed_suppresses_within_limits,
    analytics_match_a_scripted_sequence,
    feedback_survives_kill_9,
    a_clean_shutdown_loses_no_issued_card,
);
