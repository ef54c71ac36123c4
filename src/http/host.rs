//! Which `Host` a service without authentication answers (against DNS rebinding).
//!
//! Without authentication the service trusts whoever can reach it, which is meant to be
//! this machine. A web page can still reach it through a visitor's browser: its own name
//! (`evil.example`) is re-pointed to 127.0.0.1, so the browser treats the calls as
//! same-origin and CORS never applies. What still shows is the `Host` header, which names
//! the page's domain. So, with authentication off, only loopback names (localhost,
//! 127.0.0.0/8, [::1], any port) and the `--public-url` host are answered.
//!
//! Statuses: a well-formed `Host` naming another authority is 421 Misdirected Request
//! (RFC 9110 §15.5.20: the server is not authoritative for that name; a client may retry on
//! another connection). A missing, repeated or malformed `Host` is 400, as RFC 9112 §3.2
//! requires for HTTP/1.1.

use super::error::ApiError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, uri::Authority};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone)]
pub enum HostPolicy {
    /// Authentication is on: every caller proves who it is, whatever name it used.
    AnyHost,
    /// Authentication is off: loopback names, or the host of the public URL.
    LoopbackOr { public_host: Option<String> },
}

impl HostPolicy {
    pub fn new(authenticated: bool, public_url: &str) -> Self {
        if authenticated {
            return HostPolicy::AnyHost;
        }
        let public_host = url::Url::parse(public_url).ok().and_then(|u| u.host_str().map(normalise));
        HostPolicy::LoopbackOr { public_host }
    }

    /// `Ok` when the request may be answered.
    fn admit(&self, req: &actix_web::HttpRequest) -> Result<(), ApiError> {
        let HostPolicy::LoopbackOr { public_host } = self else { return Ok(()) };
        let host = requested_host(req)?;
        if is_loopback_name(&host) || public_host.as_deref() == Some(host.as_str()) {
            Ok(())
        } else {
            Err(ApiError::MisdirectedRequest)
        }
    }
}

/// The host part (lowercase, without port) of the authority the request names: the
/// request target's own (HTTP/2 `:authority`, HTTP/1.1 absolute form) or the one `Host`.
fn requested_host(req: &actix_web::HttpRequest) -> Result<String, ApiError> {
    if let Some(authority) = req.uri().authority() {
        return Ok(normalise(authority.host()));
    }
    let mut values = req.headers().get_all(header::HOST);
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::InvalidHost("exactly one Host header is required"));
    };
    let text = value.to_str().map_err(|_| ApiError::InvalidHost("the Host header is not ASCII"))?;
    let well_formed = |a: &Authority| {
        let has_port = a.as_str().len() > a.host().len();
        !text.contains('@') && !a.host().is_empty() && (!has_port || a.port_u16().is_some())
    };
    match text.parse::<Authority>() {
        Ok(authority) if well_formed(&authority) => Ok(normalise(authority.host())),
        _ => Err(ApiError::InvalidHost("the Host header is not a host[:port]")),
    }
}

/// Lowercase, without the root label's dot (`localhost.` is `localhost`).
fn normalise(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn is_loopback_name(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a request whose `Host` the [`HostPolicy`] does not admit, before routing and CORS.
pub async fn check_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let verdict = match req.app_data::<web::Data<HostPolicy>>() {
        Some(policy) => policy.admit(req.request()),
        None => Ok(()),
    };
    match verdict {
        Ok(()) => next.call(req).await.map(ServiceResponse::map_into_boxed_body),
        Err(refusal) => Ok(req.into_response(refusal.error_response())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn admitted(policy: &HostPolicy, host: Option<&str>) -> Result<(), u16> {
        let mut req = TestRequest::get().uri("/healthz");
        if let Some(h) = host {
            req = req.insert_header((header::HOST, h));
        }
        policy.admit(&req.to_http_request()).map_err(|e| e.status_code().as_u16())
    }

    #[test]
    fn loopback_names_and_the_public_host_are_admitted_when_authentication_is_off() {
        let policy = HostPolicy::new(false, "https://cds.example.org:8443");
        for host in ["localhost", "LOCALHOST:8080", "localhost.", "127.0.0.1:1", "127.8.9.10", "[::1]:8080", "[::1]"] {
            assert_eq!(admitted(&policy, Some(host)), Ok(()), "{host}");
        }
        assert_eq!(admitted(&policy, Some("cds.example.org")), Ok(()));
        assert_eq!(admitted(&policy, Some("CDS.example.org:443")), Ok(()));
        for host in ["evil.example", "localhost.evil.example", "127.0.0.1.evil.example", "[::2]", "10.0.0.1"] {
            assert_eq!(admitted(&policy, Some(host)), Err(421), "{host}");
        }
        for host in [None, Some(""), Some("a b"), Some("user@localhost"), Some("localhost:port")] {
            assert_eq!(admitted(&policy, host), Err(400), "{host:?}");
        }
    }

    #[test]
    fn any_host_is_admitted_when_authentication_is_on() {
        let policy = HostPolicy::new(true, "http://127.0.0.1:8080");
        assert_eq!(admitted(&policy, Some("evil.example")), Ok(()));
    }
}
