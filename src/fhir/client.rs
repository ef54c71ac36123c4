//! The FHIR client used when prefetch is missing: GET `{fhirServer}/{query}` with the
//! client's bearer token, all keys in parallel, paging followed up to caps, one overall
//! deadline. Only servers allowed by `--fhir-allow` are called, and every URL (first, redirect,
//! next page) must lie within the request's `fhirServer` ([`super::allow`]): redirects are
//! followed here, not by the HTTP client, so each target is checked before the token goes
//! with it. The token is never logged.

use super::allow::{origin, FhirAllowList};
use serde_json::Value;
use std::time::Duration;

/// Redirects followed for one page.
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct FhirClientConfig {
    pub timeout: Duration,
    pub max_pages: usize,
    pub max_resources: usize,
    /// URL prefixes the service may call.
    pub allow: Vec<String>,
    /// Also allow any loopback URL (127.0.0.0/8, ::1, localhost): the default without auth.
    pub allow_loopback: bool,
    /// Extra CA certificates trusted for HTTPS FHIR servers.
    pub extra_roots: Vec<reqwest::Certificate>,
}

#[derive(Clone)]
pub struct FhirClient {
    http: reqwest::Client,
    allow: FhirAllowList,
    pub config: FhirClientConfig,
}

/// The outcome of fetching one prefetch key.
pub type FetchResult = Result<Vec<Value>, String>;

impl FhirClient {
    /// Fails on an unusable `--fhir-allow` value.
    pub fn new(config: FhirClientConfig) -> Result<Self, String> {
        crate::install_crypto_provider();
        let allow = FhirAllowList::new(&config.allow, config.allow_loopback)?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_certs_merge(config.extra_roots.iter().cloned())
            // Redirects are followed by `fetch_page`, each target checked first.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Self { http, allow, config })
    }

    /// Fetches every (key, url) in parallel within the deadline. Each result is the list of
    /// resources (Bundle entries flattened; a single resource as one item).
    /// `server` is the request's `fhirServer`: every URL called must lie within it.
    pub async fn fetch_all(
        &self,
        server: &str,
        requests: Vec<(String, String)>,
        token: Option<&str>,
    ) -> Vec<(String, FetchResult)> {
        let keys: Vec<String> = requests.iter().map(|(k, _)| k.clone()).collect();
        let futures = requests.into_iter().map(|(key, url)| async move {
            let result = self.fetch_paged(server, &url, token).await;
            (key, result)
        });
        match tokio::time::timeout(self.config.timeout, futures_util::future::join_all(futures)).await {
            Ok(results) => results,
            Err(_) => keys
                .into_iter()
                .map(|k| (k, Err(format!("FHIR server did not answer within {} ms", self.config.timeout.as_millis()))))
                .collect(),
        }
    }

    async fn fetch_paged(&self, server: &str, url: &str, token: Option<&str>) -> FetchResult {
        let mut resources = Vec::new();
        let mut next = Some(url.to_string());
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let body = self.fetch_page(server, &url, token).await?;
            match body.get("resourceType").and_then(Value::as_str) {
                Some("Bundle") => {
                    next = body
                        .get("link")
                        .and_then(Value::as_array)
                        .and_then(|links| {
                            links.iter().find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
                        })
                        .and_then(|l| l.get("url").and_then(Value::as_str))
                        .map(str::to_string);
                    if let Some(entries) = body.get("entry").and_then(Value::as_array) {
                        resources.extend(entries.iter().filter_map(|e| e.get("resource").cloned()));
                    }
                }
                Some("OperationOutcome") => return Err("FHIR server returned an OperationOutcome".into()),
                Some(_) => resources.push(body),
                None => return Err("FHIR server response has no resourceType".into()),
            }
            if resources.len() >= self.config.max_resources {
                resources.truncate(self.config.max_resources);
                tracing::warn!(cap = self.config.max_resources, "FHIR paging stopped at the resource cap");
                break;
            }
            if pages >= self.config.max_pages && next.is_some() {
                tracing::warn!(cap = self.config.max_pages, "FHIR paging stopped at the page cap");
                break;
            }
        }
        Ok(resources)
    }

    /// One page: GET with the token, following redirects that stay within the request's
    /// `fhirServer`; any other redirect is refused and its target never called.
    async fn fetch_page(&self, server: &str, url: &str, token: Option<&str>) -> Result<Value, String> {
        let mut target = self.allow.check(server, url)?;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.http.get(target.clone()).header("Accept", "application/fhir+json");
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.map_err(|e| describe_error(&e, self.config.timeout))?;
            let status = response.status();
            // The path only in messages: a query string may carry the patient id.
            if status.is_redirection() {
                let location = response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok());
                match location.and_then(|l| target.join(l).ok()).map(|next| self.allow.check(server, next.as_str())) {
                    Some(Ok(next)) => target = next,
                    _ => {
                        return Err(format!(
                            "FHIR server answered {status} for {}, redirecting outside the request's fhirServer; not followed",
                            target.path()
                        ))
                    }
                }
                continue;
            }
            if !status.is_success() {
                return Err(format!("FHIR server answered {status} for {}", target.path()));
            }
            return response.json().await.map_err(|e| {
                if e.is_timeout() {
                    describe_error(&e, self.config.timeout)
                } else {
                    "FHIR server sent a body that is not FHIR JSON".to_string()
                }
            });
        }
        Err(format!("FHIR server redirected more than {MAX_REDIRECTS} times from {}; not followed", origin(url)))
    }
}

fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("FHIR server did not answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "FHIR server unreachable (connection failed)".into()
    } else {
        // reqwest's Display includes the URL, which may hold a patient id: keep the kind only.
        "FHIR request failed".into()
    }
}
