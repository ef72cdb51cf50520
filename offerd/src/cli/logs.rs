//! `offerd logs APP [--task ID] [--follow] [--since DURATION] [--stderr]`: the output of every
//! task of an app, whichever agent runs it, read through offerd (`GET /v1/tasks/{id}/logs`, so
//! offerd's access decides), each line prefixed with its task as `kubectl logs --prefix` does:
//! `[<task id>] <line>`.
//!
//! - The tasks' logs are read at once (at most `--max-log-requests` at a time), each split
//!   into complete lines that one printer writes whole: lines of different tasks never mix
//!   within a line. A line longer than [`MAX_LINE`] is printed in pieces, each prefixed; the
//!   last line of a log without a newline gets one.
//! - stdout by default, `--stderr` for stderr. `--since 5m` asks for what was written in the
//!   last five minutes (to the second, by the agents' time index: see taskrun's `logs`); a task
//!   started by an older taskrun has no index, which is said on stderr, and its whole log
//!   follows.
//! - Without `--follow`: what the logs hold now, then exit 0 (1 when a log could not be read:
//!   the others are printed first). With `--follow`: each log as it grows, the app's tasks
//!   listed again every [`POLL`] so tasks started later are followed too, until SIGINT or
//!   SIGTERM (exit 0) or the app is deleted (exit 0). A followed log that broke (offerd or the
//!   agent restarting) is read again from the second it broke when its task is still listed
//!   (lines of that second may show twice).
//! - `--task ID` reads that task only; given alone (no APP), it names any task offerd knows.
//! - `--job ID` reads a Metronome job's run instead of an app's tasks: its newest run (by
//!   creation: an active one, else the last finished), or `--run RUN`. A job id is never taken
//!   for APP (`backup` is the app `/backup`): the flag says which is meant. The run's tasks
//!   are listed by `GET /v1/jobs/{id}/runs/{run}` (an active run's, or a finished one's from
//!   the history) and read like an app's; `--follow` follows the run until it is over, its
//!   retried tasks (`ON_FAILURE`) too. A finished run's log is read while offerd still knows
//!   its tasks (the last 1000 ended tasks, since it started) and their agent keeps their
//!   sandbox (taskrun keeps the 50 newest ended tasks and any ended in the last hour); past
//!   that the read is offerd's 404, said with exit 1.
//! - Exit codes: 1 for an unknown app or task (offerd's message) and failed reads, 2 for usage
//!   errors. Output that can no longer be written (`| head` closed the pipe) ends the command
//!   quietly with 0, as ripgrep does.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::client::{ClientAuth, OfferdClient, answer_status, app_path};
use super::jobs::job_path;

/// How often a followed app's tasks are listed again.
pub const POLL: Duration = Duration::from_secs(1);
/// Longest line printed in one piece.
pub const MAX_LINE: usize = 64 * 1024;
/// Lines waiting for the printer (each at most [`MAX_LINE`] and its prefix).
const QUEUE: usize = 256;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// App id (e.g. /shop/web); may be left out with --task or --job
    #[arg(required_unless_present_any = ["task", "job"], conflicts_with = "job", value_name = "APP")]
    pub app: Option<String>,
    /// Only this task's output
    #[arg(long, value_name = "ID", value_parser = task_id)]
    pub task: Option<String>,
    /// A Metronome job's run instead of an app (a job id is never read as APP): its newest
    /// run, active or finished, or --run's
    #[arg(long, value_name = "JOB", value_parser = super::jobs::job_id)]
    pub job: Option<String>,
    /// With --job: this run (ids in `offerd jobs show` and `offerd jobs history`)
    #[arg(
        long,
        value_name = "RUN",
        requires = "job",
        conflicts_with = "app",
        value_parser = super::jobs::run_id
    )]
    pub run: Option<String>,
    /// Keep printing what is written, and the output of tasks that start later, until
    /// interrupted or the app is deleted (a job's run: until it is over)
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only output written in the last DURATION (e.g. 30s, 5m, 1h; to the second)
    #[arg(long, value_name = "DURATION", value_parser = since)]
    pub since: Option<Duration>,
    /// Print the tasks' stderr instead of their stdout
    #[arg(long)]
    pub stderr: bool,
    /// Most logs read at once; with --follow, an app with more tasks is refused
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_log_requests: u32,
    #[command(flatten)]
    pub auth: ClientAuth,
}

fn since(s: &str) -> Result<Duration, String> {
    cairn_wire::parse_go_duration(s).map_err(|e| e.to_string())
}

/// A task id as offerd makes them (letters, digits, `.`, `_`, `-`): anything else cannot name
/// a task, and would change the request's path.
fn task_id(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 256
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!("{s:?} is not a task id"));
    }
    Ok(s.to_string())
}

/// What the readers tell the printer.
enum Event {
    /// A whole line, prefixed and ending in a newline.
    Line(Vec<u8>),
    /// A remark for stderr.
    Note(String),
    /// A task's log ended: read to its end, or broken (why, and the second it broke).
    Ended {
        id: String,
        broken: Option<(String, u64)>,
    },
}

/// Unix seconds now.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where one task's log stands.
#[derive(Debug, PartialEq)]
enum Progress {
    Reading,
    Done,
    /// Broken at this second: read again from it while the task is listed.
    Broken(u64),
}

/// Splits a log into prefixed lines as its chunks come.
struct Lines {
    prefix: Vec<u8>,
    partial: Vec<u8>,
}

impl Lines {
    fn new(id: &str) -> Lines {
        Lines {
            prefix: format!("[{id}] ").into_bytes(),
            partial: Vec::new(),
        }
    }

    fn line(&self, body: &[u8]) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.prefix.len() + body.len() + 1);
        line.extend_from_slice(&self.prefix);
        line.extend_from_slice(body);
        line.push(b'\n');
        line
    }

    /// The whole lines `chunk` completes (pieces of [`MAX_LINE`] for longer ones).
    fn push(&mut self, mut chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let room = MAX_LINE - self.partial.len();
            match chunk.iter().take(room).position(|b| *b == b'\n') {
                Some(i) => {
                    self.partial.extend_from_slice(&chunk[..i]);
                    out.push(self.line(&self.partial));
                    self.partial.clear();
                    chunk = &chunk[i + 1..];
                }
                None if chunk.len() >= room => {
                    self.partial.extend_from_slice(&chunk[..room]);
                    out.push(self.line(&self.partial));
                    self.partial.clear();
                    chunk = &chunk[room..];
                }
                None => {
                    self.partial.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
        }
        out
    }

    /// What is left at the end of the log, as a last line.
    fn finish(&mut self) -> Option<Vec<u8>> {
        if self.partial.is_empty() {
            return None;
        }
        let line = self.line(&self.partial);
        self.partial.clear();
        Some(line)
    }
}

/// `/v1/tasks/{id}/logs` (ids are checked to need no escaping: see [`task_id`]).
fn logs_path(id: &str) -> String {
    format!("/v1/tasks/{id}/logs")
}

/// Reads one task's log into the printer's queue; `Ok` once it ended (or the printer left).
async fn read_log(
    client: &OfferdClient,
    id: &str,
    query: &[(&'static str, String)],
    tx: &mpsc::Sender<Event>,
) -> anyhow::Result<()> {
    let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut resp = client.stream(&logs_path(id), &q).await?;
    let not_indexed = resp
        .headers()
        .get("x-taskrun-since")
        .is_some_and(|v| v == "not-indexed");
    if not_indexed {
        let note = format!(
            "offerd logs: task {id} was started by an older taskrun, whose log has no times: --since not applied, its whole log follows"
        );
        if tx.send(Event::Note(note)).await.is_err() {
            return Ok(());
        }
    }
    let mut lines = Lines::new(id);
    while let Some(chunk) = resp.chunk().await.context("reading the log")? {
        for line in lines.push(&chunk) {
            if tx.send(Event::Line(line)).await.is_err() {
                return Ok(());
            }
        }
    }
    if let Some(line) = lines.finish() {
        let _ = tx.send(Event::Line(line)).await;
    }
    Ok(())
}

/// The ids of `app`'s tasks; `None` when the app does not exist (any more).
async fn app_tasks(client: &OfferdClient, app: &str) -> anyhow::Result<Option<Vec<String>>> {
    let path = format!("{}/tasks", app_path(app));
    match client.get(&path, &[]).await {
        Ok(v) => Ok(Some(task_ids(&v))),
        Err(e) if e.to_string().contains(": 404 ") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The task ids of a `{"tasks": [...]}` answer.
fn task_ids(v: &Value) -> Vec<String> {
    v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

/// A job's run as the logs need it.
#[derive(Debug, PartialEq)]
struct RunTasks {
    id: String,
    status: String,
    tasks: Vec<String>,
}

impl RunTasks {
    /// From `GET /v1/jobs/{id}/runs/{run}` (an active run, or a finished one).
    fn of(run_id: &str, v: &Value) -> RunTasks {
        RunTasks {
            id: run_id.to_string(),
            status: v["status"].as_str().unwrap_or_default().to_string(),
            tasks: task_ids(v),
        }
    }

    fn over(&self) -> bool {
        matches!(self.status.as_str(), "SUCCESS" | "FAILED")
    }
}

/// The newest run of a job read with `?embed=activeRuns&embed=history`: the one created
/// last, an active one before a finished one created at the same time.
fn newest_run(job: &Value) -> Option<String> {
    let created = |r: &Value| {
        r["createdAt"]
            .as_str()
            .and_then(cairn_metronome::parse_time)
            .unwrap_or(0)
    };
    let active = job["activeRuns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (created(r), 1, r));
    let finished = ["successfulFinishedRuns", "failedFinishedRuns"]
        .into_iter()
        .flat_map(|k| job["history"][k].as_array().into_iter().flatten())
        .map(|r| (created(r), 0, r));
    active
        .chain(finished)
        .max_by_key(|(at, active, _)| (*at, *active))
        .and_then(|(_, _, r)| r["id"].as_str().map(str::to_string))
}

/// The run `--job` (and `--run`) name, with its tasks. An unknown job or run is offerd's 404.
async fn job_run(client: &OfferdClient, job: &str, run: Option<&str>) -> anyhow::Result<RunTasks> {
    let run = match run {
        Some(r) => {
            client.get(&job_path(job), &[]).await?;
            r.to_string()
        }
        None => {
            let v = client
                .get(
                    &job_path(job),
                    &[("embed", "activeRuns"), ("embed", "history")],
                )
                .await?;
            newest_run(&v).with_context(|| {
                format!(
                    "job {job} has no run, active or in its history (start one: offerd jobs run {job})"
                )
            })?
        }
    };
    let v = client
        .get(&format!("{}/runs/{run}", job_path(job)), &[])
        .await?;
    Ok(RunTasks::of(&run, &v))
}

/// What a followed read lists again every [`POLL`] for tasks that start later.
#[derive(Debug)]
enum Watched {
    App(String),
    Run { job: String, run: String },
}

/// The printer's side: which logs are read, and starting more.
struct Readers {
    client: Arc<OfferdClient>,
    query: Vec<(&'static str, String)>,
    tx: mpsc::Sender<Event>,
    slots: Arc<Semaphore>,
    tasks: BTreeMap<String, Progress>,
    /// Reads failed without --follow (the exit code).
    failed: usize,
}

impl Readers {
    /// Starts reading `id`'s log (from `since` instead of the command's, after a break).
    fn start(&mut self, id: &str, since: Option<u64>) {
        let mut query = self.query.clone();
        if let Some(s) = since {
            query.retain(|(k, _)| *k != "since");
            query.push(("since", s.to_string()));
        }
        self.tasks.insert(id.to_string(), Progress::Reading);
        let (client, tx, slots, id) = (
            self.client.clone(),
            self.tx.clone(),
            self.slots.clone(),
            id.to_string(),
        );
        tokio::spawn(async move {
            // Closed only if the printer is gone.
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let broken = read_log(&client, &id, &query, &tx)
                .await
                .err()
                .map(|e| (format!("{e:#}"), now_secs()));
            let _ = tx.send(Event::Ended { id, broken }).await;
        });
    }

    /// Follows the tasks listed that are not followed yet (and the broken ones again).
    fn follow_listed(&mut self, ids: &[String], limit: usize) -> Option<String> {
        let mut refused = None;
        for id in ids {
            let again = match self.tasks.get(id) {
                None => None,
                Some(Progress::Broken(at)) => Some(*at),
                Some(_) => continue,
            };
            let reading = self
                .tasks
                .values()
                .filter(|p| **p == Progress::Reading)
                .count();
            if reading >= limit {
                refused = Some(id.clone());
                continue;
            }
            self.start(id, again);
        }
        refused
    }

    fn reading(&self) -> bool {
        self.tasks.values().any(|p| *p == Progress::Reading)
    }
}

/// Writes a batch of lines; `Ok(false)` when stdout is closed (the end, quietly).
fn print(out: &mut impl std::io::Write, line: &[u8], flush: bool) -> anyhow::Result<bool> {
    let written = out
        .write_all(line)
        .and_then(|()| if flush { out.flush() } else { Ok(()) });
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

pub async fn logs(client: OfferdClient, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = Arc::new(client);
    let limit = args.max_log_requests as usize;
    let mut query = vec![(
        "stream",
        if args.stderr { "stderr" } else { "stdout" }.to_string(),
    )];
    if args.follow {
        query.push(("follow", "true".to_string()));
    }
    if let Some(d) = args.since {
        query.push(("since", now_secs().saturating_sub(d.as_secs()).to_string()));
    }
    // The tasks to read: the app's (an unknown app is an error), a job run's, one of them,
    // or one task; and what a follow lists again.
    let mut watched = None;
    let ids = match (&args.app, &args.task) {
        (None, task) if args.job.is_some() => {
            let job = args.job.clone().unwrap_or_default();
            let run = job_run(&client, &job, args.run.as_deref()).await?;
            let ids = match task {
                Some(t) if !run.tasks.contains(t) => anyhow::bail!(
                    "task {t} is not a task of run {} of job {job} (see `offerd jobs show {job}`)",
                    run.id
                ),
                Some(t) => vec![t.clone()],
                None => run.tasks.clone(),
            };
            if ids.is_empty() && !args.follow {
                eprintln!(
                    "offerd logs: run {} of job {job} has no task yet ({})",
                    run.id, run.status
                );
            }
            if args.follow && task.is_none() && !run.over() {
                watched = Some(Watched::Run { job, run: run.id });
            }
            ids
        }
        (Some(app), task) => {
            // An unknown app is offerd's 404 and message (its tasks' path would name the app
            // `<app>/tasks` in it).
            client.get(&app_path(app), &[]).await?;
            let listed = client.get(&format!("{}/tasks", app_path(app)), &[]).await?;
            let ids = task_ids(&listed);
            match task {
                Some(t) if !ids.contains(t) => {
                    anyhow::bail!("task {t} is not a task of {app} (see `offerd tasks {app}`)")
                }
                Some(t) => vec![t.clone()],
                None => ids,
            }
        }
        (None, Some(t)) => vec![t.clone()],
        (None, None) => unreachable!("clap requires APP, --task or --job"),
    };
    if args.follow && ids.len() > limit {
        anyhow::bail!(
            "{} tasks to follow, more than --max-log-requests {limit}: name one with --task, or raise it",
            ids.len()
        );
    }
    // An app followed as a whole is listed again (a job's run: until it is over); a named
    // task is followed alone.
    if let Some(app) = args
        .app
        .clone()
        .filter(|_| args.follow && args.task.is_none())
    {
        watched = Some(Watched::App(app));
    }

    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            cairn_cli::shutdown_signal().await;
            stop.cancel();
        });
    }
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let mut readers = Readers {
        client: client.clone(),
        query,
        tx,
        slots: Arc::new(Semaphore::new(limit)),
        tasks: BTreeMap::new(),
        failed: 0,
    };
    for id in &ids {
        readers.start(id, None);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused_warned = false;
    loop {
        if !args.follow && !readers.reading() {
            break;
        }
        if args.follow && watched.is_none() && !readers.reading() {
            // A named task (or a run that is over) followed to its end.
            break;
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(Event::Line(line)) => {
                    if !print(&mut out, &line, rx.is_empty())? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Some(Event::Note(note)) => eprintln!("{note}"),
                Some(Event::Ended { id, broken: None }) => {
                    readers.tasks.insert(id, Progress::Done);
                }
                Some(Event::Ended { id, broken: Some((why, at)) }) => {
                    eprintln!("offerd logs: task {id}: {why}");
                    if args.follow {
                        readers.tasks.insert(id, Progress::Broken(at));
                    } else {
                        readers.failed += 1;
                        readers.tasks.insert(id, Progress::Done);
                    }
                }
                // The readers hold senders for as long as they run.
                None => break,
            },
            _ = poll.tick(), if watched.is_some() => {
                let app = match &watched {
                    None => continue,
                    Some(Watched::App(app)) => app,
                    Some(Watched::Run { job, run }) => {
                        let path = format!("{}/runs/{run}", job_path(job));
                        match client.get(&path, &[]).await {
                            Ok(v) => {
                                let r = RunTasks::of(run, &v);
                                if let Some(id) = readers.follow_listed(&r.tasks, limit)
                                    && !refused_warned
                                {
                                    refused_warned = true;
                                    eprintln!("offerd logs: not following task {id} (and any more): --max-log-requests {limit} are followed");
                                }
                                if r.over() {
                                    // Its tasks' logs end by themselves.
                                    watched = None;
                                }
                            }
                            Err(e) if answer_status(&e) == Some(404) => {
                                eprintln!("offerd logs: run {run} of job {job} is gone: {e:#}");
                                break;
                            }
                            Err(e) => eprintln!("offerd logs: listing the tasks of run {run} of job {job}: {e:#}"),
                        }
                        continue;
                    }
                };
                match app_tasks(&client, app).await {
                    Ok(Some(ids)) => {
                        if let Some(id) = readers.follow_listed(&ids, limit)
                            && !refused_warned
                        {
                            refused_warned = true;
                            eprintln!("offerd logs: not following task {id} (and any more): --max-log-requests {limit} are followed");
                        }
                    }
                    Ok(None) => {
                        eprintln!("offerd logs: app {app} was deleted");
                        break;
                    }
                    Err(e) => eprintln!("offerd logs: listing the tasks of {app}: {e:#}"),
                }
            }
        }
    }
    // Lines already queued are printed before leaving (no more than the queue holds: the
    // readers may still be adding).
    for _ in 0..QUEUE {
        let Ok(ev) = rx.try_recv() else { break };
        if let Event::Line(line) = ev
            && !print(&mut out, &line, false)?
        {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if !print(&mut out, b"", true)? {
        return Ok(ExitCode::SUCCESS);
    }
    if readers.failed > 0 && args.job.is_some() {
        eprintln!(
            "offerd logs: an ended task's log is read while offerd knows the task (its last 1000 ended tasks, since it started) and its agent keeps the sandbox (the 50 newest ended tasks, and those ended in the last hour)"
        );
    }
    Ok(if readers.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_whole_and_prefixed() {
        let mut l = Lines::new("web.1");
        assert!(l.push(b"par").is_empty());
        assert_eq!(
            l.push(b"tial\nsecond\nthi"),
            [b"[web.1] partial\n".to_vec(), b"[web.1] second\n".to_vec()]
        );
        assert!(l.push(b"rd").is_empty());
        assert_eq!(l.finish(), Some(b"[web.1] third\n".to_vec()));
        assert_eq!(l.finish(), None);
        assert_eq!(l.push(b"\n"), [b"[web.1] \n".to_vec()]);
        // A line past the bound comes in pieces, each whole and prefixed.
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let got = l.push(&long);
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|p| p.len() == "[web.1] ".len() + MAX_LINE + 1)
        );
        assert_eq!(l.push(b"\n"), [b"[web.1] xxxxx\n".to_vec()]);
    }

    #[test]
    fn task_ids_need_no_escaping() {
        assert!(task_id("shop_web.5e8f-1").is_ok());
        for bad in ["", "a/b", "a?b", "../x", "a b", "é"] {
            assert!(task_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn broken_pipes_end_quietly() {
        struct Closed;
        impl std::io::Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(!print(&mut Closed, b"x\n", true).unwrap());
        let mut v = Vec::new();
        assert!(print(&mut v, b"x\n", true).unwrap());
        assert_eq!(v, b"x\n");
    }

    /// Listing again starts the new tasks and the broken ones, never one being read, and no
    /// more than the limit.
    #[tokio::test]
    async fn followed_apps_pick_up_new_tasks() {
        let client = OfferdClient::new("http://127.0.0.1:9", &ClientAuth::default()).unwrap();
        let (tx, _rx) = mpsc::channel(4);
        let mut r = Readers {
            client: Arc::new(client),
            query: vec![("stream", "stdout".into())],
            tx,
            // No slot: nothing is read, only started.
            slots: Arc::new(Semaphore::new(0)),
            tasks: BTreeMap::new(),
            failed: 0,
        };
        r.tasks.insert("a".into(), Progress::Reading);
        r.tasks.insert("b".into(), Progress::Done);
        r.tasks.insert("c".into(), Progress::Broken(5));
        let ids: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let refused = r.follow_listed(&ids, 3);
        assert_eq!(refused.as_deref(), Some("e"));
        assert_eq!(r.tasks["c"], Progress::Reading);
        assert_eq!(r.tasks["d"], Progress::Reading);
        assert!(!r.tasks.contains_key("e"));
        assert_eq!(r.tasks["b"], Progress::Done);
    }

    #[test]
    fn a_jobs_newest_run_is_the_one_created_last() {
        let run = |id: &str, at: &str| json!({"id": id, "createdAt": at});
        let job = serde_json::json!({
            "activeRuns": [run("active", "2026-01-02T00:00:00.000+0000")],
            "history": {
                "successfulFinishedRuns": [run("ok", "2026-01-03T00:00:00.000+0000")],
                "failedFinishedRuns": [run("failed", "2026-01-01T00:00:00.000+0000")],
            },
        });
        assert_eq!(newest_run(&job).as_deref(), Some("ok"));
        let mut tie = job.clone();
        tie["activeRuns"][0]["createdAt"] = json!("2026-01-03T00:00:00.000+0000");
        assert_eq!(newest_run(&tie).as_deref(), Some("active"));
        assert_eq!(newest_run(&json!({"activeRuns": [], "history": {}})), None);

        // An active run's tasks are objects, a finished one's too (ids only).
        let active = RunTasks::of(
            "r",
            &json!({"status": "ACTIVE", "tasks": [{"id": "t1", "status": "TASK_FAILED"},
                                                  {"id": "t2", "status": "TASK_RUNNING"}]}),
        );
        assert_eq!(active.tasks, ["t1", "t2"]);
        assert!(!active.over());
        let done = RunTasks::of("r", &json!({"status": "FAILED", "tasks": [{"id": "t1"}]}));
        assert_eq!(done.tasks, ["t1"]);
        assert!(done.over());
    }

    #[test]
    fn a_job_is_named_by_its_flag_never_as_the_app() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            crate::cli::Cli::try_parse_from(["offerd", "logs"].iter().chain(args))
                .map(|cli| match cli.command {
                    crate::cli::Command::Logs(l) => (l.app, l.job, l.run),
                    other => panic!("{other:?}"),
                })
                .map_err(|e| e.kind())
        };
        assert_eq!(
            parse(&["--job", "backup"]),
            Ok((None, Some("backup".into()), None))
        );
        assert_eq!(
            parse(&["--job", "backup", "--run", "20260101000000abcde"]),
            Ok((
                None,
                Some("backup".into()),
                Some("20260101000000abcde".into())
            ))
        );
        assert_eq!(
            parse(&["/web", "--job", "backup"]),
            Err(clap::error::ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            parse(&["/web", "--run", "r1"]),
            Err(clap::error::ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            parse(&["--task", "t", "--run", "r1"]),
            Err(clap::error::ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            parse(&["--job", "Not/AJob"]),
            Err(clap::error::ErrorKind::ValueValidation)
        );
        assert!(parse(&[]).is_err());
    }
}
