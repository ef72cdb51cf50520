//! `taskrun run` driving real processes through the agent's exec driver: exit codes and both
//! output streams relayed, `cmd` (through `sh -c`) and `args` (direct) forms, Marathon's
//! environment, the sandbox files, SIGTERM killing the task's whole process group (and SIGKILL
//! after the grace period for a task that ignores SIGTERM), and the memory limit stopping a big
//! allocation; a fast writer's logs rotated within their bound. Plus the agent's start and stop without an offerd: it serves `/health`, keeps
//! retrying its registration, exits 0 on SIGTERM, and refuses malformed `--resources` with exit 2
//! before starting anything.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{Http, bin, free_port};
use serde_json::Value;

/// Generous bound for anything that should take a moment.
const DEADLINE: Duration = Duration::from_secs(30);

fn taskrun(args: &[&str]) -> Output {
    Command::new(bin("taskrun"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running taskrun")
}

/// `taskrun run ARGS` with its default work dir (a new directory under `$TMPDIR`), `$TMPDIR`
/// being a temporary directory removed with the returned guard.
fn run(args: &[&str]) -> (Output, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(bin("taskrun"))
        .arg("run")
        .args(args)
        .env_remove("RUST_LOG")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .expect("running taskrun run");
    (out, tmp)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The sandbox `taskrun run` announces on stderr.
fn sandbox_of(stderr: &str) -> PathBuf {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("taskrun: sandbox "))
        .unwrap_or_else(|| panic!("no sandbox line on stderr: {stderr}"));
    PathBuf::from(line.trim())
}

fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("running kill")
        .success();
    assert!(ok, "kill -TERM {pid} failed");
}

fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            return status;
        }
        if Instant::now() > deadline {
            // The process may have exited already: nothing to report.
            let _ = child.kill();
            panic!("{what} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && !t.trim().is_empty()
        {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn wait_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn record(sandbox: &Path) -> Value {
    let text = std::fs::read_to_string(sandbox.join("task.json")).expect("task.json exists");
    serde_json::from_str(&text).expect("task.json is JSON")
}

#[test]
fn relays_exit_code_and_both_streams() {
    let (out, tmp) = run(&["--", "echo hi; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(text(&out.stdout), "hi\n");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("err\n"), "{stderr}");
    let sandbox = sandbox_of(&stderr);
    assert!(sandbox.is_dir(), "{}", sandbox.display());
    assert!(
        sandbox.starts_with(tmp.path()),
        "the default work dir is under $TMPDIR: {}",
        sandbox.display()
    );
    let rec = record(&sandbox);
    assert_eq!(rec["state"], "TASK_FAILED");
    assert_eq!(rec["message"], "exited with status 3");
}

#[test]
fn several_arguments_run_directly_without_a_shell() {
    let (out, _tmp) = run(&["--", "printf", "%s|", "a b", "$HOME", "*"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "a b|$HOME|*|");
    // A program that does not exist: the shell's 127 and a message naming it.
    let (out, _tmp) = run(&["--", "/nonexistent/program", "x"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        text(&out.stderr).contains("/nonexistent/program"),
        "{out:?}"
    );
}

#[test]
fn task_environment_is_marathons() {
    let (out, _tmp) = run(&[
        "--port",
        "31000",
        "--port",
        "31001",
        "--env",
        "GREETING=hello world",
        "--",
        "echo PORT0=$PORT0; echo PORT1=$PORT1; echo PORT=$PORT; echo PORTS=$PORTS; \
         echo HOST=$HOST; echo MESOS_TASK_ID=$MESOS_TASK_ID; echo MESOS_SANDBOX=$MESOS_SANDBOX; \
         echo GREETING=$GREETING; echo PWD=$(pwd)",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    let vars: std::collections::BTreeMap<&str, &str> =
        stdout.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars["PORT0"], "31000", "{stdout}");
    assert_eq!(vars["PORT1"], "31001");
    assert_eq!(vars["PORT"], "31000");
    assert_eq!(vars["PORTS"], "31000,31001");
    assert_eq!(vars["HOST"], "127.0.0.1");
    assert_eq!(vars["GREETING"], "hello world");
    let sandbox = sandbox_of(&text(&out.stderr));
    let task_id = sandbox.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(!vars["MESOS_TASK_ID"].is_empty());
    assert_eq!(
        vars["MESOS_TASK_ID"], task_id,
        "the sandbox is named after the task"
    );
    assert_eq!(Path::new(vars["MESOS_SANDBOX"]), sandbox);
    assert_eq!(
        Path::new(vars["PWD"]),
        sandbox,
        "the task runs in its sandbox"
    );
}

#[test]
fn sandbox_holds_logs_record_and_exit_status() {
    let work = tempfile::tempdir().expect("temp dir");
    let work_dir = work.path().to_str().expect("utf-8 path");
    let out = taskrun(&[
        "run",
        "--work-dir",
        work_dir,
        "--",
        "echo out; echo err >&2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let sandbox = sandbox_of(&text(&out.stderr));
    assert!(
        sandbox.starts_with(work.path().join("tasks")),
        "sandbox {} is under <work-dir>/tasks",
        sandbox.display()
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("stdout")).unwrap(),
        "out\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("stderr")).unwrap(),
        "err\n"
    );
    let rec = record(&sandbox);
    assert_eq!(rec["state"], "TASK_FINISHED");
    assert!(rec["pid"].as_i64().is_some_and(|p| p > 1), "{rec}");
    assert!(rec["start_time"].as_u64().is_some(), "{rec}");
    let exit: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox.join("exit_status")).unwrap())
            .expect("exit_status is JSON");
    assert_eq!(exit["code"], 0);
}

#[test]
fn sigterm_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("grandchild.pid");
    let script = format!("sleep 100 & echo $! > {}; sleep 100", marker.display());
    let mut child = Command::new(bin("taskrun"))
        .args(["run", "--grace", "20", "--work-dir"])
        .arg(dir.path())
        .args(["--", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting taskrun run");
    let grandchild: i32 = wait_for_file(&marker).trim().parse().expect("a pid");
    assert!(alive(grandchild));
    sigterm(child.id());
    let status = wait_exit(&mut child, "taskrun run after SIGTERM");
    // 143 = 128 + SIGTERM: the task died of the SIGTERM, well within the 20 s grace.
    assert_eq!(status.code(), Some(143), "{status:?}");
    wait_gone(grandchild, "the task's background child");
    let tasks: Vec<PathBuf> = std::fs::read_dir(dir.path().join("tasks"))
        .expect("tasks dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(tasks.len(), 1);
    let rec = record(&tasks[0]);
    assert_eq!(rec["state"], "TASK_KILLED", "{rec}");
    let group = rec["pid"].as_i64().expect("pid") as i32;
    wait_gone(group, "the task's supervisor");
}

/// What a program leaves running when it ends: processes of its group (which hold its output
/// pipes) are killed and the task ends with the program's code; a process that left the group
/// (a daemon in its own session) is not the task's any more and is left alone.
#[test]
fn a_task_ends_with_its_program_and_takes_its_group_along() {
    struct Case {
        background: &'static str,
        killed: bool,
    }
    let cases = [
        Case {
            background: "sh -c 'echo $$ > {marker}; exec sleep 100' &",
            killed: true,
        },
        Case {
            background: "setsid sh -c 'echo $$ > {marker}; exec sleep 100' </dev/null >/dev/null 2>&1 &",
            killed: false,
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let marker = dir.path().join("left.pid");
        // The program ends only once the background process has written its pid, i.e. is
        // past its setsid.
        let marker_path = marker.display().to_string();
        let script = format!(
            "{} until [ -s {marker_path} ]; do sleep 0.01; done; echo done; exit 3",
            case.background.replace("{marker}", &marker_path),
        );
        let (out, _tmp) = run(&["--", &script]);
        assert_eq!(out.status.code(), Some(3), "{}: {out:?}", case.background);
        assert_eq!(text(&out.stdout), "done\n", "{}", case.background);
        let left: i32 = wait_for_file(&marker).trim().parse().expect("a pid");
        if case.killed {
            wait_gone(left, case.background);
        } else {
            assert!(
                alive(left),
                "{}: a process outside the group is left alone",
                case.background
            );
            // SAFETY: kill(2) of the test's own leftover by pid.
            unsafe {
                libc::kill(left, libc::SIGKILL);
            }
            wait_gone(left, case.background);
        }
    }
}

#[test]
fn a_task_ignoring_sigterm_gets_sigkill_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("loop.pid");
    let script = format!(
        "trap '' TERM; echo $$ > {}; while true; do sleep 0.1; done",
        marker.display()
    );
    let mut child = Command::new(bin("taskrun"))
        .args(["run", "--grace", "1", "--work-dir"])
        .arg(dir.path())
        .args(["--", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting taskrun run");
    let shell: i32 = wait_for_file(&marker).trim().parse().expect("a pid");
    sigterm(child.id());
    let status = wait_exit(&mut child, "taskrun run after SIGTERM");
    // 137 = 128 + SIGKILL: SIGTERM was ignored, the escalation ended it.
    assert_eq!(status.code(), Some(137), "{status:?}");
    wait_gone(shell, "the shell that ignored SIGTERM");
}

const ALLOCATE_200MB: &str = "import sys\n\
print('started', flush=True)\n\
block = bytearray(200 * 1024 * 1024)\n\
print('allocated', flush=True)\n";

#[test]
fn memory_limit_stops_a_big_allocation() {
    // Python: the allocation raises MemoryError under --mem 64 and works without it.
    let (limited, _t1) = run(&["--mem", "64", "--", "python3", "-c", ALLOCATE_200MB]);
    let stdout = text(&limited.stdout);
    assert!(
        stdout.contains("started"),
        "python did not start: {limited:?}"
    );
    assert!(!stdout.contains("allocated"), "{limited:?}");
    assert_ne!(limited.status.code(), Some(0), "{limited:?}");
    assert!(text(&limited.stderr).contains("MemoryError"), "{limited:?}");
    let (free, _t2) = run(&["--", "python3", "-c", ALLOCATE_200MB]);
    assert_eq!(free.status.code(), Some(0), "{free:?}");
    assert!(text(&free.stdout).contains("allocated"), "{free:?}");

    // The shell: a 200 MB string cannot be built under --mem 64.
    let shell = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo allocated ${#x}";
    let (limited, _t3) = run(&["--mem", "64", "--", shell]);
    assert!(!text(&limited.stdout).contains("allocated"), "{limited:?}");
    assert_ne!(limited.status.code(), Some(0), "{limited:?}");
    let (free, _t4) = run(&["--", shell]);
    assert_eq!(text(&free.stdout), "allocated 200000000\n", "{free:?}");
}

#[tokio::test]
async fn agent_serves_health_keeps_registering_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("taskrun.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let http_port = free_port();
    // Nothing listens on these: offerd and the catalog are down the whole time.
    let offerd = format!("http://127.0.0.1:{}", free_port());
    let catalog = format!("http://127.0.0.1:{}", free_port());
    let mut agent = Command::new(bin("taskrun"))
        .args([
            "agent",
            "--offerd",
            &offerd,
            "--catalog",
            &catalog,
            "--node",
            "e2e-node",
        ])
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{http_port}"))
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting taskrun agent");
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let http = Http::new(&format!("http://127.0.0.1:{http_port}"));
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(r) = http.try_send("GET", "/health", None).await
            && r.status == 200
        {
            assert_eq!(r.text(), "ok");
            break;
        }
        if let Some(status) = agent.try_wait().expect("waiting") {
            panic!("agent exited early with {status}; log:\n{}", log_text());
        }
        assert!(
            Instant::now() < deadline,
            "no /health; log:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let tasks = http.get("/v1/tasks").await;
    assert_eq!(tasks.status, 200);
    assert_eq!(tasks.value(), serde_json::json!([]));
    let unknown = http.get("/v1/tasks/nope.1/logs").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.value()["error"].as_str().is_some());

    // It keeps trying offerd instead of giving up.
    while !log_text().contains("cannot register with offerd") {
        assert!(
            Instant::now() < deadline,
            "no registration attempt; log:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        agent.try_wait().expect("waiting").is_none(),
        "the agent must keep retrying; log:\n{}",
        log_text()
    );

    // A second agent on the same work dir would fight over the tasks: refused.
    let second = taskrun(&[
        "agent",
        "--offerd",
        &offerd,
        "--catalog",
        &catalog,
        "--http-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--work-dir",
        dir.path().join("work").to_str().expect("utf-8 path"),
    ]);
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(text(&second.stderr).contains("in use"), "{second:?}");

    sigterm(agent.id());
    let status = wait_exit(&mut agent, "taskrun agent after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", log_text());
    assert!(dir.path().join("work").join("tasks").is_dir());
}

#[test]
fn agent_refuses_malformed_resources_before_starting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work");
    let http_addr = format!("127.0.0.1:{}", free_port());
    let work_str = work.to_str().expect("utf-8 path");
    for (flag, value, named) in [
        ("--resources", "cpus:x", "cpus:x"),
        ("--resources", "cpus:2;gpus:1", "gpus:1"),
        ("--attributes", "rack", "rack"),
    ] {
        let out = taskrun(&[
            "agent",
            "--offerd",
            "http://127.0.0.1:1",
            "--http-addr",
            &http_addr,
            "--work-dir",
            work_str,
            flag,
            value,
        ]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {out:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(named) && stderr.contains(flag), "{stderr}");
        assert!(!work.exists(), "nothing was started");
    }
}

/// The sizes of a log stream's files (`stdout`, `stdout.1`, ...) in a sandbox.
fn log_files(sandbox: &Path, stream: &str) -> Vec<(String, u64)> {
    std::fs::read_dir(sandbox)
        .expect("sandbox")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // The file and its generations (`stdout.1`..), not the time index beside them.
            let ours = name == stream
                || name
                    .strip_prefix(&format!("{stream}."))
                    .is_some_and(|n| n.parse::<u32>().is_ok());
            ours.then(|| (name, e.metadata().map(|m| m.len()).unwrap_or(0)))
        })
        .collect()
}

/// `yes` writes as fast as the machine allows; with a 1 MiB setting its sandbox never holds
/// more than the current file and three rotated ones (plus one file's worth: a rotation may
/// happen between two reads of the directory), however long it runs.
#[test]
fn rotation_bounds_the_disk_used_by_a_fast_writer() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(bin("taskrun"))
        .args(["run", "--log-rotate-bytes", &MIB.to_string(), "--work-dir"])
        .arg(dir.path())
        .args(["--", "yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting taskrun run");
    let tasks = dir.path().join("tasks");
    let deadline = Instant::now() + DEADLINE;
    let sandbox = loop {
        let found = std::fs::read_dir(&tasks)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .next();
        if let Some(s) = found {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no sandbox under {}",
            tasks.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Run until the oldest generation has been replaced five times: many rotations of all
    // three, at the writer's own speed, the bound checked all along.
    let oldest = sandbox.join("stdout.3");
    let inode = |p: &Path| {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(p).ok().map(|m| m.ino())
    };
    // (Each rotation puts another file at stdout.3: its inode number changes.)
    let (mut last, mut replaced) = (None, 0);
    while replaced < 5 {
        let files = log_files(&sandbox, "stdout");
        let total: u64 = files.iter().map(|(_, len)| len).sum();
        assert!(
            total <= 5 * MIB,
            "{total} bytes of stdout in the sandbox: {files:?}"
        );
        assert!(files.iter().all(|(_, len)| *len <= MIB), "{files:?}");
        assert!(files.len() <= 4, "{files:?}");
        // The time index describes the current file only: a few entries, however long it runs.
        let index = std::fs::metadata(sandbox.join("stdout.idx")).map_or(0, |m| m.len());
        assert!(index <= 4096, "a {index}-byte stdout.idx");
        let now = inode(&oldest);
        if now.is_some() && last.is_some() && now != last {
            replaced += 1;
        }
        last = now.or(last);
        assert!(
            Instant::now() < deadline,
            "stdout.3 replaced {replaced} times in {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sigterm(child.id());
    let status = wait_exit(&mut child, "taskrun run after SIGTERM");
    assert_eq!(status.code(), Some(143), "{status:?}");
    // Nothing but whole lines: the rotation splits the stream, never loses a byte of it.
    let current = std::fs::read(sandbox.join("stdout.1")).expect("stdout.1");
    assert_eq!(current.len() as u64, MIB);
    assert!(current.chunks(2).all(|c| c == b"y\n"));
}
