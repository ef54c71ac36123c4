//! The FHIR client used when prefetch is missing: GET `{fhirServer}/{query}` with the
//! client's bearer token, all keys in parallel, paging followed up to caps, one overall
//! deadline. Only servers allowed by the access policy are called; redirects never leave the
//! host. The token is never logged.

use serde_json::Value;
use std::time::Duration;

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
    pub config: FhirClientConfig,
}

/// The outcome of fetching one prefetch key.
pub type FetchResult = Result<Vec<Value>, String>;

impl FhirClient {
    pub fn new(config: FhirClientConfig) -> Result<Self, String> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_certs_merge(config.extra_roots.iter().cloned())
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                // Follow a redirect only within the same scheme, host and port.
                let same = attempt.previous().last().is_some_and(|prev| {
                    prev.scheme() == attempt.url().scheme()
                        && prev.host_str() == attempt.url().host_str()
                        && prev.port_or_known_default() == attempt.url().port_or_known_default()
                });
                if same && attempt.previous().len() < 5 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Self { http, config })
    }

    /// Whether the policy allows calling this URL.
    pub fn allowed(&self, url: &str) -> bool {
        let Ok(parsed) = reqwest::Url::parse(url) else { return false };
        if !matches!(parsed.scheme(), "http" | "https") {
            return false;
        }
        if self.config.allow_loopback && is_loopback(&parsed) {
            return true;
        }
        self.config.allow.iter().any(|prefix| url_has_prefix(url, prefix))
    }

    /// Fetches every (key, url) in parallel within the deadline. Each result is the list of
    /// resources (Bundle entries flattened; a single resource as one item).
    pub async fn fetch_all(&self, requests: Vec<(String, String)>, token: Option<&str>) -> Vec<(String, FetchResult)> {
        let keys: Vec<String> = requests.iter().map(|(k, _)| k.clone()).collect();
        let futures = requests.into_iter().map(|(key, url)| async move {
            let result = self.fetch_paged(&url, token).await;
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

    async fn fetch_paged(&self, url: &str, token: Option<&str>) -> FetchResult {
        let mut resources = Vec::new();
        let mut next = Some(url.to_string());
        let mut pages = 0;
        while let Some(url) = next.take() {
            if !self.allowed(&url) {
                return Err(format!("{} is not an allowed FHIR server (--fhir-allow)", origin_of(&url)));
            }
            pages += 1;
            let mut request = self.http.get(&url).header("Accept", "application/fhir+json");
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.map_err(|e| describe_error(&e, self.config.timeout))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("FHIR server answered {status} for {}", path_of(&url)));
            }
            let body: Value = response.json().await.map_err(|e| {
                if e.is_timeout() {
                    describe_error(&e, self.config.timeout)
                } else {
                    "FHIR server sent a body that is not FHIR JSON".to_string()
                }
            })?;
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
}

/// Prefix match on a URL, requiring the prefix to end at a path boundary so that
/// `http://127.0.0.1:8080` does not allow `http://127.0.0.1:80801`.
pub fn url_has_prefix(url: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    url.starts_with(prefix) && matches!(url[prefix.len()..].chars().next(), None | Some('/') | Some('?'))
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn origin_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            )
        })
        .unwrap_or_else(|_| "(invalid URL)".into())
}

/// The path only: a query string may carry the patient id.
fn path_of(url: &str) -> String {
    reqwest::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default()
}

fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("FHIR server did not answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "FHIR server unreachable (connection failed)".into()
    } else if e.is_redirect() {
        "FHIR server redirected to another host; not followed".into()
    } else {
        // reqwest's Display includes the URL, which may hold a patient id: keep the kind only.
        "FHIR request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_stop_at_path_boundaries() {
        assert!(url_has_prefix("http://127.0.0.1:8080/fhir/Patient/1", "http://127.0.0.1:8080"));
        assert!(url_has_prefix("http://127.0.0.1:8080/fhir/Patient/1", "http://127.0.0.1:8080/fhir/"));
        assert!(!url_has_prefix("http://127.0.0.1:80801/fhir", "http://127.0.0.1:8080"));
        assert!(!url_has_prefix("http://127.0.0.1.evil.com/fhir", "http://127.0.0.1"));
    }
}
