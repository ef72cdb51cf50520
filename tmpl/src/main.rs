//! `tmpl`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tmpl::cli::run(tmpl::cli::Cli::parse())
}
