//! `healthcheck run FILE|-`: a batch of checks (a JSON array of check specs, or one spec per
//! line) run concurrently in one process with a bound, one JSON line per result (or a table),
//! exit code the worst status. `--forever` repeats each check on its own interval.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cairn_checks::{Check, CheckResult, CheckSpec, Context, Status, run_batch};
use clap::Args;
use futures::StreamExt;
use serde::Serialize;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// JSON file of checks (array or one object per line); - reads stdin
    pub file: PathBuf,
    /// Most checks in flight at once
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Print a table when all are done instead of JSON lines as they finish
    #[arg(long)]
    pub table: bool,
    /// Keep running: each check again after its `interval` (default 10s), until SIGTERM
    #[arg(long)]
    pub forever: bool,
}

/// One output line.
#[derive(Serialize)]
struct Line<'a> {
    index: usize,
    name: &'a str,
    status: Status,
    exit_code: i32,
    message: &'a str,
    perfdata: Vec<String>,
    duration: f64,
}

fn line(index: usize, r: &CheckResult) -> String {
    serde_json::to_string(&Line {
        index,
        name: &r.label,
        status: r.status,
        exit_code: r.status.exit_code(),
        message: &r.message,
        perfdata: r.perfdata.iter().map(ToString::to_string).collect(),
        duration: r.duration,
    })
    .unwrap_or_default()
}

/// Reads specs: a JSON array, or JSON objects one per line.
pub fn parse_specs(text: &str) -> Result<Vec<CheckSpec>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).map_err(|e| format!("checks file: {e}"));
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("checks file line {}: {e}", i + 1))
        })
        .collect()
}

fn build_all(specs: &[CheckSpec]) -> Vec<Result<Check, CheckResult>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.build().map_err(|e| {
                let label = s.name.clone().unwrap_or_else(|| format!("check {i}"));
                CheckResult::new(&label, Status::Unknown, format!("invalid check: {e}"))
            })
        })
        .collect()
}

pub fn main(args: &RunArgs, _json: bool) -> ExitCode {
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            println!("HEALTHCHECK UNKNOWN - reading stdin: {e}");
            return ExitCode::from(3);
        }
        s
    } else {
        match std::fs::read_to_string(&args.file) {
            Ok(s) => s,
            Err(e) => {
                println!("HEALTHCHECK UNKNOWN - {}: {e}", args.file.display());
                return ExitCode::from(3);
            }
        }
    };
    let specs = match parse_specs(&text) {
        Ok(s) if s.is_empty() => {
            println!("HEALTHCHECK UNKNOWN - {}: no checks", args.file.display());
            return ExitCode::from(3);
        }
        Ok(s) => s,
        Err(e) => {
            println!("HEALTHCHECK UNKNOWN - {e}");
            return ExitCode::from(3);
        }
    };
    let flavor = cairn_cli::Flavor::MultiThread(None);
    let worst = if args.forever {
        cairn_cli::block_on(flavor, forever(specs, args.concurrency))
    } else {
        cairn_cli::block_on(flavor, once(specs, args))
    };
    match worst {
        Ok(worst) => ExitCode::from(worst.exit_code() as u8),
        Err(e) => {
            println!("HEALTHCHECK UNKNOWN - cannot start the runtime: {e}");
            ExitCode::from(3)
        }
    }
}

async fn once(specs: Vec<CheckSpec>, args: &RunArgs) -> Status {
    let built = build_all(&specs);
    let mut results: Vec<Option<CheckResult>> = vec![None; built.len()];
    let mut runnable = Vec::new();
    let mut positions = Vec::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Writing stops at the first error (a closed stdout), which is reported once at the end.
    let mut printed: std::io::Result<()> = Ok(());
    for (i, b) in built.into_iter().enumerate() {
        match b {
            Ok(c) => {
                positions.push(i);
                runnable.push(c);
            }
            Err(r) => {
                if !args.table {
                    printed = printed.and_then(|()| writeln!(out, "{}", line(i, &r)));
                }
                results[i] = Some(r);
            }
        }
    }
    let mut stream = run_batch(runnable, Context::new(), args.concurrency);
    while let Some((j, r)) = stream.next().await {
        let i = positions[j];
        if !args.table {
            printed = printed.and_then(|()| writeln!(out, "{}", line(i, &r)));
        }
        results[i] = Some(r);
    }
    let results: Vec<CheckResult> = results.into_iter().flatten().collect();
    if args.table {
        let width = results
            .iter()
            .map(|r| r.label.len())
            .max()
            .unwrap_or(4)
            .max(4);
        printed = printed.and_then(|()| {
            writeln!(
                out,
                "{:<width$}  {:<8}  {:>8}  MESSAGE",
                "NAME", "STATUS", "SECONDS"
            )
        });
        for r in &results {
            printed = printed.and_then(|()| {
                writeln!(
                    out,
                    "{:<width$}  {:<8}  {:>8.3}  {}",
                    r.label,
                    r.status.as_str(),
                    r.duration,
                    r.message
                )
            });
        }
    }
    if let Err(e) = printed.and_then(|()| out.flush()) {
        // The exit status still gives the worst result; say why its lines are missing.
        eprintln!("healthcheck: writing the results to stdout failed: {e}");
    }
    results.iter().fold(Status::Ok, |w, r| w.worst(r.status))
}

async fn forever(specs: Vec<CheckSpec>, concurrency: usize) -> Status {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let ctx = Context::new();
    let mut worst = Status::Ok;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (spec, built)) in specs.iter().zip(build_all(&specs)).enumerate() {
        let check = match built {
            Ok(c) => c,
            Err(r) => {
                println!("{}", line(i, &r));
                worst = worst.worst(r.status);
                continue;
            }
        };
        let every = spec.interval().unwrap_or(Duration::from_secs(10));
        let (permits, ctx) = (permits.clone(), ctx.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Ok(_permit) = permits.acquire().await else {
                    return;
                };
                let r = check.run(&ctx).await;
                println!("{}", line(i, &r));
            }
        });
    }
    cairn_cli::shutdown_signal().await;
    tasks.shutdown().await;
    worst
}
