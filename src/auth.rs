//! Trusting CDS clients (CDS Hooks 2.0.1 "Trusting CDS Clients" and the best-practices JWT
//! checklist): every protected call carries `Authorization: Bearer <JWT>` signed by an
//! allow-listed issuer. Checks, in order: issuer allow-listed; `typ` JWT and `kid` present;
//! asymmetric algorithm matching the key type; `jku` only if allow-listed; signature against
//! that issuer's key; `aud` is the exact URL called; `exp`/`iat`/`nbf` with leeway; `tenant`
//! allow-listed when configured; `jti` not seen before. Failures are logged with iss, kid,
//! jti and the reason, never the token.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clock skew tolerated on exp, nbf and iat.
pub const LEEWAY_SECS: u64 = 60;
/// jti entries are kept for the token lifetime, at most this long (best practices: ≤ 1 h).
const MAX_JTI_RETENTION_SECS: i64 = 3600;
const MAX_JTI_ENTRIES: usize = 200_000;
/// An unknown kid triggers a JWKS refetch at most this often per source.
const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

const ALLOWED_ALGORITHMS: [Algorithm; 5] =
    [Algorithm::ES384, Algorithm::RS384, Algorithm::ES256, Algorithm::RS256, Algorithm::PS384];

#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub iss: String,
    pub jwks: JwksSource,
    /// When non-empty, the `tenant` claim must be one of these.
    pub tenants: Vec<String>,
    /// JWK Set URLs that a token's `jku` may name for this issuer.
    pub allowed_jku: Vec<String>,
}

impl TrustedIssuer {
    /// Parses `ISS=JWKS` (a file path or an https URL).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (iss, jwks) = spec.split_once('=').ok_or_else(|| format!("'{spec}': expected ISS=JWKS"))?;
        if iss.is_empty() || jwks.is_empty() {
            return Err(format!("'{spec}': expected ISS=JWKS"));
        }
        let jwks = if jwks.starts_with("https://") {
            JwksSource::Url(jwks.to_string())
        } else if jwks.starts_with("http://") {
            return Err(format!("'{jwks}': a remote JWKS must be fetched over https"));
        } else {
            JwksSource::File(PathBuf::from(jwks))
        };
        Ok(Self { iss: iss.to_string(), jwks, tenants: Vec::new(), allowed_jku: Vec::new() })
    }
}

/// Who called, once verified.
#[derive(Debug, Clone)]
pub struct VerifiedClient {
    pub iss: String,
    pub tenant: Option<String>,
}

/// Why a token was refused (logged, never sent to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub iss: Option<String>,
    pub kid: Option<String>,
    pub jti: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
}

struct CachedKeys {
    set: JwkSet,
    fetched: Option<Instant>,
}

pub struct Authenticator {
    issuers: HashMap<String, TrustedIssuer>,
    /// Keyed by source (file path or URL).
    keys: Mutex<HashMap<String, CachedKeys>>,
    seen_jti: Mutex<HashMap<String, i64>>,
    http: reqwest::Client,
}

impl Authenticator {
    /// Loads every file-based JWKS now (a bad file stops start-up); URL sources are fetched
    /// on first use and cached.
    /// `extra_roots`: CA certificates (PEM) trusted for https JWKS in addition to the
    /// system's (hospitals often run an internal CA).
    pub fn new(issuers: Vec<TrustedIssuer>, extra_roots: &[reqwest::Certificate]) -> Result<Self, String> {
        crate::install_crypto_provider();
        let mut keys = HashMap::new();
        for i in &issuers {
            if let JwksSource::File(path) = &i.jwks {
                let text = std::fs::read_to_string(path).map_err(|e| format!("JWKS {}: {e}", path.display()))?;
                let set: JwkSet =
                    serde_json::from_str(&text).map_err(|e| format!("JWKS {}: not a JWK Set: {e}", path.display()))?;
                keys.insert(path.display().to_string(), CachedKeys { set, fetched: None });
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_merge(extra_roots.iter().cloned())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            issuers: issuers.into_iter().map(|i| (i.iss.clone(), i)).collect(),
            keys: Mutex::new(keys),
            seen_jti: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// Verifies `Authorization: Bearer <JWT>` for a call to `audience` (the exact URL called).
    pub async fn verify(&self, authorization: Option<&str>, audience: &str) -> Result<VerifiedClient, Rejection> {
        let mut rejection = Rejection { reason: String::new(), iss: None, kid: None, jti: None };
        let fail = |mut r: Rejection, reason: &str| {
            r.reason = reason.to_string();
            Err(r)
        };
        // The scheme is case-insensitive (RFC 9110 §11.1): "Bearer", "bearer", "BEARER".
        let Some(token) =
            authorization.and_then(|h| h.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| &h[7..]))
        else {
            return fail(rejection, "no bearer token");
        };
        let token = token.trim();
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return fail(rejection, "malformed JWT header or unsupported alg");
        };
        rejection.kid = header.kid.clone();
        let Some(unverified) = peek_claims(token) else { return fail(rejection, "malformed JWT payload") };
        rejection.iss = unverified.iss.clone();
        rejection.jti = unverified.jti.clone();
        let Some(issuer) = unverified.iss.as_deref().and_then(|iss| self.issuers.get(iss)) else {
            return fail(rejection, "issuer not trusted");
        };
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("JWT")) {
            return fail(rejection, "typ is not JWT");
        }
        let Some(kid) = header.kid.as_deref() else { return fail(rejection, "no kid") };
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return fail(rejection, "algorithm not allowed (asymmetric ES/RS/PS only)");
        }
        // The issuer's configured JWKS first; a `jku` is fetched only when allow-listed for
        // this issuer (an attacker-chosen jku is never dereferenced: SSRF, key injection).
        let mut jwk = self.find_key(&issuer.jwks, kid).await;
        if jwk.is_none() {
            if let Some(jku) = header.jku.as_deref().filter(|j| issuer.allowed_jku.iter().any(|a| a == j)) {
                jwk = self.find_key(&JwksSource::Url(jku.to_string()), kid).await;
            }
        }
        let Some(jwk) = jwk else { return fail(rejection, "unknown kid") };
        if !key_matches(&jwk, header.alg) {
            return fail(rejection, "algorithm does not match the key type");
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { return fail(rejection, "unusable key in JWKS") };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer.iss.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => data.claims,
            Err(e) => return fail(rejection, decode_failure(e.kind())),
        };
        let now = chrono::Utc::now().timestamp();
        let Some(iat) = claims.iat else { return fail(rejection, "no iat") };
        if iat > now + LEEWAY_SECS as i64 {
            return fail(rejection, "iat in the future");
        }
        if !issuer.tenants.is_empty() && !claims.tenant.as_ref().is_some_and(|t| issuer.tenants.contains(t)) {
            return fail(rejection, "tenant not allow-listed");
        }
        let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) else { return fail(rejection, "no jti") };
        let exp = claims.exp.unwrap_or(now);
        if !self.remember_jti(&issuer.iss, jti, exp, now) {
            return fail(rejection, "jti replayed");
        }
        Ok(VerifiedClient { iss: issuer.iss.clone(), tenant: claims.tenant })
    }

    /// Records a jti; false if it was already seen within its lifetime.
    fn remember_jti(&self, iss: &str, jti: &str, exp: i64, now: i64) -> bool {
        let mut seen = self.seen_jti.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("{iss}\u{0}{jti}");
        if seen.get(&key).is_some_and(|&until| until >= now) {
            return false;
        }
        if seen.len() >= MAX_JTI_ENTRIES {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= MAX_JTI_ENTRIES {
                // Full of live tokens: refuse rather than forget (fail closed).
                return false;
            }
        }
        let until = exp.min(now + MAX_JTI_RETENTION_SECS) + LEEWAY_SECS as i64;
        seen.insert(key, until);
        true
    }

    async fn find_key(&self, source: &JwksSource, kid: &str) -> Option<jsonwebtoken::jwk::Jwk> {
        let name = match source {
            JwksSource::File(p) => p.display().to_string(),
            JwksSource::Url(u) => u.clone(),
        };
        let (found, may_refresh) = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            match keys.get(&name) {
                Some(c) => (c.set.find(kid).cloned(), c.fetched.is_none_or(|t| t.elapsed() >= REFRESH_INTERVAL)),
                None => (None, true),
            }
        };
        if found.is_some() {
            return found;
        }
        let JwksSource::Url(url) = source else { return None };
        if !may_refresh {
            return None;
        }
        // Mark the attempt first so a burst of unknown kids causes one fetch.
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.clone())
            .and_modify(|c| c.fetched = Some(Instant::now()))
            .or_insert(CachedKeys { set: JwkSet { keys: Vec::new() }, fetched: Some(Instant::now()) });
        let set = match self.http.get(url).send().await {
            Ok(r) if r.status().is_success() => r.json::<JwkSet>().await.ok(),
            _ => None,
        };
        let Some(set) = set else {
            tracing::warn!(jwks = %url, "JWKS fetch failed");
            return None;
        };
        let found = set.find(kid).cloned();
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, CachedKeys { set, fetched: Some(Instant::now()) });
        found
    }
}

/// The claims, read without verification, only to choose the issuer's keys.
fn peek_claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the JWK is of the kind the header's algorithm needs (an ES384 token needs a P-384 key).
fn key_matches(jwk: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> bool {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::RS384 | Algorithm::PS384) => true,
        _ => false,
    }
}

/// Why `jsonwebtoken` refused a token, in words for the log and the 401.
fn decode_failure(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => "bad signature",
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not yet valid (nbf)",
        K::InvalidAudience => "aud is not the URL called",
        K::InvalidIssuer => "iss mismatch",
        K::MissingRequiredClaim(_) => "missing required claim",
        _ => "token rejected",
    }
}
