//! Trusting CDS clients (CDS Hooks 2.0.1 "Trusting CDS Clients" and the best-practices JWT
//! checklist): every protected call carries `Authorization: Bearer <JWT>` signed by an
//! allow-listed issuer. Checks, in order: issuer allow-listed (compared normalised, see
//! [`normalise_issuer`]); `typ` JWT and `kid` present; asymmetric algorithm matching the key
//! type; `jku` only if allow-listed; signature against that issuer's key; `aud` is the URL
//! called; `exp`/`iat`/`nbf` with leeway; lifetime `exp − iat` within the bound; `tenant`
//! allow-listed when configured; `jti` not used before, here or on another replica
//! ([`replay`]). Failures are logged with iss, kid, jti (shortened) and the reason, within a
//! budget ([`report`]), never the token.

mod issuer;
mod replay;
mod report;

pub use issuer::{normalise_issuer, JwksSource, TrustedIssuer};
pub use replay::{ClaimFuture, LedgerUnavailable, ReplayLedger};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use replay::ReplayGuard;
use report::{for_log, RejectionLog};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clock skew tolerated on exp, nbf and iat.
pub const LEEWAY_SECS: u64 = 60;
/// An unknown kid triggers a JWKS refetch at most this often per source.
const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

const ALLOWED_ALGORITHMS: [Algorithm; 5] =
    [Algorithm::ES384, Algorithm::RS384, Algorithm::ES256, Algorithm::RS256, Algorithm::PS384];

/// Who called, once verified.
#[derive(Debug, Clone)]
pub struct VerifiedClient {
    pub iss: String,
    pub tenant: Option<String>,
}

/// Why a token was refused (logged, never sent to the client). The claims are the token's
/// own, unverified, so they are kept shortened for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub iss: Option<String>,
    pub kid: Option<String>,
    pub jti: Option<String>,
    /// The `--public-url` that would have matched, when `aud` named this service by another
    /// loopback host name.
    pub public_url_hint: Option<String>,
}

impl Rejection {
    fn because(&self, reason: &'static str) -> Rejection {
        Rejection { reason, ..self.clone() }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    /// Read only for the host-alias hint (jsonwebtoken checks it).
    #[serde(default)]
    aud: Option<serde_json::Value>,
}

struct CachedKeys {
    set: JwkSet,
    fetched: Option<Instant>,
}

pub struct Authenticator {
    /// Keyed by normalised issuer.
    issuers: HashMap<String, TrustedIssuer>,
    /// Keyed by source (file path or URL).
    keys: Mutex<HashMap<String, CachedKeys>>,
    replay: ReplayGuard,
    /// Longest accepted `exp − iat`, in seconds.
    max_lifetime: i64,
    rejections: RejectionLog,
    http: reqwest::Client,
}

impl Authenticator {
    /// Loads every file-based JWKS now (a bad file stops start-up); URL sources are fetched
    /// on first use and cached.
    /// `extra_roots`: CA certificates (PEM) trusted for https JWKS in addition to the
    /// system's (hospitals often run an internal CA). Tokens living longer than
    /// `max_lifetime` are refused.
    pub fn new(
        issuers: Vec<TrustedIssuer>,
        extra_roots: &[reqwest::Certificate],
        max_lifetime: Duration,
    ) -> Result<Self, String> {
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
            replay: ReplayGuard::default(),
            max_lifetime: i64::try_from(max_lifetime.as_secs()).unwrap_or(i64::MAX),
            rejections: RejectionLog::default(),
            http,
        })
    }

    /// Shares `jti` replay protection through `ledger` (the feedback store), in addition to
    /// this process's memory.
    pub fn with_replay_ledger(self, ledger: Arc<dyn ReplayLedger>) -> Self {
        Self { replay: self.replay.with_ledger(ledger), ..self }
    }

    /// Verifies `Authorization: Bearer <JWT>` for a call to `path` under `public_url`: the
    /// token's `aud` must be that URL (a trailing slash aside).
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        public_url: &str,
        path: &str,
    ) -> Result<VerifiedClient, Rejection> {
        let audience = format!("{public_url}{path}");
        let mut rejection = Rejection::default();
        // The scheme is case-insensitive (RFC 9110 §11.1): "Bearer", "bearer", "BEARER".
        let Some(token) =
            authorization.and_then(|h| h.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| &h[7..]))
        else {
            return Err(rejection.because("no bearer token"));
        };
        let token = token.trim();
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Err(rejection.because("malformed JWT header or unsupported alg"));
        };
        rejection.kid = header.kid.as_deref().map(for_log);
        let Some(unverified) = peek_claims(token) else { return Err(rejection.because("malformed JWT payload")) };
        rejection.iss = unverified.iss.as_deref().map(for_log);
        rejection.jti = unverified.jti.as_deref().map(for_log);
        let Some(issuer) = unverified.iss.as_deref().and_then(|iss| self.issuers.get(&normalise_issuer(iss))) else {
            return Err(rejection.because("issuer not trusted"));
        };
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("JWT")) {
            return Err(rejection.because("typ is not JWT"));
        }
        let Some(kid) = header.kid.as_deref() else { return Err(rejection.because("no kid")) };
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(rejection.because("algorithm not allowed (asymmetric ES/RS/PS only)"));
        }
        // The issuer's configured JWKS first; a `jku` is fetched only when allow-listed for
        // this issuer (an attacker-chosen jku is never dereferenced: SSRF, key injection).
        let mut jwk = self.find_key(&issuer.jwks, kid).await;
        if jwk.is_none() {
            if let Some(jku) = header.jku.as_deref().filter(|j| issuer.allowed_jku.iter().any(|a| a == j)) {
                jwk = self.find_key(&JwksSource::Url(jku.to_string()), kid).await;
            }
        }
        let Some(jwk) = jwk else { return Err(rejection.because("unknown kid")) };
        if !key_matches(&jwk, header.alg) {
            return Err(rejection.because("algorithm does not match the key type"));
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { return Err(rejection.because("unusable key in JWKS")) };
        // The token's own spelling of the issuer: it matched the trusted one once normalised.
        let iss = unverified.iss.as_deref().unwrap_or_default();
        let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation(header.alg, &audience, iss)) {
            Ok(data) => data.claims,
            Err(e) => {
                if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidAudience) {
                    rejection.public_url_hint = report::public_url_hint(unverified.aud.as_ref(), public_url, &audience);
                }
                return Err(rejection.because(decode_failure(e.kind())));
            }
        };
        self.check_claims(issuer, claims).await.map_err(|reason| rejection.because(reason))
    }

    /// The checks on verified claims that jsonwebtoken does not make, the jti claim last.
    async fn check_claims(&self, issuer: &TrustedIssuer, claims: Claims) -> Result<VerifiedClient, &'static str> {
        let now = chrono::Utc::now().timestamp();
        let leeway = LEEWAY_SECS as i64;
        let Some(iat) = claims.iat else { return Err("no iat") };
        if iat > now + leeway {
            return Err("iat in the future");
        }
        // Required by the validation, so present.
        let exp = claims.exp.unwrap_or(now);
        if exp.saturating_sub(iat) > self.max_lifetime {
            return Err("token lifetime (exp - iat) exceeds --max-token-lifetime");
        }
        if !issuer.tenants.is_empty() && !claims.tenant.as_ref().is_some_and(|t| issuer.tenants.contains(t)) {
            return Err("tenant not allow-listed");
        }
        let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) else { return Err("no jti") };
        // Kept until the token can no longer be accepted: exp plus the leeway.
        self.replay.claim(&issuer.iss, jti, exp + leeway, now).await?;
        Ok(VerifiedClient { iss: issuer.iss.clone(), tenant: claims.tenant })
    }

    /// Logs a refusal (shortened claims, within the log budget) and counts it.
    pub fn log_rejection(&self, rejection: &Rejection, path: &str) {
        self.rejections.log(rejection, path);
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

/// What jsonwebtoken checks: the signature, `aud` (the URL called, with or without a trailing
/// slash: the Sandbox signs the discovery URL as the user typed it), `iss` as the token spells
/// it, and exp/nbf with leeway.
fn validation(alg: Algorithm, audience: &str, iss: &str) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    let other_spelling = match audience.strip_suffix('/') {
        Some(bare) => bare.to_string(),
        None => format!("{audience}/"),
    };
    validation.set_audience(&[audience, other_spelling.as_str()]);
    validation.set_issuer(&[iss]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation
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

/// Why `jsonwebtoken` refused a token, in words for the log.
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
