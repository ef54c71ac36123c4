//! Trusted issuers as configured (`--trusted-issuer ISS=JWKS`), and the one spelling issuers are
//! compared in, so that `https://sandbox.cds-hooks.org/` in the configuration and
//! `https://sandbox.cds-hooks.org` in a token (or the other way round) are the same issuer.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// Normalised (see [`normalise_issuer`]).
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
        Ok(Self { iss: normalise_issuer(iss), jwks, tenants: Vec::new(), allowed_jku: Vec::new() })
    }
}

/// The form an issuer is compared in. An http(s) URL is written as the `url` crate serialises
/// it (scheme and host in lower case, default port dropped, dot segments resolved) without
/// trailing slashes; any other string (`iss` may be any StringOrURI) only loses its trailing
/// slashes. Issuers are configured by hand and a trailing slash is the usual slip.
pub fn normalise_issuer(iss: &str) -> String {
    match url::Url::parse(iss) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.query().is_none() && url.fragment().is_none() => {
            url.as_str().trim_end_matches('/').to_string()
        }
        _ => iss.trim_end_matches('/').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_differing_by_a_trailing_slash_or_case_of_host_are_one() {
        let one = normalise_issuer("https://sandbox.cds-hooks.org");
        assert_eq!(normalise_issuer("https://sandbox.cds-hooks.org/"), one);
        assert_eq!(normalise_issuer("HTTPS://Sandbox.CDS-Hooks.org:443/"), one);
        assert_eq!(normalise_issuer("https://ehr.example/fhir/r4/"), "https://ehr.example/fhir/r4");
        assert_ne!(normalise_issuer("https://ehr.example/fhir/R4"), normalise_issuer("https://ehr.example/fhir/r4"));
        assert_eq!(normalise_issuer("urn:example:issuer/"), "urn:example:issuer");
        assert_eq!(normalise_issuer("client-id"), "client-id");
    }

    #[test]
    fn a_configured_issuer_is_stored_normalised() {
        let issuer = TrustedIssuer::parse("https://sandbox.cds-hooks.org/=keys.json").unwrap();
        assert_eq!(issuer.iss, "https://sandbox.cds-hooks.org");
        assert!(TrustedIssuer::parse("https://x=http://x/jwks").is_err());
    }
}
