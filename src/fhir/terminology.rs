//! Optional terminology lookup (`--terminology-url`): RxNorm product codes (SCD, SBD, GPCK…)
//! that no code, brand or ingredient word recognised are resolved to their ingredients, so
//! that "RxNorm 617310" with no display is read as atorvastatin.
//!
//! Two protocols (`--terminology-protocol`):
//! - `rxnav`: an RxNav-compatible REST API, `GET {url}/rxcui/{code}/related.json?tty=IN+MIN`,
//!   reading `relatedGroup.conceptGroup[].conceptProperties[].name` (IN names; MIN names,
//!   split, when there is no IN);
//! - `fhir`: a FHIR terminology server, `GET {url}/CodeSystem/$lookup?system=<RxNorm>&code=…`,
//!   reading the Parameters' ingredient properties, else its `display`.
//!
//! Only the configured base is ever called, with a path built from digits only, and
//! redirects are not followed. Answers are cached (bounded, with a TTL per kind of answer).
//! The lookups of one request run concurrently under the request's remaining FHIR deadline:
//! a code not answered by then reads as "did not answer in time", and the hook goes on.

mod resolved;

use futures_util::StreamExt;
pub use resolved::{is_rxcui, LookupFailure, ResolvedCodes, RXNORM};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most cached codes; past it, expired answers go first, then those expiring soonest.
const CACHE_CAPACITY: usize = 10_000;
/// A code resolved to ingredients: RxNorm changes monthly.
const FOUND_TTL: Duration = Duration::from_secs(24 * 3600);
/// The service answered but knows no ingredient.
const NOT_FOUND_TTL: Duration = Duration::from_secs(10 * 60);
/// The service failed (refused, HTTP error, garbage): not asked again for a little while.
const FAILED_TTL: Duration = Duration::from_secs(30);
/// Most distinct codes looked up for one request, and at once.
const MAX_CODES_PER_REQUEST: usize = 50;
const CONCURRENCY: usize = 8;
/// Largest answer read: an RxNav or $lookup answer is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TerminologyProtocol {
    Rxnav,
    Fhir,
}

#[derive(Debug, thiserror::Error)]
pub enum TerminologyError {
    #[error("--terminology-url must be an http(s) URL without query, fragment or credentials")]
    BadUrl,
    #[error("cannot build the terminology HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

pub struct TerminologyConfig {
    pub url: String,
    pub protocol: TerminologyProtocol,
    /// Longest a single lookup may take (the request's deadline usually cuts it shorter).
    pub timeout: Duration,
    pub extra_roots: Vec<reqwest::Certificate>,
}

pub struct TerminologyClient {
    http: reqwest::Client,
    base: String,
    protocol: TerminologyProtocol,
    cache: Mutex<HashMap<String, (Answer, Instant)>>,
}

type Answer = Result<Vec<String>, LookupFailure>;

impl TerminologyClient {
    pub fn new(config: TerminologyConfig) -> Result<Self, TerminologyError> {
        let url = reqwest::Url::parse(&config.url).map_err(|_| TerminologyError::BadUrl)?;
        let plain = url.query().is_none() && url.fragment().is_none() && url.username().is_empty();
        if !matches!(url.scheme(), "http" | "https") || !plain || url.password().is_some() {
            return Err(TerminologyError::BadUrl);
        }
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_certs_merge(config.extra_roots)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let base = url.as_str().trim_end_matches('/').to_string();
        Ok(Self { http, base, protocol: config.protocol, cache: Mutex::new(HashMap::new()) })
    }

    /// Resolves `codes` (cache first, then concurrently) until `deadline`.
    pub async fn resolve(&self, codes: Vec<String>, deadline: Instant) -> ResolvedCodes {
        let mut out = ResolvedCodes::with_unanswered(LookupFailure::TooMany);
        let mut pending = Vec::new();
        for code in codes {
            if !is_rxcui(&code) {
                out.insert(&code, Err(LookupFailure::InvalidCode));
            } else if let Some(answer) = self.cached(&code) {
                out.insert(&code, answer);
            } else if pending.len() < MAX_CODES_PER_REQUEST {
                pending.push(code);
            }
        }
        if pending.is_empty() {
            return out;
        }
        let started = Instant::now();
        // Owned codes in the lookups: a closure over borrowed ones makes this future's `Send`
        // unprovable (rust-lang/rust#102211), and the service runs it on the evaluation pool.
        let mut lookups = futures_util::stream::iter(pending.clone())
            .map(|code| async move {
                let answer = self.lookup(&code).await;
                (code, answer)
            })
            .buffer_unordered(CONCURRENCY);
        let deadline = tokio::time::Instant::from_std(deadline);
        let mut answered: HashSet<String> = HashSet::with_capacity(pending.len());
        while let Ok(Some((code, answer))) = tokio::time::timeout_at(deadline, lookups.next()).await {
            self.remember(&code, &answer);
            out.insert(&code, answer);
            answered.insert(code);
        }
        drop(lookups);
        for code in pending.iter().filter(|c| !answered.contains(*c)) {
            out.insert(code, Err(LookupFailure::Timeout));
        }
        // Counts only: which drugs a patient takes is not for the log.
        tracing::info!(
            codes = pending.len(),
            answered = answered.len(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "terminology lookup"
        );
        out
    }

    async fn lookup(&self, code: &str) -> Answer {
        let request = match self.protocol {
            TerminologyProtocol::Rxnav => self
                .http
                .get(format!("{}/rxcui/{code}/related.json?tty=IN+MIN", self.base))
                .header("Accept", "application/json"),
            TerminologyProtocol::Fhir => {
                let mut url = reqwest::Url::parse(&format!("{}/CodeSystem/$lookup", self.base))
                    .map_err(|_| LookupFailure::Unreadable)?;
                url.query_pairs_mut().append_pair("system", RXNORM).append_pair("code", code);
                self.http.get(url).header("Accept", "application/fhir+json")
            }
        };
        let mut response = request.send().await.map_err(|e| failure_of(&e))?;
        let status = response.status();
        if self.protocol == TerminologyProtocol::Fhir && status == reqwest::StatusCode::NOT_FOUND {
            return Err(LookupFailure::NoIngredients);
        }
        if !status.is_success() {
            return Err(LookupFailure::Status(status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failure_of(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(LookupFailure::Unreadable);
            }
            body.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&body).map_err(|_| LookupFailure::Unreadable)?;
        let names = match self.protocol {
            TerminologyProtocol::Rxnav => rxnav_names(&value),
            TerminologyProtocol::Fhir => lookup_names(&value),
        }
        .ok_or(LookupFailure::Unreadable)?;
        if names.is_empty() {
            Err(LookupFailure::NoIngredients)
        } else {
            Ok(names)
        }
    }

    fn cached(&self, code: &str) -> Option<Answer> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(code).filter(|(_, expires)| *expires > Instant::now()).map(|(answer, _)| answer.clone())
    }

    fn remember(&self, code: &str, answer: &Answer) {
        let ttl = match answer {
            Ok(_) => FOUND_TTL,
            Err(LookupFailure::NoIngredients) => NOT_FOUND_TTL,
            Err(LookupFailure::Unreachable | LookupFailure::Status(_) | LookupFailure::Unreadable) => FAILED_TTL,
            // A timeout may be our own short budget, not the service's fault: ask again.
            Err(_) => return,
        };
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY && !cache.contains_key(code) {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= CACHE_CAPACITY {
                let soonest = cache.iter().min_by_key(|(_, (_, e))| *e).map(|(k, _)| k.clone());
                soonest.map(|k| cache.remove(&k));
            }
        }
        cache.insert(code.to_string(), (answer.clone(), now + ttl));
    }
}

fn failure_of(e: &reqwest::Error) -> LookupFailure {
    if e.is_timeout() {
        LookupFailure::Timeout
    } else if e.is_connect() || e.is_request() {
        LookupFailure::Unreachable
    } else {
        LookupFailure::Unreadable
    }
}

/// IN names of an RxNav `related.json?tty=IN+MIN` answer (MIN names split on " / " when it
/// lists no IN); `None` when the answer is not an RxNav related group.
fn rxnav_names(value: &Value) -> Option<Vec<String>> {
    let groups =
        value.get("relatedGroup")?.get("conceptGroup").map_or(&[][..], |g| g.as_array().map_or(&[][..], |a| a));
    let names_of = |tty: &str| -> Vec<String> {
        groups
            .iter()
            .filter(|g| g.get("tty").and_then(Value::as_str) == Some(tty))
            .filter_map(|g| g.get("conceptProperties").and_then(Value::as_array))
            .flatten()
            .filter_map(|p| p.get("name").and_then(Value::as_str))
            .flat_map(|n| n.split(" / "))
            .map(|n| n.trim().to_lowercase())
            .filter(|n| !n.is_empty())
            .collect()
    };
    let ingredients = names_of("IN");
    Some(unique(if ingredients.is_empty() { names_of("MIN") } else { ingredients }))
}

/// Ingredient names of a FHIR `$lookup` Parameters answer: `property` parts whose code
/// names an ingredient, else the concept's `display`; `None` when not Parameters.
fn lookup_names(value: &Value) -> Option<Vec<String>> {
    if value.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return None;
    }
    let parameters = value.get("parameter").and_then(Value::as_array).map_or(&[][..], |a| a);
    let string = |v: &Value| v.as_str().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    let mut ingredients = Vec::new();
    for p in parameters.iter().filter(|p| p.get("name").and_then(Value::as_str) == Some("property")) {
        let parts = p.get("part").and_then(Value::as_array).map_or(&[][..], |a| a);
        let part = |name: &str| parts.iter().find(|x| x.get("name").and_then(Value::as_str) == Some(name));
        let code = part("code").and_then(|c| c.get("valueCode")).and_then(Value::as_str).unwrap_or("");
        if !(code.to_lowercase().contains("ingredient") || code == "IN" || code == "MIN") {
            continue;
        }
        if let Some(v) = part("value") {
            let text = v.get("valueString").or_else(|| v.get("valueCoding").and_then(|c| c.get("display")));
            ingredients.extend(text.and_then(string));
        }
    }
    if ingredients.is_empty() {
        let display = parameters.iter().find(|p| p.get("name").and_then(Value::as_str) == Some("display"));
        ingredients.extend(display.and_then(|d| d.get("valueString")).and_then(string));
    }
    Some(unique(ingredients))
}

fn unique(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rxnav_answers_give_ingredient_names() {
        let advair = json!({"relatedGroup": {"rxcui": "896188", "conceptGroup": [
            {"tty": "IN", "conceptProperties": [{"rxcui": "41126", "name": "fluticasone"}, {"rxcui": "36117", "name": "Salmeterol"}]},
            {"tty": "MIN", "conceptProperties": [{"rxcui": "284635", "name": "fluticasone / salmeterol"}]}]}});
        assert_eq!(rxnav_names(&advair), Some(vec!["fluticasone".to_string(), "salmeterol".into()]));
        let min_only =
            json!({"relatedGroup": {"conceptGroup": [{"tty": "MIN", "conceptProperties": [{"name": "a / b"}]}]}});
        assert_eq!(rxnav_names(&min_only), Some(vec!["a".to_string(), "b".into()]));
        assert_eq!(rxnav_names(&json!({"relatedGroup": {"rxcui": "1"}})), Some(vec![]));
        assert_eq!(rxnav_names(&json!({"hello": "world"})), None);
    }

    #[test]
    fn fhir_lookup_answers_give_ingredients_or_the_display() {
        let with_property = json!({"resourceType": "Parameters", "parameter": [
            {"name": "display", "valueString": "atorvastatin 20 MG Oral Tablet"},
            {"name": "property", "part": [{"name": "code", "valueCode": "has_ingredient"},
                                          {"name": "value", "valueCoding": {"code": "83367", "display": "Atorvastatin"}}]}]});
        assert_eq!(lookup_names(&with_property), Some(vec!["atorvastatin".to_string()]));
        let display_only = json!({"resourceType": "Parameters", "parameter": [{"name": "display", "valueString": "Lipitor 20 MG Oral Tablet"}]});
        assert_eq!(lookup_names(&display_only), Some(vec!["lipitor 20 mg oral tablet".to_string()]));
        assert_eq!(lookup_names(&json!({"resourceType": "OperationOutcome"})), None);
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        let config = |url: &str| TerminologyConfig {
            url: url.into(),
            protocol: TerminologyProtocol::Rxnav,
            timeout: Duration::from_secs(1),
            extra_roots: Vec::new(),
        };
        assert!(TerminologyClient::new(config("https://rxnav.nlm.nih.gov/REST/")).is_ok());
        for bad in ["ftp://x/", "http://u:p@x/", "http://x/?a=1", "not a url"] {
            assert!(matches!(TerminologyClient::new(config(bad)), Err(TerminologyError::BadUrl)), "{bad}");
        }
    }

    #[tokio::test]
    async fn invalid_codes_are_never_sent_and_the_cache_is_bounded() {
        let client = TerminologyClient::new(TerminologyConfig {
            url: "http://127.0.0.1:9".into(),
            protocol: TerminologyProtocol::Rxnav,
            timeout: Duration::from_secs(1),
            extra_roots: Vec::new(),
        })
        .unwrap();
        let out = client.resolve(vec!["../admin".into()], Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(out.failure("../admin"), LookupFailure::InvalidCode);
        for i in 0..CACHE_CAPACITY + 5 {
            client.remember(&i.to_string(), &Ok(vec!["x".into()]));
        }
        assert_eq!(client.cache.lock().unwrap().len(), CACHE_CAPACITY);
        let last = (CACHE_CAPACITY + 4).to_string();
        assert_eq!(client.cached(&last), Some(Ok(vec!["x".to_string()])));
        assert_eq!(client.cached("0"), None, "the oldest answer made room");
    }
}
