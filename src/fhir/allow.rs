//! Which FHIR URLs the service may call with the EHR's access token (`--fhir-allow`), compared
//! as the request will really be sent: parsed by the `url` crate, which resolves dot segments
//! (`/fhir/../admin`, `/fhir/%2e%2e/admin` are `/admin`), lower-cases the host and drops a
//! default port. A path segment that still hides a separator or a dot segment in
//! percent-encoding (`..%2f`, `%5c`, `%252e`) is refused outright: servers differ in whether
//! they decode it, so its meaning cannot be known here. A base allows a URL only on a
//! path-segment boundary (`/fhir` allows `/fhir/Patient/1`, not `/fhirx`).
//!
//! Every URL called for a request (the first, each redirect, each next page) must lie within
//! the request's `fhirServer`, and that server within an allowed base; so the token never
//! leaves the base the EHR named and the operator allowed.

use percent_encoding::percent_decode_str;
use url::Url;

/// Times a path segment is percent-decoded when looking for hidden separators: a server or
/// proxy in front of it may decode more than once.
const DECODE_ROUNDS: usize = 3;

/// The allowed bases, parsed once.
#[derive(Debug, Clone)]
pub struct FhirAllowList {
    bases: Vec<Url>,
    /// Any loopback server is allowed too (no authentication: a local tool).
    loopback: bool,
}

impl FhirAllowList {
    /// `allow`: `--fhir-allow` values; an unusable one is a configuration error.
    pub fn new(allow: &[String], loopback: bool) -> Result<Self, String> {
        let bases = allow
            .iter()
            .map(|a| parse(a).map_err(|why| format!("--fhir-allow '{a}': {why}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { bases, loopback })
    }

    /// The URL to call for a request whose `fhirServer` is `server`, or why not.
    pub fn check(&self, server: &str, url: &str) -> Result<Url, String> {
        let refused = |u: &str, why: String| format!("{}: {why}; not an allowed FHIR server (--fhir-allow)", origin(u));
        let base = parse(server).map_err(|why| refused(server, why))?;
        if !((self.loopback && is_loopback(&base)) || self.bases.iter().any(|allowed| within(&base, allowed))) {
            return Err(refused(server, format!("{} is not under an allowed base", shown_path(&base))));
        }
        let target = parse(url).map_err(|why| refused(url, why))?;
        if !within(&target, &base) {
            return Err(refused(url, format!("{} is outside the request's fhirServer", shown_path(&target))));
        }
        Ok(target)
    }
}

/// Parses an http(s) URL, refusing credentials in it and path segments whose meaning depends
/// on how the server decodes them.
fn parse(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|_| "not a URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("not an http(s) URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL with credentials".into());
    }
    if segments(&url).iter().any(|s| hides_a_separator(s)) {
        return Err("the path hides a separator or dot segment in percent-encoding".into());
    }
    Ok(url)
}

/// Whether decoding the segment (once or more) yields `/`, `\`, `.` or `..`.
fn hides_a_separator(segment: &str) -> bool {
    let mut current = segment.to_string();
    for _ in 0..DECODE_ROUNDS {
        let decoded = percent_decode_str(&current).decode_utf8_lossy().into_owned();
        if decoded.contains(['/', '\\']) || decoded == "." || decoded == ".." {
            return true;
        }
        if decoded == current {
            return false;
        }
        current = decoded;
    }
    current.contains('%')
}

/// Whether `url` is `base` or below it: same scheme, host and port, and the base's path
/// segments (decoded; a trailing slash aside) are the first of the URL's.
fn within(url: &Url, base: &Url) -> bool {
    if url.scheme() != base.scheme()
        || url.host() != base.host()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return false;
    }
    let (url_path, base_path) = (segments(url), segments(base));
    base_path.len() <= url_path.len()
        && base_path.iter().zip(&url_path).all(|(b, u)| percent_decode_str(b).eq(percent_decode_str(u)))
}

/// The path's segments without the empty one a trailing slash leaves.
fn segments(url: &Url) -> Vec<&str> {
    let mut segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
    if segments.last() == Some(&"") {
        segments.pop();
    }
    segments
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `scheme://host[:port]` of a URL, for messages (never its path or query: they may name the
/// patient).
pub fn origin(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(invalid URL)".into(),
    }
}

/// A path for a refusal message: the base paths here carry no patient id, and a hostile one
/// is cut short.
fn shown_path(url: &Url) -> String {
    let path = url.path();
    match path.char_indices().nth(64) {
        Some((cut, _)) => format!("path {}…", &path[..cut]),
        None => format!("path {path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(bases: &[&str]) -> FhirAllowList {
        FhirAllowList::new(&bases.iter().map(|b| b.to_string()).collect::<Vec<_>>(), false).unwrap()
    }

    #[test]
    fn dot_segments_plain_or_encoded_do_not_escape_the_base() {
        let list = allow(&["http://ehr.example/fhir"]);
        for server in [
            "http://ehr.example/fhir/../admin",
            "http://ehr.example/fhir/%2e%2e/admin",
            "http://ehr.example/fhir/.%2E/admin",
            "http://ehr.example/fhir/..%2fadmin",
            "http://ehr.example/fhir/..%5Cadmin",
            "http://ehr.example/fhir%2f..%2fadmin",
            "http://ehr.example/fhir/%252e%252e/admin",
            "http://ehr.example/fhir/%25252e%25252e/admin",
            "http://ehr.example/fhirx",
            "http://ehr.example.evil/fhir",
            "http://ehr.example:8080/fhir",
            "https://ehr.example/fhir",
            "http://user@ehr.example/fhir",
            "ftp://ehr.example/fhir",
        ] {
            let refused = list.check(server, &format!("{server}/Patient/p1"));
            assert!(refused.is_err(), "{server} was allowed");
            assert!(refused.unwrap_err().contains("not an allowed FHIR server"));
        }
        assert!(list.check("http://EHR.example:80/fhir/", "http://ehr.example/fhir/Patient/p1").is_ok());
        assert!(list.check("http://ehr.example/fhir/r4/./", "http://ehr.example/fhir/r4/Patient/p1").is_ok());
        assert!(list.check("http://ehr.example/%66hir", "http://ehr.example/fhir/Patient/p1").is_ok());
    }

    #[test]
    fn every_url_stays_within_the_request_fhir_server() {
        let list = allow(&["http://ehr.example/"]);
        let server = "http://ehr.example/fhir";
        assert!(list.check(server, "http://ehr.example/fhir/Patient?_getpages=x").is_ok());
        assert!(list.check(server, "http://ehr.example/fhir?_getpages=x").is_ok());
        assert!(list.check(server, "http://ehr.example/admin/Patient/p1").is_err());
        assert!(list.check(server, "http://ehr.example/fhir/Patient/../../admin").is_err());
        assert!(list.check(server, "http://other.example/fhir/Patient/p1").is_err());
    }

    #[test]
    fn loopback_servers_are_allowed_only_when_asked() {
        let local = FhirAllowList::new(&[], true).unwrap();
        assert!(local.check("http://127.0.0.1:9/fhir", "http://127.0.0.1:9/fhir/Patient/p1").is_ok());
        assert!(local.check("http://[::1]:9/fhir", "http://[::1]:9/fhir/Patient/p1").is_ok());
        assert!(local.check("http://ehr.example/fhir", "http://ehr.example/fhir/Patient/p1").is_err());
        assert!(allow(&[]).check("http://127.0.0.1:9/fhir", "http://127.0.0.1:9/fhir/Patient/p1").is_err());
        assert!(FhirAllowList::new(&["not a url".into()], false).is_err());
    }
}
