//! `taskrun`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    taskrun::cli::run(taskrun::cli::Cli::parse())
}
