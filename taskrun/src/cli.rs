//! The `taskrun` command line and the wiring behind each subcommand. Usage errors (clap's, and
//! malformed `--resources`/`--attributes`/`--offerd`) exit 2 with one line naming the bad part
//! before anything starts; failures at run time exit 1.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cairn_cli::{CatalogArgs, LogArgs};
use clap::{Args, Parser, Subcommand};

use crate::limits::{CgroupChoice, LimitMode};
use crate::logs::DEFAULT_ROTATE_BYTES;

/// Default offerd address (env `CAIRN_OFFERD`).
pub const DEFAULT_OFFERD: &str = "http://127.0.0.1:5050";

/// Node agent: runs offerd's tasks as processes or Docker containers, reports their status,
/// registers them in the catalog.
#[derive(Parser, Debug)]
#[command(name = "taskrun", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node agent: register with offerd, run the tasks it wants here, report them
    Agent(Box<AgentArgs>),
    /// Run one command as a task in the foreground (same sandbox, env, limits, logs) and exit
    /// with its exit code
    Run(RunArgs),
    /// The per-task supervisor the exec driver starts (internal)
    #[command(hide = true)]
    Wrap(WrapArgs),
    /// Runs a program as another user: a task's COMMAND health check (internal)
    #[command(hide = true)]
    AsUser(AsUserArgs),
    #[command(flatten)]
    Docs(cairn_cli::DocsCommand),
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// offerd HTTP address; several as URL,URL,...: registration, the desired-set poll and
    /// status reports go to the next when one cannot be reached
    #[arg(long, env = "CAIRN_OFFERD", default_value = DEFAULT_OFFERD, value_name = "URL[,URL...]")]
    pub offerd: String,
    /// Node name [default: this host's name]
    #[arg(long)]
    pub node: Option<String>,
    /// Address tasks are reachable on (HOST, catalog address of the node and its services)
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub address: String,
    /// Address of the agent's HTTP API (task list, logs)
    #[arg(long, default_value = "127.0.0.1:5051", value_name = "HOST:PORT")]
    pub http_addr: SocketAddr,
    /// Connection and request bounds of the HTTP API
    #[command(flatten)]
    pub http: cairn_http::HttpArgs<4096, { 64 * 1024 }>,
    /// HTTPS (and client certificates) for the agent's API instead of plain HTTP
    #[command(flatten)]
    pub tls: cairn_http::TlsArgs,
    /// TLS of the connection to offerd (https:// in --offerd)
    #[command(flatten)]
    pub offerd_tls: cairn_cli::OfferdTlsArgs,
    /// Resources offered, e.g. 'cpus:2;mem:2048;disk:10000;ports:[31000-32000]'; what is not
    /// named is detected [default: every CPU, memory minus 512 MB, disk 10000, ports
    /// [31000-32000]]
    #[arg(long, value_name = "RESOURCES")]
    pub resources: Option<String>,
    /// Attributes for constraints, e.g. 'rack:a;zone:z1'
    #[arg(long, value_name = "ATTRIBUTES")]
    pub attributes: Option<String>,
    /// Where task sandboxes and records live
    #[arg(long, default_value = "/var/lib/taskrun", value_name = "DIR")]
    pub work_dir: PathBuf,
    /// Rotate a task's stdout/stderr above this many bytes, as they are written (keeping .1 to
    /// .3; 0: never)
    #[arg(long, default_value_t = DEFAULT_ROTATE_BYTES, value_name = "BYTES")]
    pub log_rotate_bytes: u64,
    /// When a task is no longer wanted, time between taking it out of the catalog and stopping
    /// it, for load balancers to stop sending it requests (e.g. 1s, 500ms; 0 disables)
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = duration)]
    pub kill_drain_delay: Duration,
    /// Run every script check registered for this node, as a Consul agent with
    /// enable_script_checks; by default only the COMMAND health checks of the tasks this agent
    /// runs are (anyone who may register a check would otherwise choose a command it runs)
    #[arg(long)]
    pub enable_script_checks: bool,
    /// Run a task whose app names no `user` as USER (e.g. nobody), as Mesos' default user;
    /// without it such a task runs as taskrun's own user (root: see --allow-root-tasks)
    #[arg(long, value_name = "USER")]
    pub default_user: Option<String>,
    /// Let tasks run as root: an app whose `user` is root (uid 0), and a task naming no user
    /// when there is no --default-user and taskrun is root (a container then runs as its
    /// image says). Without it such a task fails and nothing of it runs
    #[arg(long)]
    pub allow_root_tasks: bool,
    /// How tasks are limited and measured: auto (cgroup v2 when usable, else cgroup v1, else
    /// none), v2 or v1 (the agent does not start when that one cannot be used), off (memory
    /// limited by RLIMIT_DATA, CPU not limited, usage read from /proc)
    #[arg(long, env = "CAIRN_TASKRUN_CGROUPS", value_enum, default_value_t = CgroupChoice::Auto, value_name = "MODE")]
    pub cgroups: CgroupChoice,
    #[command(flatten)]
    pub agent_token: cairn_http::AgentTokenArgs,
    /// Forward every task's stdout and stderr, a syslog message (RFC 5424) a line, to a
    /// collector (rsyslog, Logstash, Graylog): syslog://HOST[:PORT] over UDP,
    /// syslog+tcp://HOST[:PORT] over TCP (octet counting); port 514 by default
    #[arg(long, value_name = "URL")]
    pub log_forward: Option<crate::logship::Target>,
    /// Syslog facility of forwarded lines (stdout at severity info, stderr at err)
    #[arg(
        long,
        default_value = "user",
        value_name = "FACILITY",
        requires = "log_forward"
    )]
    pub log_forward_facility: crate::logship::Facility,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Work dir holding the sandbox [default: a new directory under $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Environment variable for the task (repeatable)
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Memory limit in MB
    #[arg(long, value_name = "MB", value_parser = non_negative)]
    pub mem: Option<f64>,
    /// CPU limit (enforced with cgroup v2 only)
    #[arg(long, value_name = "N", value_parser = non_negative)]
    pub cpus: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL when taskrun is told to stop
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS", value_parser = non_negative)]
    pub grace: f64,
    /// Host port given to the task as PORT0, PORT1, ... (repeatable)
    #[arg(long = "port", value_name = "N")]
    pub ports: Vec<u16>,
    /// Rotate the task's stdout/stderr files above this many bytes, as they are written (keeping
    /// .1 to .3; 0: never)
    #[arg(long, default_value_t = DEFAULT_ROTATE_BYTES, value_name = "BYTES")]
    pub log_rotate_bytes: u64,
    /// The command: one argument runs through `sh -c`, several run directly
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WrapArgs {
    /// Where to record how the program ended
    #[arg(long)]
    pub exit_file: PathBuf,
    /// Copy the program's stdout into this file (rotated), instead of handing it ours
    #[arg(long, requires = "stderr")]
    pub stdout: Option<PathBuf>,
    /// Copy the program's stderr into this file (rotated), instead of handing it ours
    #[arg(long, requires = "stdout")]
    pub stderr: Option<PathBuf>,
    /// Rotate --stdout/--stderr above this many bytes (0: never)
    #[arg(long, default_value_t = DEFAULT_ROTATE_BYTES)]
    pub log_rotate_bytes: u64,
    #[command(flatten)]
    pub ids: IdArgs,
    /// Program and arguments
    #[arg(last = true, required = true)]
    pub argv: Vec<OsString>,
}

/// The ids a program is started with (`taskrun wrap`, `taskrun as-user`).
#[derive(Args, Debug)]
pub struct IdArgs {
    /// Run the program with this uid (and --gid), dropping taskrun's
    #[arg(long, requires = "gid")]
    pub uid: Option<u32>,
    /// Primary group of the program
    #[arg(long, requires = "uid")]
    pub gid: Option<u32>,
    /// Supplementary groups of the program (none when absent)
    #[arg(long, value_delimiter = ',', requires = "uid")]
    pub groups: Vec<u32>,
}

impl IdArgs {
    pub fn credentials(&self) -> Option<crate::user::Credentials> {
        Some(crate::user::Credentials {
            uid: self.uid?,
            gid: self.gid?,
            groups: self.groups.clone(),
        })
    }
}

#[derive(Args, Debug)]
pub struct AsUserArgs {
    #[command(flatten)]
    pub ids: IdArgs,
    /// HOME, USER and LOGNAME for the program: the user's name
    #[arg(long, requires = "home")]
    pub user: Option<String>,
    /// The user's home directory
    #[arg(long, requires = "user")]
    pub home: Option<String>,
    /// Program and arguments
    #[arg(last = true, required = true)]
    pub argv: Vec<OsString>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    cairn_wire::parse_go_duration(s).map_err(|e| e.to_string())
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a non-negative number")),
    }
}

/// Runs the command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Wrap(args) => {
            let logs = match (args.stdout, args.stderr) {
                (Some(stdout), Some(stderr)) => Some(crate::wrap::LogFiles {
                    stdout,
                    stderr,
                    rotate_bytes: args.log_rotate_bytes,
                }),
                _ => None,
            };
            let credentials = args.ids.credentials();
            crate::wrap::run(
                &args.exit_file,
                logs.as_ref(),
                credentials.as_ref(),
                &args.argv,
            )
        }
        Command::AsUser(args) => {
            crate::checks::as_user(args.ids.credentials(), args.user.zip(args.home), &args.argv)
        }
        Command::Agent(args) => {
            cairn_cli::init_logging(&cli.log);
            agent(*args, &cli.catalog)
        }
        Command::Run(args) => {
            cairn_cli::init_logging_with(&cli.log, "warn");
            run_one(args)
        }
        Command::Docs(docs) => docs.run(<Cli as clap::CommandFactory>::command()),
    }
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("taskrun: error: {message}");
    ExitCode::from(2)
}

fn agent(args: AgentArgs, catalog: &CatalogArgs) -> ExitCode {
    let defaults =
        crate::node::default_resources(crate::node::cpu_count(), crate::node::total_memory_mb());
    let resources = match &args.resources {
        None => defaults,
        Some(s) => match crate::node::resources_with_defaults(s, &defaults) {
            Ok(r) => r,
            Err(e) => return usage(format_args!("--resources: {e}")),
        },
    };
    let attributes = match &args.attributes {
        None => Default::default(),
        Some(s) => match cairn_marathon::parse_attributes(s) {
            Ok(a) => a,
            Err(e) => return usage(format_args!("--attributes: {e}")),
        },
    };
    let node = args
        .node
        .clone()
        .unwrap_or_else(crate::node::hostname)
        .trim()
        .to_string();
    if node.is_empty() {
        return usage("--node: must not be empty");
    }
    if args.address.trim().is_empty() {
        return usage("--address: must not be empty");
    }
    // Without settings of its own, the connection to offerd takes the catalog's CA and
    // client certificate (one per host is the usual layout). A list of offerds fails over on
    // connection errors, as the catalog's does.
    let offerd = match cairn_client::CatalogClient::with_tls(
        &args.offerd,
        args.agent_token.agent_token.clone(),
        &args.offerd_tls.tls(&catalog.tls()),
    ) {
        Ok(c) => c,
        Err(cairn_client::ClientError::InvalidUrl { url, reason }) => {
            return usage(format_args!("--offerd: invalid URL {url:?}: {reason}"));
        }
        Err(e) => return usage(format_args!("--offerd: {e}")),
    };
    let catalog = match catalog.client() {
        Ok(c) => c.with_timeout(Duration::from_secs(10)),
        Err(e) => return usage(format_args!("--catalog: {e}")),
    };
    let users = crate::user::UserPolicy {
        default_user: args
            .default_user
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        allow_root: args.allow_root_tasks,
        own_uid: crate::user::own_ids().0,
    };
    match users.check_default() {
        Ok(()) => {}
        // The user database may answer later (a directory server starting): tasks will say.
        Err(e @ crate::user::UserError::Lookup { .. }) => {
            tracing::warn!(error = %e, "cannot check --default-user now");
        }
        Err(e) => return usage(format_args!("--default-user: {e}")),
    }
    let http_tls = match args.tls.load() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("taskrun: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The cgroup v1 level is named after the work dir as the agent will see it (absolute).
    let work_dir = std::path::absolute(&args.work_dir).unwrap_or_else(|_| args.work_dir.clone());
    let limit_mode = match LimitMode::detect(args.cgroups, &work_dir) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("taskrun: error: --cgroups {}: {e}", args.cgroups);
            return ExitCode::FAILURE;
        }
    };
    let cfg = crate::agent::AgentConfig {
        node,
        address: args.address.trim().to_string(),
        http_addr: args.http_addr,
        http_limits: args.http.limits(crate::http::DRAIN),
        http_tls,
        resources,
        attributes,
        work_dir: args.work_dir.clone(),
        offerd,
        catalog,
        wrapper: PathBuf::from("/proc/self/exe"),
        limit_mode,
        log_rotate_bytes: args.log_rotate_bytes,
        kill_drain: args.kill_drain_delay,
        enable_script_checks: args.enable_script_checks,
        users,
        api_token: args.agent_token.secret(),
        log_forward: args
            .log_forward
            .clone()
            .map(|target| crate::logship::ForwardConfig {
                target,
                facility: args.log_forward_facility,
            }),
    };
    cairn_cli::run_main("taskrun", cairn_cli::Flavor::MultiThread(None), async {
        crate::agent::run(cfg, cairn_cli::shutdown_signal())
            .await
            .context("taskrun agent")?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn run_one(args: RunArgs) -> ExitCode {
    let opts = crate::run::RunOptions {
        work_dir: args.work_dir,
        env: args.env,
        mem_mb: args.mem,
        cpus: args.cpus,
        grace_seconds: args.grace,
        ports: args.ports,
        command: args.command,
        log_rotate_bytes: args.log_rotate_bytes,
    };
    match crate::run::run(opts).context("taskrun run") {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("taskrun: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_agent_and_run_lines() {
        let cli = Cli::try_parse_from([
            "taskrun",
            "agent",
            "--offerd",
            "http://o:5050",
            "--resources",
            "cpus:2",
        ])
        .unwrap();
        let Command::Agent(a) = cli.command else {
            panic!("not agent")
        };
        assert_eq!(a.http_addr.to_string(), "127.0.0.1:5051");
        assert_eq!(a.work_dir, PathBuf::from("/var/lib/taskrun"));
        assert_eq!(a.kill_drain_delay, crate::drain::DEFAULT_DELAY);
        let cli = Cli::try_parse_from(["taskrun", "agent", "--kill-drain-delay", "0"]).unwrap();
        let Command::Agent(a) = cli.command else {
            panic!("not agent")
        };
        assert_eq!(a.kill_drain_delay, Duration::ZERO);
        let cli = Cli::try_parse_from(["taskrun", "agent", "--kill-drain-delay", "250ms"]).unwrap();
        let Command::Agent(a) = cli.command else {
            panic!("not agent")
        };
        assert_eq!(a.kill_drain_delay, Duration::from_millis(250));
        assert!(a.log_forward.is_none());
        let cli = Cli::try_parse_from([
            "taskrun",
            "agent",
            "--log-forward",
            "syslog+tcp://logs:6514",
            "--log-forward-facility",
            "local3",
        ])
        .unwrap();
        let Command::Agent(f) = cli.command else {
            panic!("not agent")
        };
        let target = f.log_forward.as_ref().expect("--log-forward");
        assert_eq!((target.host.as_str(), target.port), ("logs", 6514));
        assert_eq!(f.log_forward_facility, "local3".parse().unwrap());
        assert!(Cli::try_parse_from(["taskrun", "agent", "--log-forward", "logs:514"]).is_err());
        assert!(
            Cli::try_parse_from(["taskrun", "agent", "--log-forward-facility", "user"]).is_err(),
            "a facility without --log-forward"
        );
        assert!(Cli::try_parse_from(["taskrun", "agent", "--kill-drain-delay", "soon"]).is_err());
        assert!(a.default_user.is_none() && !a.allow_root_tasks);
        assert_eq!(a.cgroups, CgroupChoice::Auto);
        for (value, want) in [
            ("v1", CgroupChoice::V1),
            ("v2", CgroupChoice::V2),
            ("off", CgroupChoice::Off),
        ] {
            let cli = Cli::try_parse_from(["taskrun", "agent", "--cgroups", value]).unwrap();
            let Command::Agent(a) = cli.command else {
                panic!("not agent")
            };
            assert_eq!(a.cgroups, want);
        }
        assert!(Cli::try_parse_from(["taskrun", "agent", "--cgroups", "v3"]).is_err());
        let cli = Cli::try_parse_from([
            "taskrun",
            "agent",
            "--default-user",
            "nobody",
            "--allow-root-tasks",
        ])
        .unwrap();
        let Command::Agent(a) = cli.command else {
            panic!("not agent")
        };
        assert_eq!(a.default_user.as_deref(), Some("nobody"));
        assert!(a.allow_root_tasks);
        let cli = Cli::try_parse_from([
            "taskrun",
            "wrap",
            "--exit-file",
            "/x",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "--groups",
            "65534,100",
            "--",
            "true",
        ])
        .unwrap();
        let Command::Wrap(w) = cli.command else {
            panic!("not wrap")
        };
        let c = w.ids.credentials().unwrap();
        assert_eq!((c.uid, c.gid, c.groups), (65534, 65534, vec![65534, 100]));
        assert!(
            Cli::try_parse_from([
                "taskrun",
                "wrap",
                "--exit-file",
                "/x",
                "--uid",
                "1",
                "--",
                "x"
            ])
            .is_err(),
            "a uid without its gid"
        );
        let cli = Cli::try_parse_from([
            "taskrun", "run", "--env", "A=b=c", "--port", "8080", "--mem", "64", "--", "echo", "hi",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.env, [("A".to_string(), "b=c".to_string())]);
        assert_eq!(r.command, ["echo", "hi"]);
        assert_eq!(r.grace, 3.0);
        assert!(Cli::try_parse_from(["taskrun", "run", "--env", "novalue", "--", "x"]).is_err());
        assert!(Cli::try_parse_from(["taskrun", "run", "--mem", "-1", "--", "x"]).is_err());
        assert!(Cli::try_parse_from(["taskrun", "run"]).is_err());
    }
}
