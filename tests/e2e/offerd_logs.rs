//! `offerd logs` (issue 18) against a real cluster: an app of two tasks on two agents printing
//! known lines to stdout and stderr. Every line comes once with its task's prefix; `--stderr`
//! shows stderr only; `--task` one task (with its app, or alone); `--since` skips what is older;
//! `--follow` prints what is written later and the lines of a task started by a scale-up, and
//! SIGTERM ends it with 0; a reader that closes the pipe ends it quietly; an unknown app exits 1
//! with offerd's message, a usage error 2. With offerd's auth file a principal reads a task's
//! log through offerd (which presents the agent's node-bound token), a non-principal's token is
//! refused, and an agent that cannot be reached is a 502.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cairn_tests::cluster::{Cluster, ClusterOpts};
use cairn_tests::{Http, bin, wait_for};
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

/// A task that prints its lines in phases, each started by a file appearing in `dir`.
fn phased_cmd(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "echo \"out-1 $MESOS_TASK_ID\"; echo \"out-2 $MESOS_TASK_ID\"; echo \"err-1 $MESOS_TASK_ID\" >&2; \
         while [ ! -e {d}/phase2 ]; do sleep 0.1; done; \
         echo \"out-late $MESOS_TASK_ID\"; echo \"err-late $MESOS_TASK_ID\" >&2; \
         while [ ! -e {d}/phase3 ]; do sleep 0.1; done; \
         echo \"out-follow $MESOS_TASK_ID\"; exec sleep 600"
    )
}

/// `offerd --offerd URL args...`, with no credentials from the environment.
async fn cli(c: &Cluster, args: &[&str]) -> Output {
    tokio::process::Command::new(bin("offerd"))
        .arg("--offerd")
        .arg(&c.offerd.url)
        .args(args)
        .env_remove("CAIRN_OFFERD_TOKEN")
        .env_remove("CAIRN_OFFERD_CREDENTIALS")
        .output()
        .await
        .expect("running offerd logs")
}

fn sorted_lines(out: &Output) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// `[id] what id` for each id, sorted.
fn expected(ids: &[&String], whats: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = ids
        .iter()
        .flat_map(|id| whats.iter().map(move |w| format!("[{id}] {w} {id}")))
        .collect();
    lines.sort();
    lines
}

/// The sandbox file `name` of task `id`, on whichever agent runs it.
fn task_file(c: &Cluster, id: &str, name: &str) -> String {
    c.agent_dirs
        .iter()
        .map(|d| d.join("tasks").join(id).join(name))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

fn touch(dir: &Path, name: &str) {
    std::fs::write(dir.join(name), b"").expect("trigger file");
}

/// A running `offerd logs --follow`: its stdout lines as they come.
struct Follower {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Reads its stdout; aborted, it closes the pipe's read end.
    reader: tokio::task::JoinHandle<()>,
}

impl Follower {
    fn start(c: &Cluster, args: &[&str]) -> Follower {
        let mut child = tokio::process::Command::new(bin("offerd"))
            .arg("--offerd")
            .arg(&c.offerd.url)
            .args(args)
            .env_remove("CAIRN_OFFERD_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("offerd logs --follow");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let seen = lines.clone();
        let reader = tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                seen.lock().expect("lines").push(line);
            }
        });
        Follower {
            child,
            lines,
            reader,
        }
    }

    /// Stops reading its stdout and closes the pipe (as `| head` does once it has enough).
    async fn close_stdout(&mut self) {
        self.reader.abort();
        // Cancelled: the reader and its end of the pipe are gone once it answers.
        let _ = (&mut self.reader).await;
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    fn has(&self, line: &str) -> bool {
        self.lines().iter().any(|l| l == line)
    }

    /// SIGTERM, then its exit status.
    async fn sigterm(self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY: kill(2) on a child we started.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let out = tokio::time::timeout(Duration::from_secs(10), self.child.wait_with_output())
            .await
            .expect("offerd logs --follow stops within 10 s of SIGTERM")
            .expect("waiting for offerd logs");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offerd_logs_prints_every_tasks_lines_with_its_prefix() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // GROUP_BY hostname: one task on each agent.
    let app = json!({
        "id": "/logs/demo", "cmd": phased_cmd(dir.path()), "cpus": 0.1, "mem": 32,
        "instances": 2, "constraints": [["hostname", "GROUP_BY"]], "portDefinitions": [],
    });
    assert_eq!(c.post_app(&app).await.status, 201);
    let ids = c.wait_running("/logs/demo", 2, 60).await;
    let hosts: std::collections::BTreeSet<String> = c
        .tasks("/logs/demo")
        .await
        .iter()
        .filter_map(|t| t["slaveId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(hosts.len(), 2, "one task per agent: {hosts:?}");
    let ids: Vec<&String> = ids.iter().collect();
    c.wait_for("both tasks' first lines", 30, || async {
        ids.iter()
            .all(|id| {
                task_file(&c, id, "stdout").contains("out-2")
                    && task_file(&c, id, "stderr").contains("err-1")
            })
            .then_some(())
    })
    .await;
    let first_written = SystemTime::now();

    // Everything on stdout, each line once, prefixed with its task.
    let out = cli(&c, &["logs", "/logs/demo"]).await;
    assert!(out.status.success(), "{out:?}\n{}", c.logs());
    assert_eq!(sorted_lines(&out), expected(&ids, &["out-1", "out-2"]));
    // --stderr: stderr only.
    let out = cli(&c, &["logs", "/logs/demo", "--stderr"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sorted_lines(&out), expected(&ids, &["err-1"]));
    // --task: one task, with its app or alone.
    for args in [
        vec!["logs", "/logs/demo", "--task", ids[0].as_str()],
        vec!["logs", "--task", ids[0].as_str()],
    ] {
        let out = cli(&c, &args).await;
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_eq!(
            sorted_lines(&out),
            expected(&ids[..1], &["out-1", "out-2"]),
            "{args:?}"
        );
    }

    // --since: lines older than it are left out. The first lines are made older than the
    // window, then the tasks print more.
    wait_for(
        "the first lines to be 6 s old",
        Duration::from_secs(30),
        String::new,
        async || {
            (first_written.elapsed().unwrap_or_default() >= Duration::from_secs(6)).then_some(())
        },
    )
    .await;
    touch(dir.path(), "phase2");
    c.wait_for("the late lines", 30, || async {
        ids.iter()
            .all(|id| {
                task_file(&c, id, "stdout").contains("out-late")
                    && task_file(&c, id, "stderr").contains("err-late")
            })
            .then_some(())
    })
    .await;
    let out = cli(&c, &["logs", "/logs/demo", "--since", "3s"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sorted_lines(&out), expected(&ids, &["out-late"]));
    let out = cli(&c, &["logs", "/logs/demo", "--since", "3s", "--stderr"]).await;
    assert_eq!(sorted_lines(&out), expected(&ids, &["err-late"]));
    // A longer window takes everything.
    let out = cli(&c, &["logs", "/logs/demo", "--since", "1h"]).await;
    assert_eq!(
        sorted_lines(&out),
        expected(&ids, &["out-1", "out-2", "out-late"])
    );

    // --follow: what is there, what is written later, and the tasks started later.
    let follower = Follower::start(&c, &["logs", "/logs/demo", "--follow"]);
    // A second follower whose reader goes away: its next write ends it quietly.
    let mut leaver = Follower::start(&c, &["logs", "/logs/demo", "-f"]);
    c.wait_for("the follower to print what exists", 30, || async {
        expected(&ids, &["out-1", "out-2", "out-late"])
            .iter()
            .all(|l| follower.has(l))
            .then_some(())
    })
    .await;
    wait_for(
        "the leaving follower's first lines",
        Duration::from_secs(30),
        String::new,
        async || (leaver.lines().len() >= 6).then_some(()),
    )
    .await;
    leaver.close_stdout().await;
    touch(dir.path(), "phase3");
    c.wait_for(
        "the follower to print the lines written later",
        30,
        || async {
            expected(&ids, &["out-follow"])
                .iter()
                .all(|l| follower.has(l))
                .then_some(())
        },
    )
    .await;
    let scaled = c
        .put_app("/logs/demo", &json!({ "instances": 3 }), false)
        .await;
    assert_eq!(scaled.status, 200, "{}", scaled.text());
    let all = c.wait_running("/logs/demo", 3, 60).await;
    let new: Vec<&String> = all.iter().filter(|id| !ids.contains(id)).collect();
    assert_eq!(new.len(), 1);
    c.wait_for("the follower to print the new task's lines", 30, || async {
        expected(&new, &["out-1", "out-2", "out-late", "out-follow"])
            .iter()
            .all(|l| follower.has(l))
            .then_some(())
    })
    .await;
    let printed = follower.lines();
    let (status, stderr) = follower.sigterm().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM ends the follow with 0: {stderr}"
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &printed {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let mut want = expected(&ids, &["out-1", "out-2", "out-late", "out-follow"]);
    want.extend(expected(
        &new,
        &["out-1", "out-2", "out-late", "out-follow"],
    ));
    for line in &want {
        assert_eq!(counts.get(line.as_str()), Some(&1), "{line}: {printed:#?}");
    }
    assert_eq!(printed.len(), want.len(), "{printed:#?}");
    // The follower without a reader met a closed pipe at the new task's lines: exit 0, silent.
    let out = tokio::time::timeout(Duration::from_secs(10), leaver.child.wait_with_output())
        .await
        .expect("a follower with a closed stdout ends")
        .expect("waiting for it");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without --follow the command ends even while the tasks run on.
    let out = cli(&c, &["logs", "/logs/demo"]).await;
    assert_eq!(out.status.code(), Some(0));
    // An unknown app: 1, with offerd's message; a usage error: 2.
    let out = cli(&c, &["logs", "/no/such/app"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("App '/no/such/app' does not exist"), "{err}");
    let out = cli(&c, &["logs", "--task", "no.such.task"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{out:?}"
    );
    for args in [
        vec!["logs"],
        vec!["logs", "/logs/demo", "--since", "soon"],
        vec!["logs", "--task", "a/b"],
    ] {
        let out = cli(&c, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    // The agent and offerd logs never carry the tasks' lines.
    assert!(!c.logs().contains("out-late"));
}

const ADMIN: &str = "logs-admin-tok-61d2";
const VIEWER: &str = "logs-viewer-tok-0a9c";
const NODE0: &str = "logs-node0-tok-5be1";

#[tokio::test(flavor = "multi_thread")]
async fn task_logs_through_offerd_follow_its_access_rules() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("auth.toml");
    std::fs::write(
        &file,
        format!(
            "[[principal]]\nname = \"root\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n\n\
             [[principal]]\nname = \"vic\"\ntoken = \"{VIEWER}\"\nrole = \"viewer\"\n\n\
             [[agent]]\nnode = \"node-0\"\ntoken = \"{NODE0}\"\n"
        ),
    )
    .expect("auth file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut c = Cluster::start(ClusterOpts {
        agents: 0,
        offerd_args: vec!["--auth-file".into(), file.display().to_string()],
        ..Default::default()
    })
    .await;
    c.offerd.http =
        Http::new(&c.offerd.url).with_header("authorization", &format!("Bearer {ADMIN}"));
    // The agent's own API takes its node-bound token only: offerd must present it.
    c.agent_args
        .extend(["--agent-token".to_string(), NODE0.to_string()]);
    c.add_agent(0, "cpus:4;mem:2048;disk:1000", "").await;
    c.wait_for("the agent to register", 60, || async {
        let a = c.offerd.http.get("/v1/agents").await.value();
        (a.as_array().map_or(0, Vec::len) == 1).then_some(())
    })
    .await;
    let app = json!({ "id": "/guarded", "cmd": "echo guarded-line; exec sleep 600",
                      "cpus": 0.1, "mem": 32, "instances": 1, "portDefinitions": [] });
    assert_eq!(c.post_app(&app).await.status, 201);
    let id = c.wait_running("/guarded", 1, 60).await.remove(0);
    let path = format!("/v1/tasks/{id}/logs");
    let as_token =
        |t: &str| Http::new(&c.offerd.url).with_header("authorization", &format!("Bearer {t}"));

    // A viewer reads (read is every principal's right), through offerd to the agent.
    c.wait_for("the viewer to read the task's line", 30, || async {
        let r = as_token(VIEWER).get(&path).await;
        (r.status == 200 && r.text() == "guarded-line\n").then_some(())
    })
    .await;
    // Offsets and the agent's headers pass through.
    let r = as_token(VIEWER)
        .get(&format!("{path}?offset=3&length=4"))
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "rded"));
    assert_eq!(r.header("x-taskrun-offset"), Some("7"));
    let r = as_token(VIEWER).get(&format!("{path}?since=0")).await;
    assert_eq!(r.header("x-taskrun-since"), Some("applied"));
    assert_eq!(r.text(), "guarded-line\n");
    // Not a principal: the agent's token, a wrong token, none.
    for http in [
        as_token(NODE0),
        as_token("wrong-token"),
        Http::new(&c.offerd.url),
    ] {
        let r = http.get(&path).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    // Bad parameters and unknown tasks are offerd's answers.
    let r = as_token(VIEWER).get(&format!("{path}?stream=both")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = as_token(VIEWER).get("/v1/tasks/no.such.task/logs").await;
    assert_eq!(r.status, 404, "{}", r.text());
    // The CLI with the viewer's token reads; with a wrong one it fails with offerd's answer.
    let logs = |token: &'static str| {
        tokio::process::Command::new(bin("offerd"))
            .args([
                "--offerd",
                &c.offerd.url,
                "logs",
                "/guarded",
                "--token",
                token,
            ])
            .output()
    };
    let out = logs(VIEWER).await.expect("offerd logs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("[{id}] guarded-line\n")
    );
    let out = logs("wrong-token").await.expect("offerd logs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );

    // An agent that cannot be reached: a 502 naming it (the task is still offerd's).
    c.agents[0].kill9();
    let r = as_token(VIEWER).get(&path).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("node-0"), "{}", r.text());
    // No token reaches offerd's log.
    let log = c.offerd.log_text();
    for secret in [ADMIN, VIEWER, NODE0] {
        assert!(!log.contains(secret), "a token in offerd's log");
    }
}
