//! `dnsbridge`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    dnsbridge::cli::run(dnsbridge::cli::Cli::parse())
}
