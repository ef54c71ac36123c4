//! Trust: JWT authentication of CDS clients (keys generated here: P-384 and RSA, plus the
//! CDS Hooks Sandbox's public test key), safe start-up defaults, HTTPS, and the SSRF guard.
use crate::helpers::*;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::OnceLock;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) const ISS: &str = "https://ehr.example.org";
pub(crate) const SANDBOX_ISS: &str = "https://sandbox.cds-hooks.org";
const SANDBOX_KID: &str = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f";

pub(crate) struct Keys {
    pub(crate) ec: EncodingKey,
    pub(crate) rsa: EncodingKey,
    rsa_public_pem: String,
    pub(crate) jwks_file: tempfile::NamedTempFile,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One P-384 and one RSA key pair for the whole test run, and a JWKS file with both.
pub(crate) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let raw = ec.public_key_raw();
        assert_eq!(raw.len(), 97);
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-384", "kid": "ec-1", "use": "sig", "alg": "ES384", "x": b64(&raw[1..49]), "y": b64(&raw[49..])},
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS384", "n": b64(&rsa_key.n().to_bytes_be()), "e": b64(&rsa_key.e().to_bytes_be())}
        ]});
        let jwks_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(jwks_file.path(), jwks.to_string()).unwrap();
        Keys {
            ec: EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
            rsa: EncodingKey::from_rsa_pem(rsa_key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap(),
            rsa_public_pem: rsa_key.to_public_key().to_public_key_pem(LineEnding::LF).unwrap(),
            jwks_file,
        }
    })
}

/// A server that trusts ISS (generated keys) and the Sandbox (its public JWKS). It listens on
/// port 0 and, with no `--public-url`, derives its public URL from the port it really got, so
/// there is no race for a port picked in advance.
pub(crate) fn secured(extra: &[&str]) -> TestServer {
    TestServer::builder().args(trusted_issuer_args()).args(extra.iter().map(|s| s.to_string())).start()
}

/// `--trusted-issuer` for ISS (generated keys) and for the Sandbox (its public JWKS).
pub(crate) fn trusted_issuer_args() -> Vec<String> {
    let trusted = format!("{ISS}={}", keys().jwks_file.path().display());
    let sandbox = format!("{SANDBOX_ISS}={}", project_path("tests/fixtures/sandbox/sandbox-jwks.json").display());
    vec!["--trusted-issuer".into(), trusted, "--trusted-issuer".into(), sandbox]
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn claims(aud: Value) -> Value {
    json!({"iss": ISS, "aud": aud, "iat": now(), "exp": now() + 300, "jti": uuid(), "sub": "epic-client", "nbf": now() - 300})
}

pub(crate) fn sign(alg: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub(crate) fn es384(claims: &Value) -> String {
    sign(Algorithm::ES384, "ec-1", claims, &keys().ec)
}

pub(crate) async fn call(server: &TestServer, token: Option<&str>) -> reqwest::Response {
    let mut req = server.client.post(server.url("/cds-services/leg-cramp-causes")).json(&patient_view_request());
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

pub(crate) async fn assert_401(res: reqwest::Response, case: &str) {
    assert_eq!(res.status().as_u16(), 401, "{case}");
    assert_eq!(res.headers()["www-authenticate"], "Bearer", "{case}");
    let (_, body) = read(res).await;
    assert_eq!(body["issue"][0]["diagnostics"], "authentication failed", "{case}: generic body");
}

#[tokio::test]
async fn valid_es384_and_rs384_tokens_are_accepted_with_extra_claims() {
    let server = secured(&[]);
    let aud = json!(server.url("/cds-services/leg-cramp-causes"));
    assert_eq!(call(&server, Some(&es384(&claims(aud.clone())))).await.status().as_u16(), 200);
    let rs = sign(Algorithm::RS384, "rsa-1", &claims(aud.clone()), &keys().rsa);
    assert_eq!(call(&server, Some(&rs)).await.status().as_u16(), 200, "Epic style: RS384 with nbf and sub");
    // aud as an array containing the URL.
    let arr = es384(&claims(json!(["https://other.example", aud])));
    assert_eq!(call(&server, Some(&arr)).await.status().as_u16(), 200);
}

#[tokio::test]
async fn bearer_scheme_in_capitals_is_accepted() {
    let server = secured(&[]);
    let aud = json!(server.url("/cds-services/leg-cramp-causes"));
    for scheme in ["BEARER", "bearer", "BeArEr"] {
        let token = es384(&claims(aud.clone()));
        let res = server
            .client
            .post(server.url("/cds-services/leg-cramp-causes"))
            .json(&patient_view_request())
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{scheme}");
    }
    let res = server
        .client
        .post(server.url("/cds-services/leg-cramp-causes"))
        .json(&patient_view_request())
        .header("Authorization", format!("Basic {}", es384(&claims(aud.clone()))))
        .send()
        .await
        .unwrap();
    assert_401(res, "another scheme").await;
}

/// A token as the CDS Hooks Sandbox signs it (its public TEST-ONLY key, ES384, its kid and jku).
pub(crate) fn sandbox_token(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(
        &std::fs::read(project_path("tests/fixtures/sandbox/sandbox-ecprivkey.TEST-ONLY.pem")).unwrap(),
    )
    .unwrap();
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some(SANDBOX_KID.into());
    header.typ = Some("JWT".into());
    // The Sandbox always names its jku; it is not allow-listed here, so it is not fetched.
    header.jku = Some("https://sandbox.cds-hooks.org/.well-known/jwks.json".into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn a_token_signed_with_the_sandbox_key_verifies() {
    let server = secured(&[]);
    let c = json!({"iss": SANDBOX_ISS, "aud": server.url("/cds-services/leg-cramp-causes"), "iat": now(), "exp": now() + 300, "jti": uuid()});
    assert_eq!(call(&server, Some(&sandbox_token(&c))).await.status().as_u16(), 200);
}

#[tokio::test]
async fn every_bad_token_is_401_with_a_generic_body() {
    let server = secured(&[]);
    let aud = json!(server.url("/cds-services/leg-cramp-causes"));
    let mut expired = claims(aud.clone());
    expired["exp"] = json!(now() - 600);
    expired["iat"] = json!(now() - 900);
    let mut future = claims(aud.clone());
    future["iat"] = json!(now() + 600);
    future["exp"] = json!(now() + 900);
    let mut untrusted = claims(aud.clone());
    untrusted["iss"] = json!("https://evil.example");
    let mut no_jti = claims(aud.clone());
    no_jti.as_object_mut().unwrap().remove("jti");
    let hs256 = jsonwebtoken::encode(
        &Header { kid: Some("rsa-1".into()), typ: Some("JWT".into()), ..Header::new(Algorithm::HS256) },
        &claims(aud.clone()),
        &EncodingKey::from_secret(keys().rsa_public_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT", "kid": "ec-1"}).to_string().as_bytes()),
        b64(claims(aud.clone()).to_string().as_bytes())
    );
    let good = es384(&claims(aud.clone()));
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let mut tampered_claims = claims(aud.clone());
    tampered_claims["iss"] = json!(ISS);
    tampered_claims["sub"] = json!("someone-else");
    parts[1] = b64(tampered_claims.to_string().as_bytes());
    let tampered = parts.join(".");
    let ec_key_for_rsa_alg = sign(Algorithm::RS384, "ec-1", &claims(aud.clone()), &keys().rsa);
    let no_typ = {
        let mut h = Header::new(Algorithm::ES384);
        h.kid = Some("ec-1".into());
        h.typ = None;
        jsonwebtoken::encode(&h, &claims(aud.clone()), &keys().ec).unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", es384(&expired)),
        ("iat in the future", es384(&future)),
        ("wrong aud", es384(&claims(json!("http://127.0.0.1:1/cds-services/leg-cramp-causes")))),
        ("aud of another service", es384(&claims(json!(server.url("/cds-services/leg-cramp-order-sign"))))),
        ("untrusted iss", es384(&untrusted)),
        ("unknown kid", sign(Algorithm::ES384, "nope", &claims(aud.clone()), &keys().ec)),
        ("alg none", none),
        ("HS256 with the public key as secret", hs256),
        ("tampered payload", tampered),
        ("RS384 header naming an EC key", ec_key_for_rsa_alg),
        ("no typ", no_typ),
        ("no jti", es384(&no_jti)),
        ("not a JWT", "abc.def".into()),
        ("garbage", "!!!".into()),
    ];
    for (case, token) in cases {
        assert_401(call(&server, Some(&token)).await, case).await;
    }
    assert_401(call(&server, None).await, "no Authorization header").await;
    let basic = server
        .client
        .post(server.url("/cds-services/leg-cramp-causes"))
        .header("Authorization", "Basic dXNlcjpwdw==")
        .json(&patient_view_request())
        .send()
        .await
        .unwrap();
    assert_401(basic, "Basic scheme").await;
    for reason in [
        "expired",
        "iat in the future",
        "aud is not the URL called",
        "issuer not trusted",
        "unknown kid",
        "algorithm not allowed",
        "bad signature",
        "typ is not JWT",
        "no jti",
    ] {
        assert!(server.wait_for_log(reason).await, "reason {reason:?} not logged:\n{}", server.log_text());
    }
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let server = secured(&[]);
    let token = es384(&claims(json!(server.url("/cds-services/leg-cramp-causes"))));
    assert_eq!(call(&server, Some(&token)).await.status().as_u16(), 200);
    assert_401(call(&server, Some(&token)).await, "replay").await;
    assert!(server.wait_for_log("jti replayed").await);
}

#[tokio::test]
async fn discovery_needs_a_token_unless_open_discovery() {
    let server = secured(&[]);
    let res = server.client.get(server.url("/cds-services")).send().await.unwrap();
    assert_401(res, "discovery without token").await;
    let token = es384(&claims(json!(server.url("/cds-services"))));
    let res = server.client.get(server.url("/cds-services")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let open = secured(&["--open-discovery"]);
    assert_eq!(open.client.get(open.url("/cds-services")).send().await.unwrap().status().as_u16(), 200);
    // Service calls still need one.
    assert_401(call(&open, None).await, "service call with open discovery").await;
    // Liveness stays open for orchestrators.
    assert_eq!(open.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn a_hundred_concurrent_valid_requests_all_succeed() {
    let server = secured(&[]);
    let aud = json!(server.url("/cds-services/leg-cramp-causes"));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let token = if i % 2 == 0 {
                es384(&claims(aud.clone()))
            } else {
                sign(Algorithm::RS384, "rsa-1", &claims(aud.clone()), &keys().rsa)
            };
            let (client, url) = (server.client.clone(), server.url("/cds-services/leg-cramp-causes"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&patient_view_request())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[test]
fn refuses_to_start_on_a_public_address_without_auth() {
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--cards", project_path("cards").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to start") && err.contains("--trusted-issuer"), "{err}");
}

#[tokio::test]
async fn loopback_without_auth_says_so_loudly() {
    let server = TestServer::start();
    assert!(server.wait_for_log("AUTHENTICATION IS OFF").await);
}

#[tokio::test]
async fn https_with_a_certificate_generated_here() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let server = TestServer::builder()
        .args(["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()])
        .https(root)
        .start();
    assert!(server.base.starts_with("https://"));
    let (status, body) = server.get("/cds-services").await;
    assert_eq!(status, 200);
    assert_eq!(body["services"].as_array().unwrap().len(), 3);
    let (status, _) = server.post_json("/cds-services/leg-cramp-causes", &patient_view_request()).await;
    assert_eq!(status, 200);
    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/cds-services", server.port)).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

fn without_prefetch(fhir: &str) -> Value {
    json!({"hook": "patient-view", "hookInstance": uuid(), "fhirServer": fhir,
        "context": {"userId": "Practitioner/1", "patientId": "p1"}})
}

#[tokio::test]
async fn ssrf_guard_only_calls_allowed_fhir_servers_and_no_foreign_redirects() {
    let fhir = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resourceType": "Bundle", "type": "searchset"})))
        .mount(&fhir)
        .await;
    let aud = |s: &TestServer| json!(s.url("/cds-services/leg-cramp-causes"));

    // With auth on, loopback is not allowed by default: refused before any call.
    let server = secured(&[]);
    let res = server
        .client
        .post(server.url("/cds-services/leg-cramp-causes"))
        .bearer_auth(es384(&claims(aud(&server))))
        .json(&without_prefetch(&format!("{}/fhir", fhir.uri())))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 412);
    let (_, body) = read(res).await;
    assert_outcome(&body, "not an allowed FHIR server");
    assert!(fhir.received_requests().await.unwrap().is_empty());

    // Allowed by prefix: fetched.
    let allowed = format!("{}/fhir", fhir.uri());
    let server = secured(&["--fhir-allow", &allowed]);
    let res = server
        .client
        .post(server.url("/cds-services/leg-cramp-causes"))
        .bearer_auth(es384(&claims(aud(&server))))
        .json(&without_prefetch(&allowed))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{:?}", read(res).await.1);
    assert!(!fhir.received_requests().await.unwrap().is_empty());

    // A redirect to another host is not followed.
    let redirecting = MockServer::start().await;
    let other = format!("http://localhost:{}/elsewhere", fhir.address().port());
    Mock::given(method("GET"))
        .and(path("/fhir/Patient/p1"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", other.as_str()))
        .mount(&redirecting)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resourceType": "Bundle", "type": "searchset"})))
        .mount(&redirecting)
        .await;
    let before = fhir.received_requests().await.unwrap().len();
    let base = format!("{}/fhir", redirecting.uri());
    let server = secured(&["--fhir-allow", &base]);
    let res = server
        .client
        .post(server.url("/cds-services/leg-cramp-causes"))
        .bearer_auth(es384(&claims(aud(&server))))
        .json(&without_prefetch(&base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 412);
    let (_, body) = read(res).await;
    assert_outcome(&body, "302");
    assert_eq!(fhir.received_requests().await.unwrap().len(), before, "redirect target was called");
}

#[tokio::test]
async fn feedback_needs_a_token_whose_aud_is_the_feedback_url() {
    let server = secured(&[]);
    let feedback_url = server.url("/cds-services/leg-cramp-causes/feedback");
    let body = json!({"feedback": [{"card": uuid(), "outcome": "overridden", "outcomeTimestamp": "2026-11-28T11:00:06.472Z"}]});
    let post = |token: String| server.client.post(&feedback_url).bearer_auth(token).json(&body).send();
    let ok = post(es384(&claims(json!(feedback_url.clone())))).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let service_aud = post(es384(&claims(json!(server.url("/cds-services/leg-cramp-causes"))))).await.unwrap();
    assert_401(service_aud, "feedback with the service URL as aud").await;
    let analytics_url = server.url("/analytics/rules");
    let res = server.client.get(&analytics_url).send().await.unwrap();
    assert_401(res, "analytics without a token").await;
    let res = server
        .client
        .get(&analytics_url)
        .bearer_auth(es384(&claims(json!(analytics_url.clone()))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

/// An HTTPS server on loopback serving one JWK Set, counting fetches (self-signed, trusted
/// by the service through --ca-cert).
struct JwksServer {
    base: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ca: tempfile::NamedTempFile,
    handle: actix_web::dev::ServerHandle,
}

fn jwks_server() -> JwksServer {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    leg_cramp_cds::install_crypto_provider();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), cert.cert.pem()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let jwks = std::fs::read_to_string(keys().jwks_file.path()).unwrap();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let counter = hits.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let (jwks, counter) = (jwks.clone(), counter.clone());
                let serve = move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = jwks.clone();
                    async move { HttpResponse::Ok().content_type("application/json").body(body) }
                };
                App::new()
                    .route("/jwks.json", web::get().to(serve.clone()))
                    .route("/other-jwks.json", web::get().to(serve))
            })
            .workers(1)
            .listen_rustls_0_23(listener, config)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            let _ = server.await;
        });
    });
    let handle = rx.recv().unwrap();
    JwksServer { base: format!("https://localhost:{port}"), hits, ca, handle }
}

#[tokio::test]
async fn https_jwks_is_fetched_cached_rate_limited_and_jku_only_when_allowed() {
    use std::sync::atomic::Ordering;
    let jwks = jwks_server();
    let url = format!("{}/jwks.json", jwks.base);
    let jku = format!("{}/other-jwks.json", jwks.base);
    let empty = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(empty.path(), r#"{"keys": []}"#).unwrap();
    let iss2 = "https://second-ehr.example.org";
    let server = TestServer::builder()
        .args(["--ca-cert", jwks.ca.path().to_str().unwrap()])
        .args(["--trusted-issuer", &format!("{ISS}={url}")])
        .args([
            "--trusted-issuer",
            &format!("{iss2}={}", empty.path().display()),
            "--allowed-jku",
            &format!("{iss2}={jku}"),
        ])
        .start();
    let aud = json!(server.url("/cds-services/leg-cramp-causes"));
    // Issuer 1: keys come from its https JWKS, fetched once and cached.
    assert_eq!(call(&server, Some(&es384(&claims(aud.clone())))).await.status().as_u16(), 200);
    assert_eq!(call(&server, Some(&es384(&claims(aud.clone())))).await.status().as_u16(), 200);
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 1, "cached");
    // An unknown kid right after: refused, and no refetch within the rate limit.
    assert_401(
        call(&server, Some(&sign(Algorithm::ES384, "rotated-key", &claims(aud.clone()), &keys().ec))).await,
        "unknown kid",
    )
    .await;
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 1, "rate-limited");
    // Issuer 2: its own JWKS file is empty; the allow-listed jku supplies the key.
    let with_jku = |jku: &str| {
        let mut h = Header::new(Algorithm::ES384);
        h.kid = Some("ec-1".into());
        h.typ = Some("JWT".into());
        h.jku = Some(jku.to_string());
        let mut c = claims(aud.clone());
        c["iss"] = json!(iss2);
        jsonwebtoken::encode(&h, &c, &keys().ec).unwrap()
    };
    assert_401(call(&server, Some(&with_jku("https://attacker.example/jwks.json"))).await, "jku not allow-listed")
        .await;
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 1, "a foreign jku is never fetched");
    assert_eq!(call(&server, Some(&with_jku(&jku))).await.status().as_u16(), 200);
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 2, "the allow-listed jku was fetched");
    jwks.handle.stop(false).await;
}
