//! Command line: one typed struct per subcommand; every `serve` flag is also read from
//! `LEG_CRAMP_CDS_<FLAG>` so `--help` documents the environment too.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use values::*;

mod values;

pub use values::{parse_duration, parse_size, parse_token_lifetime};

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
    /// Print per-rule feedback analytics from the store (or render the alert-burden report).
    Report(ReportArgs),
    /// Evaluate a population offline (FHIR Bundles, Bulk Data NDJSON folders) through the live
    /// pipeline and write the alert-burden report (report.json, report.html).
    Simulate(SimulateArgs),
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
pub struct SimulateArgs {
    /// FHIR Bundles (one patient each, .json or .json.gz), folders of them, or FHIR Bulk Data
    /// export folders (*.ndjson or *.ndjson.gz, grouped by patient).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Evaluation instant (RFC 3339); default: now.
    #[arg(long)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Folder for report.json, report.html and the per-patient files.
    #[arg(long, default_value = "simulation")]
    pub out: PathBuf,
    /// Also write patients.ndjson: {"patient", "rules", "cards"} per patient, for chart review.
    #[arg(long)]
    pub per_patient: bool,
    /// Also write responses.ndjson: each call's exact request and response.
    #[arg(long)]
    pub responses: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, env = "LEG_CRAMP_CDS_CARDS", default_value = "cards")]
    pub cards: PathBuf,
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
    /// Serve discovery without a JWT, for a client that cannot sign its discovery call. Not
    /// needed for the CDS Hooks Sandbox: the Sandbox signs discovery calls too (aud = the
    /// discovery URL), like every other call.
    #[arg(long, env = "LEG_CRAMP_CDS_OPEN_DISCOVERY")]
    pub open_discovery: bool,
    /// Longest JWT lifetime (exp - iat) accepted, e.g. 5m or 1h (at most 24h). A longer-lived
    /// token is refused: stolen, it would stay usable, and its jti would have to be kept as
    /// long. The CDS Hooks Sandbox and Epic sign 5-minute tokens.
    #[arg(long, env = "LEG_CRAMP_CDS_MAX_TOKEN_LIFETIME", default_value = "1h", value_parser = parse_token_lifetime)]
    pub max_token_lifetime: std::time::Duration,
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
    /// Days an "already addressed" override suppresses that rule's info/warning card for the
    /// patient, counted from when the service receives the feedback (0 turns snoozing off).
    #[arg(long, env = "LEG_CRAMP_CDS_SUPPRESS_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(i64).range(0..=3650))]
    pub suppress_days: i64,
    /// Days issued-card records, withheld-card records and feedback are kept; older rows are
    /// deleted hourly in small batches (ended snoozes at once). Feedback on a card older than
    /// this counts as about an unknown card.
    #[arg(long, env = "LEG_CRAMP_CDS_RETAIN_DAYS", default_value_t = 400,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retain_days: u32,
    /// Run as a demo: serve the demo page at `/` and the sample requests at `/samples`, and move
    /// the relative dates of a posted sample (extension "org.leg-cramp-cds.sample") to now.
    /// Never in production: without it those pages are 404 and a request is evaluated with its
    /// dates exactly as sent, whatever extension it carries.
    #[arg(long, env = "LEG_CRAMP_CDS_DEMO")]
    pub demo: bool,
    /// Directory of sample requests offered by the demo page at `/` (with --demo).
    #[arg(long, env = "LEG_CRAMP_CDS_SAMPLES", default_value = "samples")]
    pub samples: PathBuf,
    /// Silent mode for every service: evaluate and record each card as issued silently, but
    /// answer {"cards": []} (per service: "silent": true in services.json).
    #[arg(long, env = "LEG_CRAMP_CDS_SILENT")]
    pub silent: bool,
    /// Do not record issued cards (feedback is then only counted, as about unknown cards).
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
    /// Write the alert-burden report (report.json, report.html) from the store into DIR:
    /// issued and silent cards, cards per response, override rates, top override reasons.
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
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
                    .find(|i| i.iss == crate::auth::normalise_issuer(iss))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_defaults_to_listen_address() {
        let cli = Cli::try_parse_from(["leg-cramp-cds", "serve", "--listen", "127.0.0.1:9000"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve") };
        let args = *args;
        assert_eq!(args.public_base_url(), "http://127.0.0.1:9000");
    }
}
