//! Command line: one typed struct per subcommand; every `serve` flag is also read from
//! `LEG_CRAMP_CDS_<FLAG>` so `--help` documents the environment too.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "leg-cramp-cds", version, about = "CDS Hooks 2.0.1 service: causes of leg cramps, as advisory cards")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Validate the cards directory and run every rule's test cases.
    Check(CheckArgs),
    /// Evaluate a CDS Hooks request file offline and print the cards.
    Eval(EvalArgs),
    /// Print per-rule feedback analytics from the store.
    Report(ReportArgs),
    /// Print a sample's resources as a FHIR transaction Bundle (dates moved to now), to load
    /// a FHIR server with it (docker-compose seeds HAPI this way).
    SampleBundle(SampleBundleArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SampleBundleArgs {
    /// A sample request file (samples/<name>.json).
    pub file: PathBuf,
    /// Evaluation instant the dates are moved to (RFC 3339); default: now.
    #[arg(long)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Directory holding services.json, rules and value sets.
    #[arg(long, env = "LEG_CRAMP_CDS_CARDS", default_value = "cards")]
    pub cards: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// A CDS Hooks request (JSON) with its prefetch.
    pub file: PathBuf,
    /// Evaluation instant (RFC 3339); default: now.
    #[arg(long)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Print the exact response JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Service id (default: the service for the request's hook).
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long, env = "LEG_CRAMP_CDS_CARDS", default_value = "cards")]
    pub cards: PathBuf,
    /// FHIR server to fetch missing prefetch keys from, as the live service does (replaces the
    /// request's fhirServer and drops its token). The only server called. Without it, a missing
    /// key fails as the service's 412 does.
    #[arg(long)]
    pub fhir_server: Option<String>,
    /// Bearer token for --fhir-server.
    #[arg(long, requires = "fhir_server")]
    pub fhir_token: Option<String>,
    /// Overall deadline for fetching missing prefetch (e.g. 3s, 500ms).
    #[arg(long, env = "LEG_CRAMP_CDS_FHIR_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub fhir_timeout: std::time::Duration,
    /// Most result pages followed per prefetch key.
    #[arg(long, env = "LEG_CRAMP_CDS_FHIR_MAX_PAGES", default_value_t = 10)]
    pub fhir_max_pages: usize,
    /// Most resources read per prefetch key.
    #[arg(long, env = "LEG_CRAMP_CDS_FHIR_MAX_RESOURCES", default_value_t = 2000)]
    pub fhir_max_resources: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LEG_CRAMP_CDS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding services.json, rules and value sets.
    #[arg(long, env = "LEG_CRAMP_CDS_CARDS", default_value = "cards")]
    pub cards: PathBuf,
    /// Base URL clients use to reach this service (JWT `aud` is checked against it).
    /// Default: http://<listen>.
    #[arg(long, env = "LEG_CRAMP_CDS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes (suffixes KiB, MiB accepted).
    #[arg(long, env = "LEG_CRAMP_CDS_MAX_BODY", default_value = "10MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// Most request bodies in flight at once (being received or evaluated). Past it a request
    /// gets 503 with Retry-After before its body is read.
    #[arg(long, env = "LEG_CRAMP_CDS_MAX_INFLIGHT_BODIES", default_value_t = 64, value_parser = parse_count)]
    pub max_inflight_bodies: usize,
    /// Most bytes of request bodies in flight at once (suffixes KiB, MiB accepted): what
    /// bounds the memory a burst of large requests can take. Past it a request gets 503 with
    /// Retry-After and the rest of its body is not read.
    #[arg(long, env = "LEG_CRAMP_CDS_MAX_INFLIGHT_BYTES", default_value = "32MiB", value_parser = parse_size)]
    pub max_inflight_bytes: usize,
    /// Threads that evaluate large requests (bodies of at least --offload-above), so that
    /// the HTTP workers keep answering health checks and small requests. Default: one per core.
    #[arg(long, env = "LEG_CRAMP_CDS_EVAL_THREADS", value_parser = parse_count)]
    pub eval_threads: Option<usize>,
    /// Bodies of at least this size are evaluated on the --eval-threads pool; smaller ones on
    /// the HTTP worker that received them (no hand-over).
    #[arg(long, env = "LEG_CRAMP_CDS_OFFLOAD_ABOVE", default_value = "64KiB", value_parser = parse_size)]
    pub offload_above: usize,
    /// Log format.
    #[arg(long, env = "LEG_CRAMP_CDS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Origins allowed by CORS (repeatable, or comma-separated). Default: `*` on a loopback
    /// address, none otherwise.
    #[arg(long = "cors-origin", env = "LEG_CRAMP_CDS_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "LEG_CRAMP_CDS_WORKERS")]
    pub workers: Option<usize>,
    /// Overall deadline for fetching missing prefetch from the FHIR server (e.g. 3s, 500ms).
    #[arg(long, env = "LEG_CRAMP_CDS_FHIR_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub fhir_timeout: std::time::Duration,
    /// FHIR server URL prefixes the service may call (repeatable / comma-separated).
    /// Without trusted issuers, loopback servers are also allowed.
    #[arg(long = "fhir-allow", env = "LEG_CRAMP_CDS_FHIR_ALLOW", value_delimiter = ',')]
    pub fhir_allow: Vec<String>,
    /// Most result pages followed per prefetch key.
    #[arg(long, env = "LEG_CRAMP_CDS_FHIR_MAX_PAGES", default_value_t = 10)]
    pub fhir_max_pages: usize,
    /// Most resources read per prefetch key.
    #[arg(long, env = "LEG_CRAMP_CDS_FHIR_MAX_RESOURCES", default_value_t = 2000)]
    pub fhir_max_resources: usize,
    /// RxNorm terminology service that names medications recorded only by a product code:
    /// an RxNav REST base (e.g. https://rxnav.nlm.nih.gov/REST) or a FHIR terminology server
    /// base (see --terminology-protocol). Asked within what remains of --fhir-timeout.
    #[arg(long, env = "LEG_CRAMP_CDS_TERMINOLOGY_URL")]
    pub terminology_url: Option<String>,
    /// How --terminology-url is asked: `rxnav` (GET {url}/rxcui/{code}/related.json?tty=IN+MIN)
    /// or `fhir` (GET {url}/CodeSystem/$lookup?system=<RxNorm>&code={code}).
    #[arg(long, env = "LEG_CRAMP_CDS_TERMINOLOGY_PROTOCOL", value_enum, default_value = "rxnav")]
    pub terminology_protocol: crate::fhir::terminology::TerminologyProtocol,
    /// Trust JWTs from this issuer, verified with this JWK Set (a file, or an https URL):
    /// `ISS=JWKS`, repeatable. With at least one, every service call needs a valid JWT.
    #[arg(long = "trusted-issuer", env = "LEG_CRAMP_CDS_TRUSTED_ISSUER", value_delimiter = ',')]
    pub trusted_issuers: Vec<String>,
    /// Accept only these `tenant` claims from an issuer: `ISS=TENANT`, repeatable.
    #[arg(long = "trusted-tenant", env = "LEG_CRAMP_CDS_TRUSTED_TENANT", value_delimiter = ',')]
    pub trusted_tenants: Vec<String>,
    /// JWK Set URLs a token's `jku` may name: `ISS=URL`, repeatable.
    #[arg(long = "allowed-jku", env = "LEG_CRAMP_CDS_ALLOWED_JKU", value_delimiter = ',')]
    pub allowed_jku: Vec<String>,
    /// Serve discovery without a JWT (the CDS Hooks Sandbox calls it unauthenticated first).
    #[arg(long, env = "LEG_CRAMP_CDS_OPEN_DISCOVERY")]
    pub open_discovery: bool,
    /// Allow running without authentication on a non-loopback address. Never in production.
    #[arg(long, env = "LEG_CRAMP_CDS_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "LEG_CRAMP_CDS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM, PKCS#8 or RSA/SEC1) for --tls-cert.
    #[arg(long, env = "LEG_CRAMP_CDS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra CA certificates (PEM files, repeatable) trusted for outbound HTTPS: JWK Sets and
    /// FHIR servers signed by an internal CA.
    #[arg(long = "ca-cert", env = "LEG_CRAMP_CDS_CA_CERT", value_delimiter = ',')]
    pub ca_certs: Vec<PathBuf>,
    /// Longest time to receive a request body and answer it.
    #[arg(long, env = "LEG_CRAMP_CDS_REQUEST_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
    /// Feedback store: a SQLite file path, or a postgres:// URL (several replicas).
    #[arg(long, env = "LEG_CRAMP_CDS_DATABASE", default_value = "leg-cramp-cds.sqlite")]
    pub database: String,
    /// Secret for the pseudonymous patient key (HMAC-SHA256). Default with SQLite: generated
    /// once and kept beside the database file. Required with PostgreSQL.
    #[arg(long, env = "LEG_CRAMP_CDS_PATIENT_KEY_SECRET", hide_env_values = true)]
    pub patient_key_secret: Option<String>,
    /// Days an "already addressed" override suppresses that rule's info/warning card for the patient.
    #[arg(long, env = "LEG_CRAMP_CDS_SUPPRESS_DAYS", default_value_t = 30)]
    pub suppress_days: i64,
    /// Run as a demo: serve the demo page at `/` and the sample requests at `/samples`, and move
    /// the relative dates of a posted sample (extension "org.leg-cramp-cds.sample") to now.
    /// Never in production: without it those pages are 404 and a request is evaluated with its
    /// dates exactly as sent, whatever extension it carries.
    #[arg(long, env = "LEG_CRAMP_CDS_DEMO")]
    pub demo: bool,
    /// Directory of sample requests offered by the demo page at `/` (with --demo).
    #[arg(long, env = "LEG_CRAMP_CDS_SAMPLES", default_value = "samples")]
    pub samples: PathBuf,
    /// Do not record issued cards (feedback is still stored, flagged as for unknown cards).
    #[arg(long, env = "LEG_CRAMP_CDS_NO_RECORDING")]
    pub no_recording: bool,
    /// Fix the evaluation instant (RFC 3339) instead of the clock: for tests and demos.
    #[arg(long, env = "LEG_CRAMP_CDS_NOW")]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Card records that may wait to be written to the feedback store; more are shed and
    /// counted (cds_store_records_shed_total). Hidden: a tuning and test knob.
    #[arg(long, hide = true, default_value_t = crate::store::DEFAULT_QUEUE_CAPACITY,
          value_parser = parse_queue_bound)]
    pub store_queue: usize,
    /// Fault-injection hooks for the store tests (see `store::TEST_HOOK_PANIC`). Hidden, no
    /// environment variable, and refused on a non-loopback address.
    #[arg(long, hide = true)]
    pub test_hooks: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Feedback store: a SQLite file path, or a postgres:// URL.
    #[arg(long, env = "LEG_CRAMP_CDS_DATABASE", default_value = "leg-cramp-cds.sqlite")]
    pub database: String,
    #[arg(long, env = "LEG_CRAMP_CDS_PATIENT_KEY_SECRET", hide_env_values = true)]
    pub patient_key_secret: Option<String>,
    /// Only count what happened since this instant (RFC 3339).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Print JSON (the same document as GET /analytics/rules).
    #[arg(long)]
    pub json: bool,
}

impl ServeArgs {
    /// The public base URL without a trailing slash.
    pub fn public_base_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("{}://{}", if self.tls_cert.is_some() { "https" } else { "http" }, self.listen),
        }
    }

    /// The extra CA certificates, read and parsed.
    pub fn extra_roots(&self) -> Result<Vec<reqwest::Certificate>, String> {
        let mut roots = Vec::new();
        for path in &self.ca_certs {
            let pem = std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            roots.extend(
                reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?,
            );
        }
        Ok(roots)
    }

    /// The trusted issuers with their tenant and jku allow-lists.
    pub fn issuers(&self) -> Result<Vec<crate::auth::TrustedIssuer>, String> {
        let mut issuers: Vec<crate::auth::TrustedIssuer> =
            self.trusted_issuers.iter().map(|s| crate::auth::TrustedIssuer::parse(s)).collect::<Result<_, _>>()?;
        let mut attach = |specs: &[String], flag: &str, tenant: bool| -> Result<(), String> {
            for spec in specs {
                let (iss, value) =
                    spec.split_once('=').ok_or_else(|| format!("{flag} '{spec}': expected ISS=VALUE"))?;
                let issuer = issuers
                    .iter_mut()
                    .find(|i| i.iss == iss)
                    .ok_or_else(|| format!("{flag} '{spec}': '{iss}' is not a --trusted-issuer"))?;
                if tenant {
                    issuer.tenants.push(value.to_string());
                } else {
                    issuer.allowed_jku.push(value.to_string());
                }
            }
            Ok(())
        };
        attach(&self.trusted_tenants, "--trusted-tenant", true)?;
        attach(&self.allowed_jku, "--allowed-jku", false)?;
        Ok(issuers)
    }
}

/// Parses `10485760`, `512KiB`, `10MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`: binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("'{s}' is not a size (e.g. 10MiB)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' (use KiB, MiB or GiB)")),
    };
    n.checked_mul(factor).filter(|&b| b > 0).ok_or_else(|| format!("'{s}' is out of range"))
}

/// A count of things in flight or threads: 1 to 100000.
fn parse_count(s: &str) -> Result<usize, String> {
    parse_from_1_to(s, 100_000)
}

/// A queue bound: 1 to 10 million records.
fn parse_queue_bound(s: &str) -> Result<usize, String> {
    parse_from_1_to(s, 10_000_000)
}

fn parse_from_1_to(s: &str, max: usize) -> Result<usize, String> {
    s.trim().parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| format!("'{s}' is not 1 to {max}"))
}

/// Parses `3s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 3s, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        other => return Err(format!("unknown duration unit '{other}' (use ms, s or m)")),
    };
    if !(secs > 0.0 && secs < 3600.0) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn public_url_defaults_to_listen_address() {
        let cli = Cli::try_parse_from(["leg-cramp-cds", "serve", "--listen", "127.0.0.1:9000"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve") };
        let args = *args;
        assert_eq!(args.public_base_url(), "http://127.0.0.1:9000");
    }
}
