//! `healthcheck`: parse the command line and hand over to the library; the process exits with
//! the Nagios status of what ran.

fn main() -> std::process::ExitCode {
    healthcheck::cli::main(std::env::args_os())
}
