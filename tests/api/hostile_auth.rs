//! Issue 13, authentication and network: what an outside tester did to get in, each as a test
//! over HTTP against the real binary. `--fhir-allow` escapes (dot segments, percent-encoding,
//! prefix without a segment boundary, redirects), long-lived tokens, log flooding with huge
//! claims, and the CDS Hooks Sandbox set-up mistakes (issuer with a trailing slash, `aud`
//! naming another loopback alias, `--open-discovery`). Replay across restarts and replicas is
//! in `replay_replicas.rs`.
use crate::auth::{assert_401, call, claims, es384, keys, now, sandbox_token, secured, sign, trusted_issuer_args};
use crate::auth::{ISS, SANDBOX_ISS};
use crate::helpers::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The EHR's access token for its FHIR server: it must only ever reach the allowed base.
const FHIR_TOKEN: &str = "secret-fhir-token-for-fhir-only";

fn without_prefetch(fhir_server: &str) -> Value {
    json!({"hook": "patient-view", "hookInstance": uuid(), "fhirServer": fhir_server,
        "fhirAuthorization": {"access_token": FHIR_TOKEN, "token_type": "Bearer", "expires_in": 300,
            "scope": "patient/*.read", "subject": "leg-cramp-cds"},
        "context": {"userId": "Practitioner/1", "patientId": "p1"}})
}

/// A FHIR server on loopback that answers every GET with an empty Bundle.
async fn empty_fhir() -> MockServer {
    let fhir = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resourceType": "Bundle", "type": "searchset"})))
        .mount(&fhir)
        .await;
    fhir
}

/// Calls leg-cramp-causes with a valid JWT and a request whose prefetch must all be fetched.
async fn call_with_fhir_server(server: &TestServer, fhir_server: &str) -> (u16, Value) {
    let res = server
        .client
        .post(server.url("/cds-services/leg-cramp-causes"))
        .bearer_auth(es384(&claims(json!(server.url("/cds-services/leg-cramp-causes")))))
        .json(&without_prefetch(fhir_server))
        .send()
        .await
        .unwrap();
    read(res).await
}

/// Paths the mock FHIR server was asked for, with whether the FHIR token came along.
async fn requests_seen(fhir: &MockServer) -> Vec<(String, bool)> {
    let bearer = format!("Bearer {FHIR_TOKEN}");
    fhir.received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let token = r.headers.get("authorization").is_some_and(|v| v.to_str().unwrap_or("") == bearer);
            (r.url.path().to_string(), token)
        })
        .collect()
}

#[tokio::test]
async fn fhir_server_dot_dot_admin_does_not_pass_fhir_allow_nor_get_the_access_token() {
    let fhir = empty_fhir().await;
    let server = secured(&["--fhir-allow", &format!("{}/fhir", fhir.uri())]);
    // Each names a path outside /fhir once a URL parser or the FHIR server has decoded it.
    for escape in [
        "/fhir/../admin",
        "/fhir/%2e%2e/admin",
        "/fhir/%2E%2e/admin",
        "/fhir/.%2e/admin",
        "/fhir/..%2fadmin",
        "/fhir/..%2Fadmin",
        "/fhir/..%5cadmin",
        "/fhir%2f..%2fadmin",
        "/fhir/%252e%252e/admin",
        "/fhir/./../admin",
    ] {
        let (status, body) = call_with_fhir_server(&server, &format!("{}{escape}", fhir.uri())).await;
        assert_eq!(status, 412, "{escape}: {body}");
        assert_outcome(&body, "not an allowed FHIR server");
    }
    assert_eq!(requests_seen(&fhir).await, vec![], "an escaping fhirServer was called");
}

#[tokio::test]
async fn fhir_allow_matches_only_on_a_path_segment_boundary() {
    let fhir = empty_fhir().await;
    let server = secured(&["--fhir-allow", &format!("{}/fhir", fhir.uri())]);
    for sibling in ["/fhirx", "/fhir-admin", "/fhir.old"] {
        let (status, body) = call_with_fhir_server(&server, &format!("{}{sibling}", fhir.uri())).await;
        assert_eq!(status, 412, "{sibling}: {body}");
        assert_outcome(&body, "not an allowed FHIR server");
    }
    assert_eq!(requests_seen(&fhir).await, vec![], "a sibling of the allowed path was called");
    // The allowed base itself, written with a trailing slash, is fetched (with the token).
    let (status, body) = call_with_fhir_server(&server, &format!("{}/fhir/", fhir.uri())).await;
    assert_eq!(status, 200, "{body}");
    let seen = requests_seen(&fhir).await;
    assert!(!seen.is_empty() && seen.iter().all(|(p, token)| p.starts_with("/fhir/") && *token), "{seen:?}");
}

/// A FHIR server whose Patient/p1 redirects to `location`. The patient is served at
/// /admin/Patient/p1 (to anyone) and at /fhir/Patient/moved (with the FHIR token); every other
/// GET gets an empty Bundle.
async fn redirecting_fhir(location: &str) -> MockServer {
    let fhir = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/Patient/p1"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", location))
        .mount(&fhir)
        .await;
    let patient = json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"});
    Mock::given(method("GET"))
        .and(path("/admin/Patient/p1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(patient.clone()))
        .mount(&fhir)
        .await;
    Mock::given(method("GET"))
        .and(path("/fhir/Patient/moved"))
        .and(header("Authorization", format!("Bearer {FHIR_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(patient))
        .mount(&fhir)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resourceType": "Bundle", "type": "searchset"})))
        .mount(&fhir)
        .await;
    fhir
}

#[tokio::test]
async fn a_redirect_never_leaves_the_allowed_base_and_the_token_stays_within_it() {
    // Same host, same port, another path: still outside the allowed base. Not followed.
    let fhir = redirecting_fhir("/admin/Patient/p1").await;
    let server = secured(&["--fhir-allow", &format!("{}/fhir", fhir.uri())]);
    let (status, body) = call_with_fhir_server(&server, &format!("{}/fhir", fhir.uri())).await;
    assert_eq!(status, 412, "{body}");
    assert_outcome(&body, "302");
    let seen = requests_seen(&fhir).await;
    assert!(seen.iter().all(|(p, _)| p.starts_with("/fhir/")), "a request left /fhir: {seen:?}");

    // A redirect within the base is followed, with the token.
    let inside = redirecting_fhir("/fhir/Patient/moved").await;
    let server = secured(&["--fhir-allow", &format!("{}/fhir", inside.uri())]);
    let (status, body) = call_with_fhir_server(&server, &format!("{}/fhir", inside.uri())).await;
    assert_eq!(status, 200, "{body}");
    assert!(requests_seen(&inside).await.contains(&("/fhir/Patient/moved".to_string(), true)));
}

#[tokio::test]
async fn a_token_valid_for_ten_years_is_refused() {
    let server = secured(&[]);
    let aud = json!(server.url("/cds-services/leg-cramp-causes"));
    let lasting = |secs: i64| {
        let mut c = claims(aud.clone());
        c["iat"] = json!(now());
        c["exp"] = json!(now() + secs);
        es384(&c)
    };
    assert_401(call(&server, Some(&lasting(10 * 365 * 86_400))).await, "ten years").await;
    assert_401(call(&server, Some(&lasting(2 * 3600))).await, "two hours, over the 1 h default").await;
    assert_eq!(call(&server, Some(&lasting(3600))).await.status().as_u16(), 200, "one hour is the default bound");
    assert!(server.wait_for_log("max-token-lifetime").await, "{}", server.log_text());
    // The bound is a setting (the spec recommends minutes).
    let strict = secured(&["--max-token-lifetime", "5m"]);
    let aud = json!(strict.url("/cds-services/leg-cramp-causes"));
    let mut c = claims(aud.clone());
    c["exp"] = json!(now() + 600);
    assert_401(call(&strict, Some(&es384(&c))).await, "ten minutes, over 5m").await;
    c["exp"] = json!(now() + 300);
    c["jti"] = json!(uuid());
    assert_eq!(call(&strict, Some(&es384(&c))).await.status().as_u16(), 200, "five minutes, as the Sandbox signs");
}

#[tokio::test]
async fn log_flooding_a_hundred_rejected_tokens_with_a_30_kb_iss_add_little_log() {
    let server = secured(&[]);
    assert!(server.wait_for_log("leg-cramp-cds ready").await);
    let before = server.log_text().len();
    let mut c = claims(json!(server.url("/cds-services/leg-cramp-causes")));
    c["iss"] = json!(format!("https://{}.example", "a".repeat(30_000)));
    c["jti"] = json!("j".repeat(30_000));
    let token = es384(&c);
    assert!(token.len() > 40_000);
    for _ in 0..100 {
        let res = server
            .client
            .post(server.url("/cds-services/leg-cramp-causes"))
            .header("Authorization", format!("Bearer {token}"))
            .json(&patient_view_request())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401);
    }
    assert!(server.wait_for_log("JWT rejected").await);
    let logs = server.log_text();
    let added = logs.len() - before;
    // 100 access-log lines are ~25 KB; the tester saw 3 MB when the claims were logged whole.
    assert!(added < 64 * 1024, "{added} bytes of log for 100 rejected tokens");
    // Every refusal is counted, though not every one is logged.
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let rejected: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("cds_auth_rejections_total{") && l.contains("issuer not trusted"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(rejected, 100.0, "{metrics}");
    let rejections: Vec<&str> = logs.lines().filter(|l| l.contains("JWT rejected")).collect();
    assert!(!rejections.is_empty() && rejections.len() <= 10, "{} rejection lines", rejections.len());
    for line in rejections {
        let v: Value = serde_json::from_str(line).unwrap();
        for claim in ["iss", "jti"] {
            let shown = v[claim].as_str().unwrap_or_else(|| panic!("{claim} not logged: {line}"));
            assert!(shown.chars().count() <= 64, "{claim} logged with {} characters", shown.chars().count());
        }
    }
}

#[tokio::test]
async fn an_issuer_written_with_a_trailing_slash_is_trusted() {
    let jwks = keys().jwks_file.path().display().to_string();
    let sandbox_jwks = project_path("tests/fixtures/sandbox/sandbox-jwks.json").display().to_string();
    let server = TestServer::builder()
        .args(["--trusted-issuer", &format!("{ISS}/={jwks}")])
        .args(["--trusted-issuer", &format!("{SANDBOX_ISS}={sandbox_jwks}")])
        .start();
    let aud = json!(server.url("/cds-services/leg-cramp-causes"));
    // Configured with a slash, signed without one; and the other way round for the Sandbox.
    assert_eq!(call(&server, Some(&es384(&claims(aud.clone())))).await.status().as_u16(), 200);
    let mut c = claims(aud.clone());
    c["iss"] = json!(format!("{ISS}/"));
    assert_eq!(call(&server, Some(&es384(&c))).await.status().as_u16(), 200);
    // One issuer, however written: its jti are one namespace.
    c["iss"] = json!(ISS);
    assert_401(call(&server, Some(&es384(&c))).await, "the same jti under the other spelling").await;
    let c = json!({"iss": format!("{SANDBOX_ISS}/"), "aud": aud, "iat": now(), "exp": now() + 300, "jti": uuid()});
    assert_eq!(call(&server, Some(&sandbox_token(&c))).await.status().as_u16(), 200);
}

#[tokio::test]
async fn aud_naming_another_loopback_alias_logs_the_public_url_flag_to_use() {
    let server = secured(&[]);
    assert!(server.base.starts_with("http://127.0.0.1:"), "public URL is the listen address");
    let port = server.port;
    let path = "/cds-services/leg-cramp-causes";
    for alias in [format!("http://localhost:{port}"), format!("http://[::1]:{port}")] {
        let token = es384(&claims(json!(format!("{alias}{path}"))));
        assert_401(call(&server, Some(&token)).await, &alias).await;
        let hint = format!("--public-url {alias}");
        assert!(server.wait_for_log(&hint).await, "no hint {hint:?}:\n{}", server.log_text());
    }
    // Another port is another service, not an alias: no hint.
    let token = es384(&claims(json!(format!("http://localhost:1{path}"))));
    assert_401(call(&server, Some(&token)).await, "another port").await;
    assert!(server.wait_for_log("aud is not the URL called").await);
    assert!(!server.log_text().contains("--public-url http://localhost:1"), "{}", server.log_text());
}

#[tokio::test]
async fn open_discovery_help_says_the_sandbox_signs_discovery_calls_too() {
    let out = std::process::Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let flag = help.split("--open-discovery").nth(1).expect("--open-discovery documented");
    let text: String = flag.split("\n      --").next().unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!text.contains("unauthenticated"), "still says the Sandbox calls unauthenticated: {text}");
    assert!(text.contains("Sandbox signs discovery"), "{text}");
    // And so it does: a discovery call signed with the Sandbox key, aud = the discovery URL,
    // is served without --open-discovery.
    let server = TestServer::builder().args(trusted_issuer_args()).start();
    let c = json!({"iss": SANDBOX_ISS, "aud": server.url("/cds-services"), "iat": now(), "exp": now() + 300, "jti": uuid()});
    let res = server.client.get(server.url("/cds-services")).bearer_auth(sandbox_token(&c)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn with_the_store_down_a_replayed_token_is_still_refused_by_this_replica() {
    // Nothing listens on port 1: the store starts unavailable and stays so.
    let server = secured(&["--database", "postgres://leg@127.0.0.1:1/none", "--patient-key-secret", "k"]);
    let token = es384(&claims(json!(server.url("/cds-services/leg-cramp-causes"))));
    assert_eq!(call(&server, Some(&token)).await.status().as_u16(), 200, "hooks keep answering");
    assert_401(call(&server, Some(&token)).await, "replay on the same replica").await;
    assert!(server.wait_for_log("REPLAY LEDGER UNAVAILABLE").await, "{}", server.log_text());
    assert!(server.wait_for_log("jti replayed").await);
    // An RS384 token (Epic style) is checked the same way.
    let aud = json!(server.url("/cds-services/leg-cramp-causes"));
    let rs = sign(Algorithm::RS384, "rsa-1", &claims(aud), &keys().rsa);
    assert_eq!(call(&server, Some(&rs)).await.status().as_u16(), 200);
    assert_401(call(&server, Some(&rs)).await, "RS384 replay").await;
}
