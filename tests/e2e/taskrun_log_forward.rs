//! `taskrun agent --log-forward` (issue 18) into Debian's real rsyslog, which receives on UDP
//! and TCP and writes what arrived with a template of RFC 5424's fields: a task's lines arrive
//! with the right app, task, node, stream and severity; a long line arrives cut to the
//! transport's bound; over TCP, rsyslog killed and started again loses no line written while it
//! was away or after it is back; an agent restarted goes on from its saved cursor without
//! sending what it had sent. Under CI=true a missing rsyslogd fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn_tests::cluster::{Cluster, ClusterOpts};
use cairn_tests::{free_port, wait_for};
use serde_json::json;

/// Where Debian puts rsyslogd.
const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// Whether rsyslogd is installed; under CI=true its absence fails the test.
fn require_rsyslogd() -> bool {
    if Path::new(RSYSLOGD).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {RSYSLOGD} is missing: install Debian's rsyslog (scripts/test does)");
    }
    eprintln!("skipping: {RSYSLOGD} is missing (apt-get install rsyslog; CI=true makes this fail)");
    false
}

/// A real rsyslogd receiving on UDP and TCP (loopback) and writing every message, as
/// `severity hostname app-name procid msgid structured-data msg`, to one file.
struct Rsyslog {
    dir: PathBuf,
    child: Option<Child>,
    udp: u16,
    tcp: u16,
}

impl Rsyslog {
    fn start(dir: &Path) -> Rsyslog {
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            child: None,
            udp: free_udp_port(),
            tcp: free_port(),
        };
        std::fs::create_dir_all(dir.join("work")).expect("rsyslog work dir");
        let conf = format!(
            r#"global(workDirectory="{dir}/work")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="cairn" type="string"
         string="%syslogfacility-text%.%syslogseverity-text% %hostname% %app-name% %procid% %msgid% %structured-data% %msg%\n")
*.* action(type="omfile" file="{dir}/received.log" template="cairn")
"#,
            dir = dir.display(),
            udp = r.udp,
            tcp = r.tcp,
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).expect("rsyslog.conf");
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslogd.stderr")).expect("stderr file"))
            .spawn()
            .expect("starting rsyslogd");
        self.child = Some(child);
    }

    /// Waits until rsyslogd accepts TCP connections.
    async fn wait_listening(&self) {
        let port = self.tcp;
        wait_for(
            "rsyslogd to listen",
            Duration::from_secs(20),
            || self.stderr(),
            async || {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Gone already is fine: it is reaped either way.
            let _ = c.kill();
            let _ = c.wait();
        }
        // Its pid file would keep the next one from starting.
        let _ = std::fs::remove_file(self.dir.join("rsyslogd.pid"));
    }

    fn received(&self) -> String {
        std::fs::read_to_string(self.dir.join("received.log")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        format!(
            "rsyslogd stderr:\n{}\nreceived:\n{}",
            std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default(),
            self.received()
        )
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral UDP port")
}

/// A task printing a known line to each stream, one with quotes and brackets, a long line,
/// then numbered lines for each trigger file `go<N>` that appears in `dir`.
fn cmd(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "echo \"plain line $MESOS_TASK_ID\"; echo \"err line $MESOS_TASK_ID\" >&2; \
         echo 'say \"hi\" [to] \\\\ them'; head -c 20000 /dev/zero | tr '\\0' x; echo; \
         n=1; while true; do \
           if [ -e {d}/go$n ]; then i=1; while [ $i -le 5 ]; do echo \"batch $n line $i\"; i=$((i+1)); done; n=$((n+1)); fi; \
           sleep 0.1; done"
    )
}

/// The received lines of one task's stream: (facility.severity, the rest after the SD).
fn of_task<'a>(received: &'a str, task: &str, stream: &str) -> Vec<&'a str> {
    received
        .lines()
        .filter(|l| {
            l.contains(&format!("task=\"{task}\"")) && l.contains(&format!("stream=\"{stream}\""))
        })
        .collect()
}

/// What comes after the structured data: the message.
fn msg(line: &str) -> &str {
    line.split_once("\"] ").map_or("", |(_, m)| m)
}

#[tokio::test(flavor = "multi_thread")]
async fn task_output_reaches_rsyslog_over_udp_and_tcp() {
    if !require_rsyslogd() {
        return;
    }
    let syslog_dir = tempfile::tempdir().expect("temp dir");
    let mut rsyslog = Rsyslog::start(syslog_dir.path());
    rsyslog.wait_listening().await;
    let triggers = tempfile::tempdir().expect("temp dir");

    // node-0 forwards over UDP, node-1 over TCP.
    let mut c = Cluster::start(ClusterOpts {
        agents: 0,
        ..Default::default()
    })
    .await;
    let shared = c.agent_args.clone();
    for (i, target) in [
        format!("syslog://127.0.0.1:{}", rsyslog.udp),
        format!("syslog+tcp://127.0.0.1:{}", rsyslog.tcp),
    ]
    .into_iter()
    .enumerate()
    {
        c.agent_args = shared.clone();
        c.agent_args.extend(["--log-forward".to_string(), target]);
        c.add_agent(i, "cpus:4;mem:2048;disk:1000", "").await;
    }
    c.agent_args = shared;
    c.wait_for("both agents to register", 60, || async {
        let a = c.offerd.http.get("/v1/agents").await.value();
        (a.as_array().map_or(0, Vec::len) == 2).then_some(())
    })
    .await;
    for (app, node) in [("/fwd/udp", "node-0"), ("/fwd/tcp", "node-1")] {
        let def = json!({ "id": app, "cmd": cmd(&triggers.path().join(node)), "cpus": 0.1,
                          "mem": 32, "instances": 1, "portDefinitions": [],
                          "constraints": [["hostname", "CLUSTER", node]] });
        std::fs::create_dir_all(triggers.path().join(node)).expect("trigger dir");
        assert_eq!(c.post_app(&def).await.status, 201);
    }
    let udp_task = c.wait_running("/fwd/udp", 1, 60).await.remove(0);
    let tcp_task = c.wait_running("/fwd/tcp", 1, 60).await.remove(0);

    for (app, task, node, bound) in [
        ("/fwd/udp", &udp_task, "node-0", 2048),
        ("/fwd/tcp", &tcp_task, "node-1", 8192),
    ] {
        let got = wait_for(
            "the task's lines in rsyslog's file",
            Duration::from_secs(30),
            || format!("{}\n{}", rsyslog.stderr(), c.logs()),
            async || {
                let received = rsyslog.received();
                let out = of_task(&received, task, "stdout");
                let err = of_task(&received, task, "stderr");
                (out.len() >= 3 && !err.is_empty()).then(|| {
                    (
                        out.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                        err[0].to_string(),
                    )
                })
            },
        )
        .await;
        let (out, err) = got;
        let sd = |stream: &str| {
            format!(
                "[cairn@32473 app=\"{app}\" task=\"{task}\" node=\"{node}\" stream=\"{stream}\"]"
            )
        };
        assert_eq!(
            out[0],
            format!(
                "user.info {node} {app} {task} stdout {} plain line {task}",
                sd("stdout")
            )
        );
        assert_eq!(
            err,
            format!(
                "user.err {node} {app} {task} stderr {} err line {task}",
                sd("stderr")
            )
        );
        assert_eq!(msg(&out[1]), "say \"hi\" [to] \\ them");
        // The long line, cut to the transport's bound (the whole message at most `bound`).
        let long = msg(&out[2]);
        assert!(long.bytes().all(|b| b == b'x'), "{long}");
        let header = out[2].len() - long.len();
        assert!(
            long.len() < bound && long.len() + header > bound - 400,
            "a {}-byte line over {app}",
            long.len()
        );
        assert_eq!(of_task(&rsyslog.received(), task, "stdout").len(), 3);
    }

    // TCP: rsyslog killed; lines written while it is away and after it is back all arrive.
    rsyslog.kill9();
    let tcp_go = triggers.path().join("node-1");
    std::fs::write(tcp_go.join("go1"), b"").expect("trigger");
    let stdout = c.agent_dirs[1].join("tasks").join(&tcp_task).join("stdout");
    wait_for(
        "the task to print batch 1",
        Duration::from_secs(30),
        || c.logs(),
        async || {
            std::fs::read_to_string(&stdout)
                .is_ok_and(|s| s.contains("batch 1 line 5"))
                .then_some(())
        },
    )
    .await;
    rsyslog.spawn();
    rsyslog.wait_listening().await;
    std::fs::write(tcp_go.join("go2"), b"").expect("trigger");
    let batches = |received: &str, n: u32| {
        of_task(received, &tcp_task, "stdout")
            .iter()
            .filter(|l| msg(l).starts_with(&format!("batch {n} ")))
            .count()
    };
    wait_for(
        "batches 1 and 2 after rsyslog's restart",
        Duration::from_secs(30),
        || format!("{}\n{}", rsyslog.stderr(), c.logs()),
        async || {
            let r = rsyslog.received();
            (batches(&r, 1) >= 5 && batches(&r, 2) >= 5).then_some(())
        },
    )
    .await;

    // The agent restarted goes on from its cursor: new lines arrive, old ones are not sent
    // again.
    let status = c.agents[1].sigterm(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    assert!(
        c.agent_dirs[1]
            .join("tasks")
            .join(&tcp_task)
            .join("stdout.fwd")
            .exists(),
        "the cursor is saved in the sandbox"
    );
    c.agents[1].restart().await;
    std::fs::write(tcp_go.join("go3"), b"").expect("trigger");
    wait_for(
        "batch 3 after the agent's restart",
        Duration::from_secs(30),
        || format!("{}\n{}", rsyslog.stderr(), c.logs()),
        async || (batches(&rsyslog.received(), 3) >= 5).then_some(()),
    )
    .await;
    let received = rsyslog.received();
    assert_eq!(batches(&received, 3), 5);
    assert_eq!(
        batches(&received, 2),
        5,
        "batch 2 sent again after the restart"
    );
    let plain = of_task(&received, &tcp_task, "stdout")
        .iter()
        .filter(|l| msg(l).starts_with("plain line"))
        .count();
    assert_eq!(plain, 1, "the task's first line sent again");
    // The agents log where they send, never what.
    assert!(!c.logs().contains("plain line"));
}
