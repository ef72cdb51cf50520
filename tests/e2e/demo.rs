//! The README's main-job command: `scripts/demo --once` starts the whole platform on one state
//! directory, deploys examples/apps, shows every result (tasks, catalog health, the app through
//! HAProxy by host name, dnsbridge SRV answers, a tmpl-rendered file, the load balancer's health
//! check), and stops everything cleanly; a second run on the same state works too.
//! `scripts/demo ha --once` (issue 16) runs 3 etcd members, 3 catalogd and 2 offerd replicas,
//! kills each leader and shows the successors taking over with the app answering throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::workspace_root;

fn demo_command(state: &Path, base: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_root().join("scripts/demo"))
        .args(args)
        .env("CAIRN_PROFILE", "debug")
        .env("DEMO_PORT_BASE", base.to_string())
        .env("DEMO_STATE", state)
        .env("NO_COLOR", "1");
    cmd
}

fn run_demo(state: &Path, base: u16) -> String {
    let out = demo_command(state, base, &["--once"])
        .output()
        .expect("running scripts/demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    stdout
}

/// The output of one shown step (`$ cmd` up to the next step).
fn step<'a>(out: &'a str, starts: &str) -> &'a str {
    steps(out, starts)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no step `{starts}` in:\n{out}"))
}

/// The output of every shown step starting so, in order.
fn steps<'a>(out: &'a str, starts: &str) -> Vec<&'a str> {
    let needle = format!("$ {starts}");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = out[from..].find(&needle) {
        let rest = &out[from + i..];
        let end = rest[2..].find("\n$ ").map_or(rest.len(), |i| i + 2);
        found.push(&rest[..end]);
        from += i + end;
    }
    found
}

/// A base port with the daemons' ports (base + `daemons`) and the tasks' (base + `tasks`) free,
/// below the kernel's ephemeral range: the demo binds them only after building, and by then
/// another test's outgoing connection could have taken a port in that range.
fn free_base(daemons: std::ops::Range<u16>, tasks: std::ops::Range<u16>) -> u16 {
    use rand::Rng;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let top = ephemeral_low
        .saturating_sub(tasks.end.max(daemons.end))
        .max(10001);
    let mut rng = rand::rng();
    loop {
        let base = rng.random_range(10000..top);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if daemons.clone().chain(tasks.clone()).all(|o| free(base + o)) {
            return base;
        }
    }
}

#[test]
fn demo_runs_the_whole_platform_and_stops_cleanly_twice() {
    let state = tempfile::tempdir().expect("state dir");
    let base = free_base(0..6, 100..200);
    for round in 0..2 {
        let out = run_demo(state.path(), base);
        let tasks = step(&out, "offerd tasks /demo/web");
        assert_eq!(
            tasks.matches("TASK_RUNNING").count(),
            2,
            "round {round}:\n{tasks}"
        );
        assert!(
            tasks.contains("demo-1") && tasks.contains("demo-2"),
            "{tasks}"
        );
        let health = step(&out, "catalogd service web-demo");
        assert_eq!(health.matches("\tpassing").count(), 2, "{health}");
        let curl = step(&out, "curl -H 'Host: web.demo'");
        let bodies: std::collections::BTreeSet<&str> = curl
            .lines()
            .filter(|l| l.starts_with("hello from demo_web."))
            .collect();
        assert_eq!(
            bodies.len(),
            2,
            "HAProxy did not reach both instances:\n{curl}"
        );
        let dig = step(&out, "dig @127.0.0.1");
        let srv: Vec<&str> = dig
            .lines()
            .filter(|l| l.ends_with(".node.dc1.consul."))
            .collect();
        assert_eq!(srv.len(), 2, "{dig}");
        // The SRV ports are the tasks' ports.
        for line in &srv {
            let port = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(
                tasks.contains(port),
                "SRV port {port} is no task's:\n{tasks}"
            );
        }
        let rendered = step(&out, "cat ");
        assert_eq!(
            rendered
                .lines()
                .filter(|l| l.starts_with("server demo_web."))
                .count(),
            2,
            "{rendered}"
        );
        let lb = step(&out, "catalogd service haproxy");
        assert!(
            lb.contains("haproxy\tdemo-lb") && lb.contains("passing"),
            "{lb}"
        );
        assert!(out.contains("demo: all steps succeeded"), "{out}");
        assert!(out.contains("demo: everything stopped"), "{out}");
        // Clean shutdown: every daemon logged its stop, no pid file is left, no task survives.
        let logs = state.path().join("log");
        for (piece, line) in [
            ("catalogd", "catalogd stopped"),
            ("offerd", "offerd stopped"),
            ("taskrun-1", "taskrun agent stopped"),
            ("taskrun-2", "taskrun agent stopped"),
            ("lbconf", "lbconf stopped"),
        ] {
            let log =
                std::fs::read_to_string(logs.join(format!("{piece}.log"))).unwrap_or_default();
            assert_eq!(
                log.matches(line).count(),
                round + 1,
                "{piece} did not stop cleanly in round {round}:\n{log}"
            );
        }
        let pids = std::fs::read_dir(state.path().join("run"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(pids, 0, "pid files left behind");
        for dir in ["taskrun-1", "taskrun-2"] {
            for e in std::fs::read_dir(state.path().join(dir).join("tasks"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let rec = std::fs::read_to_string(e.path().join("task.json")).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&rec).unwrap_or_default();
                if let Some(pid) = v["pid"].as_i64() {
                    assert!(
                        !cairn_tests::cluster::alive(pid as i32),
                        "task {} still runs",
                        e.path().display()
                    );
                }
            }
        }
    }
}

/// What the HA demo runs on: base + 0..16 for the daemons, base + 100..250 for the tasks.
const HA_DAEMONS: std::ops::Range<u16> = 0..16;
const HA_TASKS: std::ops::Range<u16> = 100..250;

/// Runs `scripts/demo ha --once` to its end (at most 10 minutes); its stdout, and every pid file
/// seen in the state's run/ while it ran (piece → pids).
fn run_ha_demo(state: &Path, base: u16) -> (String, BTreeMap<String, BTreeSet<i32>>) {
    let logs = tempfile::tempdir().expect("a directory for the demo's output");
    let file = |name: &str| std::fs::File::create(logs.path().join(name)).expect("output file");
    let mut child = demo_command(state, base, &["ha", "--once"])
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .expect("running scripts/demo ha");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut pids: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let status = loop {
        for e in std::fs::read_dir(state.join("run"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = std::fs::read_to_string(e.path()).ok();
            if let (Some(piece), Some(Ok(pid))) = (
                name.strip_suffix(".pid"),
                pid.map(|p| p.trim().parse::<i32>()),
            ) {
                pids.entry(piece.to_string()).or_default().insert(pid);
            }
        }
        if let Some(status) = child.try_wait().expect("waiting for the demo") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = demo_command(state, base, &["ha", "stop"]).output();
            panic!(
                "scripts/demo ha --once still running after 10 minutes:\n{}",
                std::fs::read_to_string(logs.path().join("stdout")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(logs.path().join("stdout")).unwrap_or_default();
    let stderr = std::fs::read_to_string(logs.path().join("stderr")).unwrap_or_default();
    assert!(status.success(), "demo failed:\n{stdout}\n{stderr}");
    (stdout, pids)
}

/// The ids, states and agents of the tasks a `offerd tasks` step lists.
fn task_rows(step: &str) -> Vec<(String, String, String)> {
    step.lines()
        .filter(|l| l.starts_with("demo_web."))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[3].to_string())
        })
        .collect()
}

/// The lines of a step's output (without the `$ cmd` line and the demo's own lines).
fn output_lines(step: &str) -> Vec<&str> {
    step.lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with("demo: "))
        .collect()
}

/// The `say` line starting with `prefix`, without it.
fn said<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("demo: {prefix}")))
        .unwrap_or_else(|| panic!("no line `demo: {prefix}` in:\n{out}"))
}

/// The (X-Consul-Index, value) each replica answered in a KV step, by port.
fn kv_answers(step: &str) -> BTreeMap<String, (String, String)> {
    let mut answers = BTreeMap::new();
    let mut lines = output_lines(step).into_iter();
    while let Some(port) = lines.next() {
        let port = port.strip_prefix(':').unwrap_or_else(|| panic!("{step}"));
        let index = lines.next().unwrap_or_default().to_ascii_lowercase();
        let index = index
            .strip_prefix("x-consul-index:")
            .unwrap_or_else(|| panic!("no index for :{port} in:\n{step}"))
            .trim()
            .to_string();
        let value = lines.next().unwrap_or_default().to_string();
        answers.insert(port.to_string(), (index, value));
    }
    answers
}

#[test]
fn demo_ha_fails_over_catalogd_and_offerd_and_stops_cleanly() {
    if !cairn_etcd::testing::etcd_available("demo_ha (scripts/demo ha needs etcd)") {
        return;
    }
    let state = tempfile::tempdir().expect("state dir");
    let base = free_base(HA_DAEMONS, HA_TASKS);
    let (out, pids) = run_ha_demo(state.path(), base);
    let addr = |offset: u16| format!("127.0.0.1:{}", base + offset);
    let catalogs: BTreeSet<String> = (0..3).map(addr).collect();
    let offerds: BTreeSet<String> = (3..5).map(addr).collect();

    // etcd: three members, one of them etcd's leader.
    let etcd = step(&out, "etcdctl");
    assert_eq!(etcd.matches("| http://127.0.0.1:").count(), 3, "{etcd}");
    assert_eq!(etcd.matches("|      true |").count(), 1, "{etcd}");

    // catalogd: every replica names one leader; a write through one is read back through every
    // replica at one X-Consul-Index.
    let leaders = output_lines(step(&out, "for p in"));
    assert_eq!(leaders.len(), 3, "{out}");
    let before = leaders[0].trim_matches('"').to_string();
    assert!(
        leaders.iter().all(|l| l.trim_matches('"') == before),
        "{leaders:?}"
    );
    assert!(catalogs.contains(&before), "{before} is no replica: {out}");
    let peers = step(&out, &format!("curl -s {}/v1/status/peers", addr(0)));
    for c in &catalogs {
        assert!(peers.contains(c), "{peers}");
    }
    let kv = kv_answers(
        steps(&out, "for p in")
            .into_iter()
            .find(|s| s.contains("greeting?raw"))
            .expect("KV step"),
    );
    assert_eq!(kv.len(), 3, "{kv:?}");
    let indexes: BTreeSet<&String> = kv.values().map(|(i, _)| i).collect();
    assert_eq!(
        indexes.len(),
        1,
        "replicas answered different indexes: {kv:?}"
    );
    assert!(
        kv.values().all(|(_, v)| v.starts_with("written through :")),
        "{kv:?}"
    );

    // kill -9 of the leader; the survivors name another of them within the lease TTL + 1 s.
    let kill = step(&out, "kill -9");
    assert!(
        kill.contains(&format!("the catalogd leader ({before})")),
        "{kill}"
    );
    let survivors: BTreeSet<String> = catalogs.iter().filter(|c| **c != before).cloned().collect();
    let after_step = steps(&out, "curl -s 127.0.0.1:")
        .into_iter()
        .find(|s| s.contains("# the survivors"))
        .expect("the survivors' leader step");
    let after: Vec<&str> = output_lines(after_step)
        .iter()
        .map(|l| l.trim_matches('"'))
        .collect();
    assert_eq!(after.len(), 2, "{after_step}");
    assert_eq!(after[0], after[1], "{after_step}");
    assert_ne!(after[0], before, "the leader did not change:\n{out}");
    assert!(
        survivors.contains(after[0]),
        "{} is no survivor:\n{out}",
        after[0]
    );
    let named = said(&out, "new catalogd leader: ");
    assert!(named.starts_with(after[0]), "{named}");
    let secs: f64 = regex::Regex::new(r"named ([0-9.]+)s after the kill")
        .expect("regex")
        .captures(named)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("{named}"));
    assert!(
        secs <= 3.0,
        "new leader after {secs}s, past the lease TTL (2s) + 1s"
    );
    // The dead replica left the peers; a write through the CLI (given every replica) is
    // accepted and read back through both survivors at one index.
    let peers_after = steps(&out, "curl -s 127.0.0.1:")
        .into_iter()
        .find(|s| s.contains("/v1/status/peers") && !s.contains("# the live replicas"))
        .expect("peers after the failover");
    assert!(!peers_after.contains(&before), "{peers_after}");
    assert!(
        step(&out, "catalogd kv put").contains("Success! Data written to: demo/greeting"),
        "{out}"
    );
    let kv_after = kv_answers(
        steps(&out, "for p in")
            .into_iter()
            .filter(|s| s.contains("greeting?raw"))
            .nth(1)
            .expect("the KV step after the failover"),
    );
    let ports: BTreeSet<String> = kv_after.keys().map(|p| format!("127.0.0.1:{p}")).collect();
    assert_eq!(ports, survivors, "{kv_after:?}");
    assert!(
        kv_after
            .values()
            .all(|(_, v)| v == "written after the failover"),
        "{kv_after:?}"
    );
    assert_eq!(
        kv_after
            .values()
            .map(|(i, _)| i)
            .collect::<BTreeSet<_>>()
            .len(),
        1,
        "{kv_after:?}"
    );

    // offerd: both replicas name the leader; after its kill -9 the standby names itself.
    let offerd_leaders = output_lines(
        steps(&out, "for p in")
            .into_iter()
            .find(|s| s.contains("/v2/leader"))
            .expect("/v2/leader step"),
    );
    assert_eq!(offerd_leaders.len(), 2, "{out}");
    let off_before = offerd_leaders[0]
        .trim_start_matches("{\"leader\":\"")
        .trim_end_matches("\"}")
        .to_string();
    assert!(
        offerd_leaders.iter().all(|l| l.contains(&off_before)),
        "{offerd_leaders:?}"
    );
    assert!(offerds.contains(&off_before), "{off_before}");
    let off_kill = steps(&out, "kill -9")[1];
    assert!(
        off_kill.contains(&format!("the offerd leader ({off_before})")),
        "{off_kill}"
    );
    let standby = offerds
        .iter()
        .find(|o| **o != off_before)
        .expect("a standby");
    let names_itself = step(&out, &format!("curl -s {standby}/v2/leader"));
    assert!(
        names_itself.contains(&format!("{{\"leader\":\"{standby}\"}}")),
        "{names_itself}"
    );

    // The app's tasks: unchanged across the failover (none restarted), then the scale-up through
    // the survivor launches a third on the third agent.
    let listed = steps(&out, "offerd tasks /demo/web");
    assert_eq!(listed.len(), 3, "{out}");
    let (first, second, third) = (
        task_rows(listed[0]),
        task_rows(listed[1]),
        task_rows(listed[2]),
    );
    assert_eq!(first.len(), 2, "{}", listed[0]);
    assert_eq!(
        first, second,
        "the tasks changed across the offerd failover:\n{out}"
    );
    assert!(
        third.iter().all(|(_, state, _)| state == "TASK_RUNNING"),
        "{}",
        listed[2]
    );
    let ids = |rows: &[(String, String, String)]| {
        rows.iter().map(|r| r.0.clone()).collect::<BTreeSet<_>>()
    };
    let launched: Vec<String> = ids(&third).difference(&ids(&first)).cloned().collect();
    assert_eq!(launched.len(), 1, "{}", listed[2]);
    assert!(ids(&first).is_subset(&ids(&third)), "{}", listed[2]);
    let agents: BTreeSet<&String> = third.iter().map(|r| &r.2).collect();
    assert_eq!(agents.len(), 3, "{}", listed[2]);
    assert!(
        said(&out, "scale-up launched ").contains(&launched[0]),
        "{out}"
    );
    // The app answered every request through both failovers, and answers from three instances.
    let traffic = said(
        &out,
        "requests to web.demo through HAProxy during both failovers: ",
    );
    let counts: Vec<u64> = regex::Regex::new(r"(\d+) sent, (\d+) answered")
        .expect("regex")
        .captures(traffic)
        .map(|c| vec![c[1].parse().unwrap_or(0), c[2].parse().unwrap_or(0)])
        .unwrap_or_else(|| panic!("{traffic}"));
    assert!(counts[0] > 0 && counts[0] == counts[1], "{traffic}");
    let curl = step(&out, "curl -H 'Host: web.demo'");
    let bodies: BTreeSet<&str> = curl
        .lines()
        .filter(|l| l.starts_with("hello from demo_web."))
        .collect();
    assert_eq!(
        bodies.len(),
        3,
        "HAProxy did not reach three instances:\n{curl}"
    );

    assert!(out.contains("demo: all steps succeeded"), "{out}");
    assert!(out.contains("demo: everything stopped"), "{out}");

    // Nothing left behind: no pid file, no process the demo started (each pid its pid files
    // named, if still there, runs something else: not one of the demo's ports or its state),
    // the survivors logged a clean stop, no task survives.
    let left = std::fs::read_dir(state.path().join("run"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "pid files left behind");
    for piece in [
        "etcd-1",
        "etcd-2",
        "etcd-3",
        "catalogd-1",
        "catalogd-2",
        "catalogd-3",
        "offerd-1",
        "offerd-2",
        "taskrun-1",
        "taskrun-2",
        "taskrun-3",
        "lbconf",
        "haproxy",
        "traffic",
    ] {
        assert!(
            pids.contains_key(piece),
            "no pid file of {piece} seen: {pids:?}"
        );
    }
    let ours = |pid: i32| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        cmdline.contains(&state.path().display().to_string())
            || HA_DAEMONS.clone().any(|o| cmdline.contains(&addr(o)))
    };
    for (piece, set) in &pids {
        for &pid in set {
            assert!(
                !(cairn_tests::cluster::alive(pid) && ours(pid)),
                "{piece} (pid {pid}) still runs"
            );
        }
    }
    let logs = state.path().join("log");
    let log = |piece: &str| {
        std::fs::read_to_string(logs.join(format!("{piece}.log"))).unwrap_or_default()
    };
    for c in &survivors {
        let piece = format!(
            "catalogd-{}",
            c.rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .map_or(0, |p| p - base + 1)
        );
        assert!(
            log(&piece).contains("catalogd stopped"),
            "{piece} did not stop cleanly:\n{}",
            log(&piece)
        );
    }
    let off_piece = format!(
        "offerd-{}",
        standby
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .map_or(0, |p| p - base - 2)
    );
    assert!(
        log(&off_piece).contains("offerd stopped"),
        "{off_piece} did not stop cleanly:\n{}",
        log(&off_piece)
    );
    for piece in ["taskrun-1", "taskrun-2", "taskrun-3"] {
        assert!(
            log(piece).contains("taskrun agent stopped"),
            "{piece}:\n{}",
            log(piece)
        );
    }
    assert!(
        log("lbconf").contains("lbconf stopped"),
        "{}",
        log("lbconf")
    );
    for dir in ["taskrun-1", "taskrun-2", "taskrun-3"] {
        for e in std::fs::read_dir(state.path().join("ha").join(dir).join("tasks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let rec = std::fs::read_to_string(e.path().join("task.json")).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&rec).unwrap_or_default();
            if let Some(pid) = v["pid"].as_i64() {
                assert!(
                    !cairn_tests::cluster::alive(pid as i32),
                    "task {} still runs",
                    e.path().display()
                );
            }
        }
    }
}
