//! `offerd`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    offerd::cli::run(offerd::cli::Cli::parse())
}
