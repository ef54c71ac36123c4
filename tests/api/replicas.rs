//! Several replicas on one PostgreSQL behave as one service (issue 13): feedback given
//! through one replica snoozes the card on the other within the documented refresh interval
//! (5 s, README "Running several replicas"), and both report the same analytics.
use crate::feedback::{
    accepted, analytics, card_of, cards, overridden, rule_stats, send_feedback, Backend, Database, INFO, MG, NOW,
};
use crate::helpers::project_path;
use crate::store_faults::eventually;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long a replica may take to see another's snooze: the 5 s refresh, plus slack for a
/// loaded 2-core machine.
const SEEN_WITHIN: Duration = Duration::from_secs(8);

/// Counts what a visit issued and withheld for the tally both replicas must agree on.
#[derive(Default, Debug)]
struct Tally {
    mg_issued: u64,
    info_issued: u64,
    info_withheld: u64,
}

impl Tally {
    fn visit(&mut self, cards: &[Value]) {
        self.mg_issued += u64::from(card_of(cards, MG).is_some());
        match card_of(cards, INFO) {
            Some(_) => self.info_issued += 1,
            None => self.info_withheld += 1,
        }
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set LEG_CRAMP_CDS_TEST_POSTGRES and run cargo test -- --include-ignored (.ci/run does)"]
async fn already_addressed_on_replica_a_snoozes_the_card_on_replica_b_and_analytics_agree() {
    let db = Database::new(Backend::Postgres);
    let a = db.server(&["--now", NOW]);
    let b = db.server(&["--now", NOW]);
    let mut tally = Tally::default();
    let on_a = cards(&a, "pt-rep-1", false).await;
    tally.visit(&on_a);
    let on_b = cards(&b, "pt-rep-1", false).await;
    tally.visit(&on_b);
    assert!(card_of(&on_b, INFO).is_some(), "not snoozed yet");

    let (status, receipt) =
        send_feedback(&a, vec![overridden(card_of(&on_a, INFO).unwrap(), "already-addressed")]).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["unknownCards"], 0);
    let stored = Instant::now();
    // Poll replica B, keeping the tally of every visit it answers.
    let mut took = None;
    while stored.elapsed() < Duration::from_secs(20) {
        let visit = cards(&b, "pt-rep-1", false).await;
        tally.visit(&visit);
        if card_of(&visit, INFO).is_none() {
            took = Some(stored.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = took.expect("replica B withholds the card snoozed through replica A");
    assert!(took <= SEEN_WITHIN, "replica B saw the snooze after {took:?}");

    // Feedback through B about a card A issued: the card is known to B (one shared store).
    let (status, receipt) = send_feedback(&b, vec![accepted(card_of(&on_a, MG).unwrap())]).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt, json!({"stored": 1, "duplicates": 0, "unknownCards": 0}));

    // Both replicas read the same numbers, and they are the numbers of what both issued.
    let agreed = eventually(15, || async {
        let (from_a, from_b) = (analytics(&a, "").await, analytics(&b, "").await);
        let mg = rule_stats(&from_a, MG);
        let info = rule_stats(&from_a, INFO);
        let complete = mg["issued"] == tally.mg_issued
            && info["issued"] == tally.info_issued
            && info["suppressed"] == tally.info_withheld;
        (from_a == from_b && complete).then_some((mg, info))
    })
    .await;
    let (mg, info) = agreed.unwrap_or_else(|| panic!("replicas agree on {tally:?}"));
    assert_eq!((mg["accepted"].as_u64(), info["overridden"].as_u64()), (Some(1), Some(1)), "{mg} {info}");
    // Each replica ran its retention pass on the shared database (nothing is old enough yet).
    for replica in [&a, &b] {
        assert!(replica.log_text().contains("retention pass"), "{}", replica.log_text());
    }
}

/// The compose stack runs the service as several replicas behind one load balancer, as the
/// README documents (no Docker engine here: the files are checked, not run).
#[test]
fn compose_runs_several_replicas_behind_one_load_balancer() {
    let text = std::fs::read_to_string(project_path("docker-compose.yml")).unwrap();
    let compose = &yaml_rust2::YamlLoader::load_from_str(&text).unwrap()[0];
    let service = &compose["services"]["leg-cramp-cds"];
    assert!(service["deploy"]["replicas"].as_i64().is_some_and(|n| n >= 2), "deploy.replicas ≥ 2");
    assert!(service["ports"].is_badvalue(), "replicas publish no port of their own: only the load balancer does");
    assert!(service["environment"]["LEG_CRAMP_CDS_DATABASE"].as_str().unwrap().starts_with("postgres://"));
    let lb = &compose["services"]["lb"];
    assert_eq!(lb["ports"][0].as_str(), Some("127.0.0.1:8080:8080"));
    assert_eq!(lb["volumes"][0].as_str(), Some("./docker/nginx.conf:/etc/nginx/nginx.conf:ro"));
    let nginx = std::fs::read_to_string(project_path("docker/nginx.conf")).unwrap();
    assert!(nginx.contains("server leg-cramp-cds:8080 resolve"), "every replica's address, looked up again");
    assert!(nginx.contains("client_max_body_size 11m;"), "bodies up to the service's own 10 MiB limit reach it");
}
