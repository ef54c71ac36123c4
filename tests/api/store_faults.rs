//! The feedback store under faults, through the real server: a PostgreSQL restart mid-run,
//! a panic on the writer thread, and a stalled writer with a full queue. Hooks answer 200
//! throughout; feedback is 200 only once stored and 503 otherwise; card records are kept and
//! retried, or shed and counted exactly.
use crate::feedback::{accepted, analytics, card_of, cards, overridden, rule_stats, send_feedback, MG, NOW, SECRET};
use crate::helpers::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// Cards the service issued (and records): those with a uuid and a topic.
pub(crate) fn recordable(cards: &[Value]) -> u64 {
    cards.iter().filter(|c| c["uuid"].is_string() && c["source"]["topic"]["code"].is_string()).count() as u64
}

/// Sum of every series of a Prometheus counter or gauge (0 when absent).
pub(crate) async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Cards issued across all rules, as the store reports them.
pub(crate) async fn stored_issued(server: &TestServer) -> u64 {
    analytics(server, "").await["rules"].as_array().unwrap().iter().map(|r| r["issued"].as_u64().unwrap()).sum()
}

/// Retries `f` every 200 ms until it returns `Some`, for at most `secs`.
pub(crate) async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Feedback on the visit's magnesium card is refused (503, no 200 without a commit), and
/// /readyz says the store is unavailable, naming the database's own error.
pub(crate) async fn assert_store_unavailable(server: &TestServer, visit: &[Value], database: &str) {
    let (status, body) = send_feedback(server, vec![accepted(card_of(visit, MG).unwrap())]).await;
    assert_eq!(status, 503, "{body}");
    assert_outcome(&body, "feedback store");
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_outcome(&body, database);
}

/// Sends "accepted" on the visit's magnesium card until it is stored (30 s at most); the receipt.
pub(crate) async fn accepted_once_stored(server: &TestServer, visit: &[Value], why: &str) -> Value {
    let item = accepted(card_of(visit, MG).unwrap());
    eventually(30, || async {
        let (status, body) = send_feedback(server, vec![item.clone()]).await;
        (status == 200).then_some(body)
    })
    .await
    .unwrap_or_else(|| panic!("{why}"))
}

#[tokio::test]
async fn a_full_queue_sheds_card_records_counts_them_exactly_and_never_blocks_a_hook() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite").to_str().unwrap().to_string();
    let server = TestServer::builder()
        .args(["--database", &db, "--patient-key-secret", SECRET, "--now", NOW, "--store-queue", "4"])
        .start();
    // Another process holds the write lock: the writer stalls on it (busy, then backoff).
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // A hook never waits for the store: a blocked push would hold one for the 5 s busy timeout.
    let mut slowest = Duration::ZERO;
    let mut first = Vec::new();
    let mut issued = 0;
    for i in 0..20 {
        let started = Instant::now();
        let c = cards(&server, &format!("pt-burst-{i}"), false).await;
        slowest = slowest.max(started.elapsed());
        issued += recordable(&c);
        if i == 0 {
            first = c;
        }
    }
    assert!(slowest < Duration::from_millis(2500), "a hook waited {slowest:?}");
    // Feedback is not shed: it waits for the records ahead of it, and is refused while the
    // database is locked (503, not a hang and not a silent drop).
    assert_store_unavailable(&server, &first, "SQLite").await;
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    // The queue kept the oldest records (the first visit's cards), so its feedback is known.
    let receipt = accepted_once_stored(&server, &first, "feedback stored once the lock is gone").await;
    assert_eq!(receipt["unknownCards"], 0, "{receipt}");
    assert!(eventually(10, || async { (metric(&server, "cds_store_queue_records").await == 0.0).then_some(()) })
        .await
        .is_some());
    let shed = metric(&server, "cds_store_records_shed_total").await as u64;
    let stored = stored_issued(&server).await;
    assert!(shed > 0, "a burst of {issued} cards into a queue of 4 sheds some");
    assert_eq!(stored + shed, issued, "every card is either stored or counted as shed");
    assert!(server.wait_for_log("card records shed").await, "the shedding is logged");
    assert_eq!(server.get("/readyz").await.0, 200);
}

#[tokio::test]
async fn a_writer_panic_is_logged_the_writer_restarts_and_later_feedback_is_stored() {
    let server = TestServer::builder().args(["--now", NOW, "--test-hooks"]).start();
    let one = cards(&server, "pt-panic-1", false).await;
    assert_eq!(send_feedback(&server, vec![accepted(card_of(&one, MG).unwrap())]).await.0, 200);
    let two = cards(&server, "pt-panic-2", false).await;
    let mut poison = overridden(card_of(&two, MG).unwrap(), "not-applicable");
    poison["overrideReason"]["userComment"] = leg_cramp_cds::store::TEST_HOOK_PANIC.into();
    let (status, body) = send_feedback(&server, vec![poison]).await;
    assert_eq!(status, 503, "the request the writer panicked on gets an answer: {body}");
    assert_outcome(&body, "feedback store");
    assert!(server.wait_for_log("feedback store thread panicked; restarting it").await);
    let three = cards(&server, "pt-panic-3", false).await;
    let (status, receipt) =
        send_feedback(&server, vec![accepted(card_of(&two, MG).unwrap()), accepted(card_of(&three, MG).unwrap())])
            .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!((receipt["stored"].as_u64(), receipt["unknownCards"].as_u64()), (Some(2), Some(0)));
    let mg = rule_stats(&analytics(&server, "").await, MG);
    assert_eq!(
        (mg["issued"].as_u64(), mg["accepted"].as_u64(), mg["overridden"].as_u64()),
        (Some(3), Some(3), Some(0))
    );
    assert_eq!(metric(&server, "cds_store_thread_restarts_total").await, 1.0);
    assert_eq!(server.get("/readyz").await.0, 200);
}

#[tokio::test]
async fn test_hooks_are_refused_off_loopback() {
    let err = TestServer::builder()
        .listen("0.0.0.0:0")
        .args(["--insecure-no-auth", "--test-hooks"])
        .try_start()
        .err()
        .expect("refused");
    assert!(err.contains("--test-hooks is for the test suite"), "{err}");
}

/// A PostgreSQL cluster of this test's own (another port and data directory), so stopping
/// it never breaks the connections of the other PostgreSQL tests running alongside.
struct Cluster {
    data: String,
    port: u16,
}

impl Cluster {
    /// Needs the PostgreSQL binaries, as the other PostgreSQL tests do (their variable says so).
    fn create() -> Self {
        std::env::var("LEG_CRAMP_CDS_TEST_POSTGRES")
            .expect("LEG_CRAMP_CDS_TEST_POSTGRES is needed for the PostgreSQL tests");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Cluster { data: format!("/tmp/lcc-pg-restart-{}", uuid::Uuid::new_v4().simple()), port };
        cluster.script("start-test-postgres", &[]);
        cluster
    }

    fn script(&self, name: &str, args: &[&str]) {
        let out = Command::new(project_path("scripts").join(name))
            .args(args)
            .env("PGDATA_TEST", &self.data)
            .env("PGPORT_TEST", self.port.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The service, storing feedback in this cluster.
    fn server(&self) -> TestServer {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        TestServer::builder().args(["--database", &url, "--patient-key-secret", SECRET, "--now", NOW]).start()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(project_path("scripts/stop-test-postgres"))
            .arg("--remove")
            .env("PGDATA_TEST", &self.data)
            .output();
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set LEG_CRAMP_CDS_TEST_POSTGRES and run cargo test -- --include-ignored (.ci/run does)"]
async fn a_postgres_restart_loses_nothing_and_the_store_recovers_by_itself() {
    let cluster = Cluster::create();
    let server = cluster.server();
    let before = cards(&server, "pt-pg-before", false).await;
    assert_eq!(send_feedback(&server, vec![accepted(card_of(&before, MG).unwrap())]).await.0, 200);

    cluster.script("stop-test-postgres", &[]);
    let during = cards(&server, "pt-pg-during", false).await;
    let mut visits = 2;
    assert_store_unavailable(&server, &during, "PostgreSQL").await;
    for i in 0..5 {
        cards(&server, &format!("pt-pg-down-{i}"), false).await;
        visits += 1;
    }

    cluster.script("start-test-postgres", &[]);
    let receipt =
        accepted_once_stored(&server, &during, "feedback stored after the restart, without restarting the service")
            .await;
    assert_eq!(receipt["unknownCards"], 0, "the card issued during the outage was recorded first: {receipt}");
    cards(&server, "pt-pg-after", false).await;
    visits += 1;
    let mg = eventually(10, || async {
        let mg = rule_stats(&analytics(&server, "").await, MG);
        (mg["issued"] == visits).then_some(mg)
    })
    .await
    .unwrap_or_else(|| panic!("every card issued around the restart is stored ({visits} visits)"));
    assert_eq!(mg["accepted"], 2, "{mg}");
    assert_eq!(metric(&server, "cds_store_records_shed_total").await, 0.0);
    assert!(eventually(10, || async { (server.get("/readyz").await.0 == 200).then_some(()) }).await.is_some());
    assert!(server.log_text().contains("feedback store available again"));
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set LEG_CRAMP_CDS_TEST_POSTGRES and run cargo test -- --include-ignored (.ci/run does)"]
async fn a_service_started_before_postgres_connects_and_migrates_by_itself() {
    let cluster = Cluster::create();
    cluster.script("stop-test-postgres", &[]);
    let server = cluster.server();
    let early = cards(&server, "pt-pg-early", false).await;
    assert_store_unavailable(&server, &early, "PostgreSQL").await;
    cluster.script("start-test-postgres", &[]);
    let receipt = accepted_once_stored(&server, &early, "the store connects once PostgreSQL is up").await;
    assert_eq!(receipt["unknownCards"], 0, "the card issued before the database was up was kept: {receipt}");
    let mg = rule_stats(&analytics(&server, "").await, MG);
    assert_eq!((mg["issued"].as_u64(), mg["accepted"].as_u64()), (Some(1), Some(1)), "{mg}");
    assert!(eventually(10, || async { (server.get("/readyz").await.0 == 200).then_some(()) }).await.is_some());
}
