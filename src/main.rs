use clap::Parser;
use leg_cramp_cds::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => leg_cramp_cds::serve::run(*args),
        Command::Check(args) => leg_cramp_cds::commands::check(args),
        Command::Eval(args) => leg_cramp_cds::commands::eval(args),
        Command::Report(args) => leg_cramp_cds::commands::report(args),
        Command::SampleBundle(args) => leg_cramp_cds::commands::sample_bundle(args),
    }
}
