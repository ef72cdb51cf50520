//! `lbconf`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    lbconf::cli::run(lbconf::cli::Cli::parse())
}
