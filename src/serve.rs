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
    let catalog = match Catalog::load(&args.cards, &schemas) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("cannot start: the cards directory '{}' is invalid:\n{errors}", args.cards.display());
            return ExitCode::from(2);
        }
    };
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let app = Application::build(&args, schemas, catalog)?;
        tracing::info!(
            listen = %args.listen,
            port = app.port(),
            public_url = %app.state.public_url,
            services = app.state.catalog.load().services.len(),
            "leg-cramp-cds ready"
        );
        app.run_until_stopped().await?;
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
