//! Store-level tests on a temporary SQLite file: merged cards, suppression mirror, the
//! migration backfill and the writer's supervision. The HTTP tests (tests/api/feedback.rs,
//! tests/api/store_faults.rs) run the same behaviour through the server on both backends.

use super::*;

pub(super) const NOW: &str = "2026-06-15T12:00:00Z";

pub(super) fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn open(dir: &tempfile::TempDir, test_hooks: bool) -> FeedbackStore {
    let path = dir.path().join("store.sqlite");
    let options = StoreOptions { fixed_now: Some(t(NOW)), test_hooks, ..StoreOptions::default() };
    FeedbackStore::open_with(path.to_str().unwrap(), Some("unit-test-secret-unit-test-secret"), options).unwrap()
}

fn card(uuid: &str, topic: &str, rules: &[&str], indicator: &str) -> IssuedCard {
    IssuedCard {
        card_uuid: uuid.into(),
        suggestion_uuids: vec![format!("{uuid}-s1")],
        service: "leg-cramp-causes".into(),
        topic: topic.into(),
        rules: rules.iter().map(|r| r.to_string()).collect(),
        indicator: indicator.into(),
        silent: false,
        hook_instance: "h1".into(),
        patient_key: "patient-key-1".into(),
        issued_at: t(NOW),
    }
}

pub(super) fn item(index: usize, card: &str, outcome: &str, reason: Option<&str>) -> FeedbackRow {
    FeedbackRow {
        index,
        card_uuid: card.into(),
        outcome: outcome.into(),
        accepted_suggestions: if outcome == "accepted" { vec![format!("{card}-s1")] } else { vec![] },
        override_system: reason.map(|_| ALREADY_ADDRESSED.0.to_string()),
        override_code: reason.map(str::to_string),
        override_display: None,
        user_comment: None,
        outcome_timestamp: t(NOW),
    }
}

async fn stats(store: &FeedbackStore) -> HashMap<String, RuleAnalytics> {
    store.analytics(None).await.unwrap().into_iter().map(|a| (a.rule.clone(), a)).collect()
}

#[tokio::test]
async fn feedback_on_a_merged_card_counts_and_suppresses_for_each_rule_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, false);
    store.record_issued(vec![
        card("m1", "medication-review", &["statin-myopathy", "thiazide-hypokalemia"], "warning"),
        card("m2", "medication-review", &["statin-myopathy", "laba-cramps"], "warning"),
        card("o1", "lifestyle-self-care-baseline", &["lifestyle-self-care-baseline"], "info"),
    ]);
    let receipt = store
        .store_feedback(
            "leg-cramp-causes".into(),
            vec![item(0, "m1", "accepted", None), item(1, "m2", "overridden", Some("not-applicable"))],
            30,
        )
        .await
        .unwrap();
    assert_eq!((receipt.stored, receipt.unknown_cards), (2, 0), "cards recorded before feedback are known");
    let s = stats(&store).await;
    assert_eq!(
        (s["statin-myopathy"].issued, s["statin-myopathy"].accepted, s["statin-myopathy"].overridden),
        (2, 1, 1)
    );
    assert_eq!((s["thiazide-hypokalemia"].issued, s["thiazide-hypokalemia"].accepted), (1, 1));
    assert_eq!((s["laba-cramps"].overridden, s["laba-cramps"].accepted), (1, 0));
    assert_eq!(s["lifestyle-self-care-baseline"].issued, 1);
    assert!(!s.contains_key("medication-review"), "the merged topic is not a rule");

    store
        .store_feedback("leg-cramp-causes".into(), vec![item(0, "m1", "overridden", Some(ALREADY_ADDRESSED.1))], 30)
        .await
        .unwrap();
    let snoozed = store.suppressed_rules("patient-key-1", t(NOW));
    let expected: HashSet<String> = ["statin-myopathy", "thiazide-hypokalemia"].map(String::from).into();
    assert_eq!(snoozed, expected, "each listed rule is withheld, nothing else");
    assert!(store.suppressed_rules("patient-key-2", t(NOW)).is_empty());
    drop(store);
    let reopened = open(&dir, false);
    assert_eq!(reopened.suppressed_rules("patient-key-1", t(NOW)), expected, "the suppressions are stored");
}

#[tokio::test]
async fn a_critical_merged_card_is_never_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, false);
    store.record_issued(vec![card("c1", "medication-review", &["a", "b"], "critical")]);
    store
        .store_feedback("leg-cramp-causes".into(), vec![item(0, "c1", "overridden", Some(ALREADY_ADDRESSED.1))], 30)
        .await
        .unwrap();
    assert!(store.suppressed_rules("patient-key-1", t(NOW)).is_empty());
    assert_eq!(stats(&store).await["a"].overridden, 1);
}

/// Records a card, then sends feedback on it whose comment is the panic test hook.
async fn feedback_with_marker(store: &FeedbackStore, uuid: &str) -> Result<FeedbackReceipt, StoreError> {
    store.record_issued(vec![card(uuid, "r", &["r"], "info")]);
    let mut marker = item(0, uuid, "overridden", Some("not-applicable"));
    marker.user_comment = Some(TEST_HOOK_PANIC.into());
    store.store_feedback("leg-cramp-causes".into(), vec![marker], 30).await
}

#[tokio::test]
async fn a_writer_panic_answers_that_request_with_an_error_and_the_writer_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, true);
    let err = feedback_with_marker(&store, "k1").await.unwrap_err();
    assert!(matches!(err, StoreError::Interrupted), "{err}");
    store.record_issued(vec![card("k2", "r", &["r"], "info")]);
    let receipt =
        store.store_feedback("leg-cramp-causes".into(), vec![item(0, "k2", "accepted", None)], 30).await.unwrap();
    assert_eq!((receipt.stored, receipt.unknown_cards), (1, 0));
    let s = stats(&store).await;
    assert_eq!((s["r"].issued, s["r"].accepted, s["r"].overridden), (2, 1, 0), "records queued around it are kept");
}

#[tokio::test]
async fn without_test_hooks_the_marker_is_an_ordinary_comment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, false);
    assert_eq!(feedback_with_marker(&store, "k1").await.unwrap().stored, 1);
}

#[tokio::test]
async fn migration_2_gives_every_existing_card_its_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(queries::MIGRATIONS_TABLE).unwrap();
        for statement in migrations::MIGRATIONS[0].1 {
            conn.execute_batch(statement).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO schema_migrations VALUES (1, '2026-01-01T00:00:00.000000Z');
             INSERT INTO issued_cards VALUES ('old-1', 'leg-cramp-causes', 'old-rule', 'info', 'h', 'k',
                 '2026-06-01T00:00:00.000000Z', '[]');",
        )
        .unwrap();
    }
    let store = open(&dir, false);
    assert_eq!(stats(&store).await["old-rule"].issued, 1);
    drop(store);
    let again = open(&dir, false);
    assert_eq!(stats(&again).await["old-rule"].issued, 1, "migrations run once");
}

#[test]
fn a_suppression_keeps_its_later_end_and_is_looked_up_per_patient() {
    let mut map = SuppressionMap::new();
    suppress(&mut map, "p1", "rule-a", t("2026-07-15T00:00:00Z"));
    suppress(&mut map, "p1", "rule-a", t("2026-07-01T00:00:00Z"));
    assert_eq!(map["p1"]["rule-a"], t("2026-07-15T00:00:00Z"), "an earlier end never shortens it");
    suppress(&mut map, "p1", "rule-a", t("2026-08-01T00:00:00Z"));
    assert_eq!(map["p1"]["rule-a"], t("2026-08-01T00:00:00Z"));
    suppress(&mut map, "p2", "rule-b", t("2026-08-01T00:00:00Z"));
    assert_eq!(map.len(), 2);
    assert!(!map["p1"].contains_key("rule-b"));
}

#[test]
fn a_refresh_merges_into_the_mirror_and_drops_what_expired() {
    let mut map = SuppressionMap::new();
    suppress(&mut map, "local", "rule-a", t("2026-07-15T00:00:00Z"));
    suppress(&mut map, "old", "rule-b", t("2026-06-01T00:00:00Z"));
    let mut fresh = SuppressionMap::new();
    suppress(&mut fresh, "remote", "rule-c", t("2026-07-01T00:00:00Z"));
    merge_suppressions(&mut map, fresh, t(NOW));
    assert!(map.contains_key("local"), "one added while the refresh read is kept");
    assert!(map.contains_key("remote"));
    assert!(!map.contains_key("old"), "expired entries are dropped");
}
