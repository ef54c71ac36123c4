//! The HTTP layer: one place that assembles the actix application and binds it.

pub mod demo;
pub mod error;
pub mod feedback;
pub mod host;
pub mod limits;
pub mod middleware;
pub mod openapi;
pub mod pool;
pub mod routes;

use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::cli::ServeArgs;
use crate::fhir::client::{FhirClient, FhirClientConfig};
use crate::fhir::terminology::{TerminologyClient, TerminologyConfig};
use crate::protocol::SchemaSet;
use crate::store::FeedbackStore;
use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::{middleware::from_fn, web, App, HttpServer};
use arc_swap::ArcSwap;
use host::HostPolicy;
use std::net::TcpListener;
use std::sync::Arc;

/// Shared, read-mostly state. The catalog sits behind an ArcSwap so a reload replaces it
/// atomically while in-flight requests finish on the one they started with.
pub struct AppState {
    pub schemas: Arc<SchemaSet>,
    pub catalog: ArcSwap<Catalog>,
    pub max_body: usize,
    pub public_url: String,
    pub fhir: FhirClient,
    /// `None` without --terminology-url: unresolved RxNorm codes are warned about.
    pub terminology: Option<TerminologyClient>,
    /// `None`: authentication off (loopback or --insecure-no-auth).
    pub auth: Option<Authenticator>,
    pub open_discovery: bool,
    pub request_timeout: std::time::Duration,
    /// `None` when the store could not be opened: feedback and analytics answer 503, the
    /// services keep working.
    pub store: Option<Arc<FeedbackStore>>,
    pub record_cards: bool,
    /// `--silent`: every service evaluates and records, and answers no cards.
    pub silent: bool,
    pub samples_dir: std::path::PathBuf,
    /// `--demo`: the demo page, `/samples`, and sample date-shifting are on.
    pub demo: bool,
    pub suppress_days: i64,
    /// Evaluation instant fixed by `--now` (tests, demos); the clock otherwise.
    pub fixed_now: Option<chrono::DateTime<chrono::Utc>>,
    /// Request bodies in flight, against --max-inflight-bodies and --max-inflight-bytes.
    pub in_flight: Arc<limits::InFlight>,
    /// Where large requests are evaluated (--eval-threads, --offload-above).
    pub eval_pool: pool::EvalPool,
}

#[derive(Debug, Clone)]
pub enum CorsPolicy {
    AnyOrigin,
    Origins(Vec<String>),
}

impl CorsPolicy {
    /// Whether a browser page from `origin` may call the service.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            CorsPolicy::AnyOrigin => true,
            CorsPolicy::Origins(origins) => origins.iter().any(|o| o == origin),
        }
    }
}

/// A bound, not yet running service. Tests build it on port 0 and read `port()`.
pub struct Application {
    server: Server,
    port: u16,
    pub state: web::Data<AppState>,
}

impl Application {
    pub fn build(
        args: &ServeArgs,
        schemas: Arc<SchemaSet>,
        catalog: Catalog,
        store: Option<Arc<FeedbackStore>>,
    ) -> anyhow::Result<Self> {
        let extra_roots = args.extra_roots().map_err(anyhow::Error::msg)?;
        let auth = authenticator(args, &extra_roots, store.as_deref())?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(args.listen)?;
        let port = listener.local_addr()?.port();
        let mut public_url = args.public_base_url();
        if args.public_url.is_none() && args.listen.port() == 0 {
            public_url = format!("http://{}:{port}", args.listen.ip());
        }
        let terminology = match &args.terminology_url {
            Some(url) => Some(TerminologyClient::new(TerminologyConfig {
                url: url.clone(),
                protocol: args.terminology_protocol,
                timeout: args.fhir_timeout,
                extra_roots: extra_roots.clone(),
            })?),
            None => None,
        };
        let fhir = fhir_client(args, auth.is_none(), extra_roots)?;
        let (in_flight, eval_pool) = limits::from_args(args)?;
        let state = web::Data::new(AppState {
            schemas,
            catalog: ArcSwap::from_pointee(catalog),
            max_body: args.max_body,
            public_url,
            fhir,
            terminology,
            auth,
            open_discovery: args.open_discovery,
            request_timeout: args.request_timeout,
            store,
            record_cards: !args.no_recording,
            silent: args.silent,
            samples_dir: args.samples.clone(),
            demo: args.demo,
            suppress_days: args.suppress_days,
            fixed_now: args.now,
            in_flight,
            eval_pool,
        });
        let cors = cors_policy(args);
        let host_policy = HostPolicy::new(state.auth.is_some(), &state.public_url);
        crate::metrics::handle();
        let app_state = state.clone();
        let demo = args.demo;
        let mut http = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::Data::new(host_policy.clone()))
                .app_data(web::Data::new(cors.clone()))
                .wrap(from_fn(limits::bound_bodies))
                .wrap(cors_middleware(&cors))
                .wrap(from_fn(host::check_host))
                .wrap(from_fn(middleware::observe))
                .configure(|cfg| routes_config(cfg, demo))
        })
        // Slow or idle clients cannot hold workers: headers within 10 s, idle keep-alive 75 s.
        .client_request_timeout(std::time::Duration::from_secs(10))
        .client_disconnect_timeout(std::time::Duration::from_secs(2))
        .keep_alive(std::time::Duration::from_secs(75))
        // Graceful shutdown: SIGINT/SIGTERM stop accepting and let in-flight requests finish.
        .shutdown_timeout(30);
        http = match tls {
            Some(config) => http.listen_rustls_0_23(listener, config)?,
            None => http.listen(listener)?,
        };
        if let Some(n) = args.workers {
            http = http.workers(n.max(1));
        }
        Ok(Self { server: http.run(), port, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn routes_config(cfg: &mut web::ServiceConfig, demo: bool) {
    use routes::{Methods::*, *};
    if demo {
        // Demo pages exist only in a demo service: a production one answers 404 for them.
        cfg.service(resource(&["/"], ReadOnly, demo::index))
            .service(resource(&["/static/app.js"], ReadOnly, demo::app_js))
            .service(resource(&["/static/app.css"], ReadOnly, demo::app_css))
            .service(resource(&["/samples"], ReadOnly, demo::list_samples))
            .service(resource(&["/samples/{name}"], ReadOnly, demo::get_sample));
    }
    // A discovery URL written with a trailing slash (`/cds-services/`) is served too, and so
    // are the service URLs a client builds from it by appending `/{id}` (the CDS Hooks
    // Sandbox does): `/cds-services//{id}`. The path is not rewritten, so the JWT audience
    // stays the URL the client called.
    let call_paths = ["/cds-services/{id}", "/cds-services/{id}/", "/cds-services//{id}"];
    let feedback_paths =
        ["/cds-services/{id}/feedback", "/cds-services/{id}/feedback/", "/cds-services//{id}/feedback"];
    cfg.service(resource(&["/cds-services", "/cds-services/"], ReadOnly, discovery))
        .service(resource(&call_paths, Post, call_service))
        .service(resource(&feedback_paths, Post, feedback::post_feedback))
        .service(resource(&["/analytics/rules"], ReadOnly, feedback::get_rule_analytics))
        .service(resource(&["/openapi.json"], ReadOnly, openapi::openapi_json))
        .service(resource(&["/metrics"], ReadOnly, metrics_text))
        .service(resource(&["/healthz"], ReadOnly, healthz))
        .service(resource(&["/readyz"], ReadOnly, readyz))
        .default_service(web::to(not_found));
}

/// The JWT authenticator when issuers are trusted, its `jti` replay protection shared through
/// the feedback store when there is one (replicas and restarts), else this process's memory.
fn authenticator(
    args: &ServeArgs,
    extra_roots: &[reqwest::Certificate],
    store: Option<&FeedbackStore>,
) -> anyhow::Result<Option<Authenticator>> {
    let issuers = args.issuers().map_err(anyhow::Error::msg)?;
    if issuers.is_empty() {
        return Ok(None);
    }
    let auth = Authenticator::new(issuers, extra_roots, args.max_token_lifetime).map_err(anyhow::Error::msg)?;
    let ledger = store.map(FeedbackStore::replay_ledger);
    Ok(Some(match ledger {
        Some(Ok(ledger)) => {
            tracing::info!("JWT replay protection: jti shared through the feedback store (replicas, restarts)");
            auth.with_replay_ledger(Arc::new(ledger))
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "JWT replay protection: this process's memory only (no replay ledger)");
            auth
        }
        None => {
            tracing::warn!("JWT replay protection: this process's memory only (the feedback store is not open)");
            auth
        }
    }))
}

/// Explicit origins; else any origin on loopback (the Sandbox and the demo page), none otherwise.
fn cors_policy(args: &ServeArgs) -> CorsPolicy {
    let any = args.cors_origins.iter().any(|o| o == "*");
    if !args.cors_origins.is_empty() && !any {
        CorsPolicy::Origins(args.cors_origins.clone())
    } else if any || args.listen.ip().is_loopback() {
        CorsPolicy::AnyOrigin
    } else {
        CorsPolicy::Origins(Vec::new())
    }
}

fn fhir_client(
    args: &ServeArgs,
    loopback_tool: bool,
    extra_roots: Vec<reqwest::Certificate>,
) -> anyhow::Result<FhirClient> {
    FhirClient::new(FhirClientConfig {
        timeout: args.fhir_timeout,
        max_pages: args.fhir_max_pages.max(1),
        max_resources: args.fhir_max_resources.max(1),
        allow: args.fhir_allow.clone(),
        // Without authentication the service is a loopback/dev tool: loopback FHIR servers
        // are fine. With it, only explicitly allowed servers are ever called.
        allow_loopback: loopback_tool,
        extra_roots,
    })
    .map_err(anyhow::Error::msg)
}

/// CDS Hooks asks for CORS (browser clients such as the Sandbox preflight every call because
/// of the Authorization header). Preflights are answered by each resource's OPTIONS route
/// ([`routes::options`]), so that they list that resource's methods, as `Allow` does; this
/// middleware checks the origin and adds `Access-Control-Allow-Origin` and `Vary`.
fn cors_middleware(policy: &CorsPolicy) -> Cors {
    let base = Cors::default().disable_preflight();
    match policy {
        CorsPolicy::AnyOrigin => base.allow_any_origin().send_wildcard(),
        CorsPolicy::Origins(origins) => origins.iter().fold(base, |c, o| c.allowed_origin(o)),
    }
}

/// rustls server configuration from PEM files (certificate chain, private key).
fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--tls-cert {}: no certificate found", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
    Ok(rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key)?)
}
