//! JWT replay protection lives in the store: a token's `jti` is refused after a restart (SQLite
//! and PostgreSQL) and across replicas sharing one PostgreSQL. The replicas have one public URL,
//! as behind a load balancer, so one token's `aud` fits both.
use crate::auth::{assert_401, call, claims, es384, trusted_issuer_args};
use crate::feedback::{Backend, Database};
use crate::helpers::*;
use serde_json::json;

const PUBLIC_URL: &str = "http://cds.replicas.test";

fn replica(db: &Database) -> TestServer {
    let mut args = trusted_issuer_args();
    args.extend(["--public-url".to_string(), PUBLIC_URL.to_string()]);
    db.server(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn token() -> String {
    es384(&claims(json!(format!("{PUBLIC_URL}/cds-services/leg-cramp-causes"))))
}

async fn a_token_used_before_a_restart_is_refused_after_it(backend: Backend) {
    let db = Database::new(backend);
    let used = token();
    let before = replica(&db);
    assert_eq!(call(&before, Some(&used)).await.status().as_u16(), 200);
    // Killed, not stopped: the claim was committed before the 200.
    drop(before);
    let after = replica(&db);
    assert_401(call(&after, Some(&used)).await, "replay after a restart").await;
    assert!(after.wait_for_log("jti replayed").await, "{}", after.log_text());
    assert_eq!(call(&after, Some(&token())).await.status().as_u16(), 200, "a fresh token is accepted");
}

#[tokio::test]
async fn a_token_used_before_a_restart_is_refused_after_it_sqlite() {
    a_token_used_before_a_restart_is_refused_after_it(Backend::Sqlite).await
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set LEG_CRAMP_CDS_TEST_POSTGRES and run cargo test -- --include-ignored (.ci/run does)"]
async fn a_token_used_before_a_restart_is_refused_after_it_postgres() {
    a_token_used_before_a_restart_is_refused_after_it(Backend::Postgres).await
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set LEG_CRAMP_CDS_TEST_POSTGRES and run cargo test -- --include-ignored (.ci/run does)"]
async fn a_token_used_on_replica_a_is_refused_on_replica_b() {
    let db = Database::new(Backend::Postgres);
    let (a, b) = (replica(&db), replica(&db));
    let first = token();
    assert_eq!(call(&a, Some(&first)).await.status().as_u16(), 200);
    assert_401(call(&b, Some(&first)).await, "used on A, replayed on B").await;
    let second = token();
    assert_eq!(call(&b, Some(&second)).await.status().as_u16(), 200);
    assert_401(call(&a, Some(&second)).await, "used on B, replayed on A").await;
    assert!(a.wait_for_log("jti replayed").await && b.wait_for_log("jti replayed").await);
    // Sent to both at the same moment: exactly one replica accepts it.
    for _ in 0..10 {
        let raced = token();
        let (on_a, on_b) = tokio::join!(call(&a, Some(&raced)), call(&b, Some(&raced)));
        let mut statuses = [on_a.status().as_u16(), on_b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 401], "one token, two replicas at once");
    }
}
