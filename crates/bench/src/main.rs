//! `cairn-bench`: the load generator behind `scripts/bench/`. It owns the command line and the
//! runtime; each subcommand lives in its own module. Throughput runs against one server use
//! `wrk`; this tool does what `wrk` cannot, such as parking thousands of blocking queries and
//! timing their wake-up, or spreading one load over several replicas (`kv-load`).

mod agents;
mod common;
mod failover;
mod http;
mod keys;
mod kvload;
mod place;
mod scale;
mod ui;
mod wake;
mod watchers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load generator for cairn's benchmarks (loopback targets only).
#[derive(Parser, Debug)]
#[command(name = "cairn-bench", version, about)]
struct Cli {
    /// Runtime worker threads (few, so the server under test keeps the CPU)
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Park many blocking queries on one KV key, write it, time every wake-up
    Watchers(watchers::WatchersArgs),
    /// Run offerd's placement alone on simulated agents and report placements per second
    Place(place::PlaceArgs),
    /// KV PUT or GET load over connections spread over several servers: catalogd replicas or
    /// etcd's JSON gateway (same client, same concurrency)
    KvLoad(kvload::KvLoadArgs),
    /// Watchers on some catalogd replicas woken by writes through another: time to each answer
    Wake(wake::WakeArgs),
    /// After a catalogd replica is killed: time to the first accepted write and to a new leader
    Failover(failover::FailoverArgs),
    /// Park many blocking queries, each on its own KV key; write a few keys, time each wake-up
    WatchKeys(keys::WatchKeysArgs),
    /// Register a fleet-sized catalog: services x instances over nodes (scripts/bench/scale)
    CatalogLoad(scale::LoadArgs),
    /// Flip instances' checks at a rate; time each until dnsbridge and HAProxy show it
    Changes(scale::ChangesArgs),
    /// Simulated taskrun agents on one offerd: POST apps, time them to all running, scale
    Agents(agents::AgentsArgs),
    /// offerd's web UI in headless chromium: first render of the apps page, kill-to-screen latency
    Ui(ui::UiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Place(args) = cli.command {
        return match place::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cairn-bench: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Parked tasks may still hold sockets; async tasks are dropped at the end without a wait.
    cairn_cli::run_main(
        "cairn-bench",
        cairn_cli::Flavor::MultiThread(Some(cli.threads)),
        async {
            match cli.command {
                Command::Watchers(args) => watchers::run(args).await,
                Command::KvLoad(args) => kvload::run(args).await,
                Command::Wake(args) => wake::run(args).await,
                Command::Failover(args) => failover::run(args).await,
                Command::Agents(args) => agents::run(args).await,
                Command::Ui(args) => ui::run(args).await,
                Command::WatchKeys(args) => keys::run(args).await,
                Command::CatalogLoad(args) => scale::run_load(args).await,
                Command::Changes(args) => scale::run_changes(args).await,
                Command::Place(_) => Ok(()),
            }
            .map(|()| ExitCode::SUCCESS)
        },
    )
}
