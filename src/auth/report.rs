//! What is logged about refused tokens. The claims of a refused token are untrusted input: they
//! are logged shortened (at most [`LOGGED_CLAIM_CHARS`] characters, control characters
//! replaced), and refusals for one reason are logged at most [`LINES_PER_WINDOW`] times per
//! [`WINDOW`] (every one is counted in `cds_auth_rejections_total{reason}`), so a flood of bad
//! tokens cannot flood the log, while each kind of mistake is still seen. One set-up mistake gets a hint: a token whose `aud` names this
//! service by another loopback host name.

use super::Rejection;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest claim value (iss, kid, jti) written to the log.
pub const LOGGED_CLAIM_CHARS: usize = 64;
const WINDOW: Duration = Duration::from_secs(10);
/// Per reason; the reasons are a fixed set of about twenty.
const LINES_PER_WINDOW: u32 = 5;
/// The same hint is repeated at most this often.
const HINT_INTERVAL: Duration = Duration::from_secs(60);
/// Distinct hints remembered (each is a loopback alias and a port, so few in practice).
const HINTS_REMEMBERED: usize = 32;

/// A claim value as it may be logged: at most [`LOGGED_CLAIM_CHARS`] characters, the last
/// one `…` when cut, control characters as `?`.
pub fn for_log(value: &str) -> String {
    let printable = value.chars().map(|c| if c.is_control() { '?' } else { c });
    if value.chars().count() <= LOGGED_CLAIM_CHARS {
        printable.collect()
    } else {
        printable.take(LOGGED_CLAIM_CHARS - 1).chain(std::iter::once('…')).collect()
    }
}

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    /// Refusals not logged since the last line that was.
    unlogged: u64,
}

/// Logs refusals within the budget and counts every one.
#[derive(Default)]
pub struct RejectionLog {
    /// By reason.
    windows: Mutex<HashMap<&'static str, Window>>,
    hints: Mutex<HashMap<String, Instant>>,
}

impl RejectionLog {
    pub fn log(&self, r: &Rejection, path: &str) {
        metrics::counter!(crate::metrics::AUTH_REJECTIONS, "reason" => r.reason).increment(1);
        if let Some(hint) = &r.public_url_hint {
            if self.first_hint_in_a_while(hint) {
                tracing::warn!(
                    "JWT aud names this service by another loopback host name than its public URL; \
                     if that is how clients reach it, restart with --public-url {hint}"
                );
            }
        }
        let Some(unlogged_before) = self.admit(r.reason) else { return };
        let path = for_log(path);
        tracing::warn!(
            iss = r.iss.as_deref(),
            kid = r.kid.as_deref(),
            jti = r.jti.as_deref(),
            reason = r.reason,
            %path,
            unlogged_before,
            "JWT rejected"
        );
    }

    /// `Some(refusals for this reason not logged since its last line)` when this one may be
    /// logged.
    fn admit(&self, reason: &'static str) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.entry(reason).or_default();
        let now = Instant::now();
        if w.started.is_none_or(|t| now.duration_since(t) >= WINDOW) {
            w.started = Some(now);
            w.logged = 0;
        }
        if w.logged >= LINES_PER_WINDOW {
            w.unlogged += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.unlogged))
    }

    fn first_hint_in_a_while(&self, hint: &str) -> bool {
        let mut hints = self.hints.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if hints.get(hint).is_some_and(|t| now.duration_since(*t) < HINT_INTERVAL) {
            return false;
        }
        if hints.len() >= HINTS_REMEMBERED {
            hints.clear();
        }
        hints.insert(hint.to_string(), now);
        true
    }
}

/// When one of the token's `aud` values is the URL called but for the host, and both hosts
/// are loopback names (localhost, 127.0.0.1, [::1]), the `--public-url` that would have
/// matched: the public URL with the token's host. The Sandbox and a browser often say
/// `localhost` where the service was started on `127.0.0.1`, and the only symptom is
/// "no recommendations".
pub fn public_url_hint(aud: Option<&serde_json::Value>, public_url: &str, audience: &str) -> Option<String> {
    let expected = url::Url::parse(audience).ok().filter(is_loopback)?;
    let candidates: Vec<&str> = match aud? {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    };
    candidates.into_iter().find_map(|candidate| {
        let named = url::Url::parse(candidate).ok().filter(|u| is_loopback(u) && u.host() != expected.host())?;
        let mut rehosted = named.clone();
        rehosted.set_host(expected.host_str()).ok()?;
        if rehosted != expected {
            return None;
        }
        let mut hint = url::Url::parse(public_url).ok()?;
        hint.set_host(named.host_str()).ok()?;
        Some(hint.as_str().trim_end_matches('/').to_string())
    })
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_claims_are_cut_to_64_characters_and_control_characters_hidden() {
        assert_eq!(for_log("https://ehr.example"), "https://ehr.example");
        let cut = for_log(&"é".repeat(30_000));
        assert_eq!(cut.chars().count(), LOGGED_CLAIM_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(for_log("a\nb\u{1b}[31m"), "a?b?[31m");
    }

    #[test]
    fn a_host_alias_of_the_public_url_gets_a_hint_another_port_does_not() {
        let public = "http://127.0.0.1:8080";
        let called = "http://127.0.0.1:8080/cds-services/x";
        let hint = |aud| public_url_hint(Some(&aud), public, called);
        assert_eq!(hint(json!("http://localhost:8080/cds-services/x")).as_deref(), Some("http://localhost:8080"));
        assert_eq!(
            hint(json!(["https://a.example", "http://[::1]:8080/cds-services/x"])).as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(hint(json!("http://localhost:8081/cds-services/x")), None, "another port");
        assert_eq!(hint(json!("http://localhost:8080/cds-services/y")), None, "another service");
        assert_eq!(hint(json!("http://example.org:8080/cds-services/x")), None, "not a loopback alias");
        assert_eq!(hint(json!(called)), None, "the same URL");
        let with_path = public_url_hint(
            Some(&json!("http://localhost:8080/cds/cds-services/x")),
            "http://127.0.0.1:8080/cds",
            "http://127.0.0.1:8080/cds/cds-services/x",
        );
        assert_eq!(with_path.as_deref(), Some("http://localhost:8080/cds"));
    }

    #[test]
    fn refusals_beyond_the_budget_are_counted_not_logged() {
        let log = RejectionLog::default();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(log.admit("bad signature"), Some(0));
        }
        assert_eq!(log.admit("bad signature"), None);
        assert_eq!(log.admit("bad signature"), None);
        assert_eq!(log.admit("expired"), Some(0), "another reason has its own budget");
        log.windows.lock().unwrap().get_mut("bad signature").unwrap().started = Some(Instant::now() - WINDOW);
        assert_eq!(log.admit("bad signature"), Some(2), "the next line says how many were not logged");
    }
}
