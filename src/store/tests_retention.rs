//! Store-level tests of what issue 13 added: retention in bounded batches, a repeated
//! "already addressed" restoring its snooze, and a SQLite file that is not silently replaced.
//! The HTTP tests (tests/api/hostile_store.rs) run the same through the server.

use super::sql::{Backend, Target};
use super::tests::{item, t, NOW};
use super::*;

const SECRET: &str = "unit-test-secret-unit-test-secret";

/// A migrated connection of the test's own to a SQLite file.
fn connect(path: &std::path::Path) -> Box<dyn Backend> {
    let mut conn = Target::parse(path.to_str().unwrap()).unwrap().connect().unwrap();
    conn.migrate().unwrap();
    conn
}

fn issued(uuid: String, at: &str) -> queue::Record {
    queue::Record::Issued(IssuedCard {
        card_uuid: uuid,
        suggestion_uuids: vec![],
        service: "leg-cramp-causes".into(),
        topic: "r".into(),
        rules: vec!["r".into(), "s".into()],
        indicator: "info".into(),
        hook_instance: "h".into(),
        patient_key: "k".into(),
        issued_at: t(at),
        silent: false,
    })
}

/// "Already addressed" on `card`.
fn addressed(card: &str) -> FeedbackRow {
    item(0, card, "overridden", Some(ALREADY_ADDRESSED.1))
}

#[test]
fn retention_deletes_old_rows_in_bounded_batches_and_keeps_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connect(&dir.path().join("s.sqlite"));
    let old: Vec<_> = (0..25).map(|i| issued(format!("old-{i:02}"), "2025-01-01T00:00:00Z")).collect();
    let recent: Vec<_> = (0..5).map(|i| issued(format!("new-{i}"), NOW)).collect();
    queries::record(conn.as_mut(), &old).unwrap();
    queries::record(conn.as_mut(), &recent).unwrap();
    let cutoff = t("2026-01-01T00:00:00Z");
    let batches: Vec<[u64; 2]> = (0..4)
        .map(|_| retention::prune_batch(conn.as_mut(), cutoff, t(NOW), 10).unwrap().0)
        .map(|[cards, rules, ..]| [cards, rules])
        .collect();
    assert_eq!(batches, [[10, 20], [10, 20], [5, 10], [0, 0]], "at most 10 cards (and their rules) per batch");
    let left = queries::analytics(conn.as_mut(), None).unwrap();
    assert_eq!(left.iter().map(|a| (a.rule.as_str(), a.issued)).collect::<Vec<_>>(), [("r", 5), ("s", 5)]);
}

#[tokio::test]
async fn a_repeated_already_addressed_restores_its_snooze_in_the_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let options = StoreOptions { fixed_now: Some(t(NOW)), ..StoreOptions::default() };
    let store = FeedbackStore::open_with(path.to_str().unwrap(), Some(SECRET), options).unwrap();
    // The first attempt committed but its answer was lost (the store never saw it).
    let mut other = connect(&path);
    queries::record(other.as_mut(), &[issued("c1".into(), NOW)]).unwrap();
    queries::store_feedback(other.as_mut(), "leg-cramp-causes", &[addressed("c1")], 30, t(NOW)).unwrap();
    assert!(store.suppressed_rules("k", t(NOW)).is_empty());
    let receipt = store.store_feedback("leg-cramp-causes".into(), vec![addressed("c1")], 30).await.unwrap();
    assert_eq!((receipt.stored, receipt.duplicates), (0, 1));
    assert_eq!(store.suppressed_rules("k", t(NOW)), ["r", "s"].map(String::from).into());
}

#[test]
fn a_sqlite_file_deleted_or_replaced_is_refused_never_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let target = Target::parse(path.to_str().unwrap()).unwrap();
    let mut first = target.connect().unwrap();
    first.migrate().unwrap();
    first.ping().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(first.ping(), Err(StoreError::FileGone)));
    assert!(matches!(queries::record(first.as_mut(), &[issued("c".into(), NOW)]), Err(StoreError::FileGone)));
    assert!(matches!(target.connect().map(|_| ()), Err(StoreError::FileGone)));
    assert!(!path.exists(), "a later connection does not create an empty database in its place");
    std::fs::write(&path, []).unwrap();
    assert!(matches!(target.connect().map(|_| ()), Err(StoreError::FileGone)), "another file is not the store's");
}
