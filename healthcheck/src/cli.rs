//! The command line. Argument errors are Nagios UNKNOWN (exit 3, one line), not clap's exit 2,
//! because monitoring systems read any other code as a check result.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use cairn_checks::{CheckResult, CheckSpec, Context, Kind, Status};
use clap::{Args, Parser, Subcommand};

use crate::duration_arg::seconds_or_duration;

/// Nagios-compatible checks: prints `LABEL STATUS - text | perfdata` and exits 0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN.
#[derive(Parser, Debug)]
#[command(name = "healthcheck", version, about)]
pub struct Cli {
    /// Print the result as JSON instead of the Nagios line
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Request a URL; OK when the status is expected (default 200-399) and the body matches
    Http(HttpArgs),
    /// Connect to HOST:PORT, optionally send a string and expect one back
    Tcp(TcpArgs),
    /// Resolve a name through a DNS server and check the answers
    Dns(DnsArgs),
    /// Run a Nagios plugin or script and relay its status and output
    Exec(ExecArgs),
    /// Check a file exists, is fresh enough and of a sane size (cron heartbeats)
    File(FileArgs),
    /// Run a batch of checks from a JSON file (or - for stdin) concurrently
    Run(crate::batch::RunArgs),
    /// Run the checks registered in the catalog for a node and push their status
    Agent(crate::agent::AgentArgs),
    // `completions <shell>` and `man`: exit 0 with the script or page on stdout (a bad shell
    // name is a bad argument, so UNKNOWN like any other)
    #[command(flatten)]
    Docs(cairn_cli::DocsCommand),
}

/// Flags every single check takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Label of the output line [default: the check kind]
    #[arg(long)]
    pub name: Option<String>,
    /// Give up after this long (seconds, or a duration like 500ms)
    #[arg(long, short = 't', default_value = "10")]
    pub timeout: String,
}

#[derive(Args, Debug, Clone)]
pub struct Timing {
    /// WARNING when the answer takes longer (seconds, or a duration like 500ms)
    #[arg(long, short = 'w')]
    pub warning: Option<String>,
    /// CRITICAL when the answer takes longer
    #[arg(long, short = 'c')]
    pub critical: Option<String>,
}

#[derive(Args, Debug)]
pub struct HttpArgs {
    pub url: String,
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
    /// Request header "Name: value" (repeatable)
    #[arg(long, short = 'H')]
    pub header: Vec<String>,
    /// Request body
    #[arg(long, short = 'd')]
    pub body: Option<String>,
    /// Accepted status codes, e.g. 200-299,404
    #[arg(long, short = 'e', default_value = "200-399")]
    pub expect_status: String,
    /// The body must contain this text
    #[arg(long, short = 's')]
    pub contains: Option<String>,
    /// The body must match this regular expression
    #[arg(long, short = 'r')]
    pub regex: Option<String>,
    /// Accept any TLS certificate
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Follow redirects (up to 10) instead of judging the redirect itself
    #[arg(long, short = 'L')]
    pub follow: bool,
    #[command(flatten)]
    pub timing: Timing,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct TcpArgs {
    /// HOST:PORT
    pub address: String,
    /// Send this string after connecting (\r and \n escapes are understood)
    #[arg(long)]
    pub send: Option<String>,
    /// The reply must contain this string
    #[arg(long)]
    pub expect: Option<String>,
    #[command(flatten)]
    pub timing: Timing,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct DnsArgs {
    /// The name to resolve
    #[arg(value_name = "NAME")]
    pub query: String,
    /// DNS server IP[:PORT] [default: first nameserver of /etc/resolv.conf]
    #[arg(long)]
    pub server: Option<String>,
    /// Record type (A, AAAA, SRV, MX, TXT, CNAME, NS, ...)
    #[arg(long = "type", short = 'q', default_value = "A")]
    pub record_type: String,
    /// A value that must be in the answer (repeatable), e.g. 10.0.0.1
    #[arg(long = "expect", short = 'a')]
    pub expect: Vec<String>,
    #[command(flatten)]
    pub timing: Timing,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The plugin and its arguments (after --)
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct FileArgs {
    pub path: PathBuf,
    /// CRITICAL when last modified longer ago (e.g. 10m, or seconds)
    #[arg(long)]
    pub max_age: Option<String>,
    /// WARNING when last modified longer ago
    #[arg(long)]
    pub warn_age: Option<String>,
    /// CRITICAL below this many bytes
    #[arg(long)]
    pub min_size: Option<u64>,
    /// CRITICAL above this many bytes
    #[arg(long)]
    pub max_size: Option<u64>,
    #[arg(long)]
    pub name: Option<String>,
}

fn unescape(s: &str) -> String {
    s.replace("\\r", "\r")
        .replace("\\n", "\n")
        .replace("\\t", "\t")
}

fn timed(kind: Kind, target: String, common: &Common, timing: Option<&Timing>) -> CheckSpec {
    CheckSpec {
        name: common.name.clone(),
        kind: Some(kind),
        target,
        timeout: Some(seconds_or_duration(&common.timeout)),
        warning: timing
            .and_then(|t| t.warning.as_deref())
            .map(seconds_or_duration),
        critical: timing
            .and_then(|t| t.critical.as_deref())
            .map(seconds_or_duration),
        ..Default::default()
    }
}

/// The spec a single-check subcommand describes.
pub fn spec_of(command: &Command) -> Result<CheckSpec, String> {
    Ok(match command {
        Command::Http(a) => {
            let mut headers = BTreeMap::new();
            for h in &a.header {
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| format!("header {h:?}: expected \"Name: value\""))?;
                headers.insert(k.trim().to_string(), v.trim().to_string());
            }
            CheckSpec {
                method: Some(a.method.clone()),
                headers,
                body: a.body.clone(),
                expect_status: Some(a.expect_status.clone()),
                contains: a.contains.clone(),
                regex: a.regex.clone(),
                insecure: a.insecure,
                follow_redirects: a.follow,
                ..timed(Kind::Http, a.url.clone(), &a.common, Some(&a.timing))
            }
        }
        Command::Tcp(a) => CheckSpec {
            send: a.send.as_deref().map(unescape),
            expect: a.expect.as_deref().map(unescape),
            ..timed(Kind::Tcp, a.address.clone(), &a.common, Some(&a.timing))
        },
        Command::Dns(a) => CheckSpec {
            server: a.server.clone(),
            record_type: Some(a.record_type.clone()),
            answers: a.expect.clone(),
            ..timed(Kind::Dns, a.query.clone(), &a.common, Some(&a.timing))
        },
        Command::Exec(a) => CheckSpec {
            args: a.command.clone(),
            ..timed(Kind::Exec, String::new(), &a.common, None)
        },
        Command::File(a) => CheckSpec {
            name: a.name.clone(),
            kind: Some(Kind::File),
            target: a.path.display().to_string(),
            max_age: a.max_age.as_deref().map(seconds_or_duration),
            warn_age: a.warn_age.as_deref().map(seconds_or_duration),
            min_size: a.min_size,
            max_size: a.max_size,
            ..Default::default()
        },
        Command::Run(_) | Command::Agent(_) | Command::Docs(_) => {
            return Err("not a single check".into());
        }
    })
}

/// Prints a result as a Nagios line or JSON.
pub fn print_result(result: &CheckResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string(result).unwrap_or_default());
    } else {
        println!("{}", result.nagios_line());
    }
}

/// clap's message up to its usage block, on one line (`error:` prefix and hints dropped).
fn clap_reason(text: &str) -> String {
    let body: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.trim_start().starts_with("tip:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = body.join(" ");
    joined
        .strip_prefix("error: ")
        .unwrap_or(&joined)
        .to_string()
}

/// Prints the UNKNOWN status line; any reason is folded onto that one line.
fn unknown(reason: &str) -> ExitCode {
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    println!("HEALTHCHECK UNKNOWN - {reason}");
    ExitCode::from(Status::Unknown.exit_code() as u8)
}

fn exit(status: Status) -> ExitCode {
    ExitCode::from(status.exit_code() as u8)
}

/// Entry point: parse, run, exit with the status.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    // Help asked for on a closed stdout: there is nobody to show it to.
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    // Usage to stderr for the human (if stderr is closed, nobody is there to read
                    // it); the one status line to stdout for the monitor.
                    let _ = e.print();
                    return unknown(
                        "missing subcommand: one of http, tcp, dns, exec, file, run, agent",
                    );
                }
                _ => return unknown(&clap_reason(&e.to_string())),
            }
        }
    };
    match &cli.command {
        Command::Run(args) => crate::batch::main(args, cli.json),
        Command::Agent(args) => crate::agent::main(args),
        Command::Docs(docs) => docs.run(<Cli as clap::CommandFactory>::command()),
        single => {
            let spec = match spec_of(single) {
                Ok(s) => s,
                Err(e) => return unknown(&e),
            };
            let check = match spec.build() {
                Ok(c) => c,
                Err(e) => return unknown(&e.0),
            };
            // One check: a single-threaded runtime starts fastest.
            let result = match cairn_cli::block_on(
                cairn_cli::Flavor::CurrentThread,
                check.run(&Context::new()),
            ) {
                Ok(r) => r,
                Err(e) => return unknown(&format!("cannot start the runtime: {e}")),
            };
            print_result(&result, cli.json);
            exit(result.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn clap_errors_fold_to_one_line() {
        let text = "error: the following required arguments were not provided:\n  <URL>\n\nUsage: healthcheck http <URL>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            clap_reason(text),
            "the following required arguments were not provided: <URL>"
        );
    }

    #[test]
    fn nagios_numbers_are_seconds() {
        assert_eq!(seconds_or_duration("1.5"), "1.5s");
        assert_eq!(seconds_or_duration("500ms"), "500ms");
    }
}
