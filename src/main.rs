use clap::Parser;
use leg_cramp_cds::cli::{Cli, Command};
use std::process::ExitCode;

// The request path allocates many small strings (FHIR parsing); mimalloc handles that
// pattern markedly better than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => leg_cramp_cds::serve::run(*args),
        Command::Check(args) => leg_cramp_cds::commands::check(args),
        Command::Eval(args) => leg_cramp_cds::commands::eval(args),
        Command::Report(args) => leg_cramp_cds::commands::report(args),
        Command::Simulate(args) => leg_cramp_cds::commands::simulate(args),
        Command::SampleBundle(args) => leg_cramp_cds::commands::sample_bundle(args),
    }
}
