//! `leg-cramp-cds serve`: start-up checks, then the HTTP service until SIGINT/SIGTERM.

use crate::catalog::Catalog;
use crate::cli::ServeArgs;
use crate::http::Application;
use crate::protocol::SchemaSet;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(args: ServeArgs) -> ExitCode {
    crate::telemetry::init(args.log_format);
    crate::install_crypto_provider();
    let schemas = match SchemaSet::compile() {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "embedded schemas do not compile");
            return ExitCode::from(2);
        }
    };
    // Safe defaults: without trusted issuers, only a loopback listener may run, and loudly.
    if args.trusted_issuers.is_empty() {
        if args.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %args.listen,
                "AUTHENTICATION IS OFF: no --trusted-issuer; any local process can call this service. Loopback only."
            );
        } else if args.insecure_no_auth {
            tracing::warn!(listen = %args.listen, "AUTHENTICATION IS OFF on a non-loopback address (--insecure-no-auth)");
        } else {
            eprintln!(
                "refusing to start: {} is not a loopback address and no --trusted-issuer is configured \
                 (give --trusted-issuer ISS=JWKS, or --insecure-no-auth for a throw-away test setup)",
                args.listen
            );
            return ExitCode::from(2);
        }
    }
    let catalog = match Catalog::load(&args.cards, &schemas) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("cannot start: the cards directory '{}' is invalid:\n{errors}", args.cards.display());
            return ExitCode::from(2);
        }
    };
    // The metrics recorder first: the store counts from its first moment (the start-up
    // retention pass, its availability).
    crate::metrics::handle();
    let store = match open_store(&args) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let system = actix_web::rt::System::new();
    let store_for_shutdown = store.clone();
    let result = system.block_on(async move {
        let app = Application::build(&args, schemas.clone(), catalog, store)?;
        let catalog = app.state.catalog.load();
        tracing::info!(
            listen = %args.listen,
            port = app.port(),
            public_url = %app.state.public_url,
            services = catalog.services.len(),
            auth = app.state.auth.is_some(),
            terminology = app.state.terminology.is_some(),
            tls = args.tls_cert.is_some(),
            rules = catalog.rules.rules.len(),
            value_sets = catalog.rules.index.len(),
            "leg-cramp-cds ready"
        );
        drop(catalog);
        watch_reload_signal(app.state.clone(), args.cards.clone(), schemas);
        app.run_until_stopped().await?;
        if let Some(store) = store_for_shutdown {
            // Clean shutdown loses nothing: the queue of issued cards is written first.
            store.flush();
        }
        tracing::info!("stopped");
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leg-cramp-cds: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The feedback store, or `None` when it cannot be opened (cards are still served; feedback
/// and analytics answer 503). `Err` refuses to start: test hooks off loopback.
fn open_store(args: &ServeArgs) -> Result<Option<Arc<crate::store::FeedbackStore>>, ExitCode> {
    if args.test_hooks {
        // Fault injection must never be reachable on a real deployment.
        if !args.listen.ip().is_loopback() {
            eprintln!("refusing to start: --test-hooks is for the test suite and only allowed on a loopback address");
            return Err(ExitCode::from(2));
        }
        tracing::warn!("TEST HOOKS ARE ON (--test-hooks): feedback can make the store writer panic");
    }
    let options = crate::store::StoreOptions {
        fixed_now: args.now,
        queue_capacity: args.store_queue,
        test_hooks: args.test_hooks,
        retain_days: Some(args.retain_days),
    };
    match crate::store::FeedbackStore::open_with(&args.database, args.patient_key_secret.as_deref(), options) {
        Ok(s) => {
            tracing::info!(backend = s.backend_name, available = s.outage().is_none(), "feedback store open");
            Ok(Some(Arc::new(s)))
        }
        Err(e) => {
            // Degrade, don't die: cards are still served; feedback and analytics answer 503.
            tracing::error!(error = %e, "FEEDBACK STORE UNAVAILABLE: feedback and analytics will answer 503");
            Ok(None)
        }
    }
}

/// SIGHUP reloads the cards directory. The new set replaces the old one atomically (requests
/// in flight finish on the set they started with); a set that does not load is refused and
/// the current one kept.
fn watch_reload_signal(
    state: actix_web::web::Data<crate::http::AppState>,
    cards: std::path::PathBuf,
    schemas: Arc<SchemaSet>,
) {
    actix_web::rt::spawn(async move {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload disabled");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            match Catalog::load(&cards, &schemas) {
                Ok(catalog) => {
                    let rules = catalog.rules.rules.len();
                    state.catalog.store(Arc::new(catalog));
                    tracing::info!(rules, cards = %cards.display(), "cards reloaded");
                }
                Err(errors) => {
                    let problems: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                    tracing::error!(problems = ?problems, "reload refused; keeping the current cards");
                }
            }
        }
    });
}
