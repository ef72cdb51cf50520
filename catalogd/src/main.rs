//! `catalogd`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = catalogd::cli::Cli::parse();
    catalogd::cli::run(cli)
}
