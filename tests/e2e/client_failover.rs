//! Clients with several addresses (issue 16): `--catalog URL[,URL...]` and `--offerd
//! URL[,URL...]` (and the same lists in `CAIRN_CATALOG` / `CAIRN_OFFERD`) reach the first
//! replica that answers. Real binaries throughout: two `catalogd serve` processes and the
//! `catalogd` client commands; a taskrun agent given a dead offerd address before the live one
//! registers, runs a task and reports it; the `offerd` client commands fail over the same way.
//! A dead address is a port bound and released: connections to it are refused.

use std::process::{Command, Output};

use cairn_tests::cluster::{Cluster, ClusterOpts, sleep_app};
use cairn_tests::daemon::{ANY_PORT, Daemon};
use cairn_tests::{Catalogd, bin, free_port};

/// Variables of the test's own environment that would change where a client goes.
const CLIENT_ENV: &[&str] = &[
    "CAIRN_CATALOG",
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_SSL",
    "CAIRN_TOKEN",
    "CONSUL_HTTP_TOKEN",
    "CAIRN_OFFERD",
    "CAIRN_OFFERD_TOKEN",
    "CAIRN_OFFERD_CREDENTIALS",
];

/// `http://127.0.0.1:PORT` with nothing listening.
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Runs `program args...` with a clean client environment plus `env`, logging at info.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin(program));
    for name in CLIENT_ENV {
        cmd.env_remove(name);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_clients_answer_from_the_live_replica() {
    let mut a = Catalogd::start().await;
    let b = Catalogd::start().await;
    for (server, value) in [(&a, "from-a"), (&b, "from-b")] {
        let r = server.http.put("/v1/kv/where", value).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let both = format!("{},{}", a.url, b.url);

    // Both up: the first one listed answers.
    let out = run("catalogd", &["kv", "get", "where", "--catalog", &both], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "from-a\n");

    // A dead address first: the answer comes from the live one, and the failover is logged
    // once with both URLs.
    let dead = dead_url();
    let list = format!("{dead},{}", b.url);
    let out = run("catalogd", &["kv", "get", "where", "--catalog", &list], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "from-b\n");
    let log = stderr(&out);
    let failovers: Vec<&str> = log.lines().filter(|l| l.contains("failing over")).collect();
    assert_eq!(failovers.len(), 1, "{log}");
    assert!(
        failovers[0].contains(&dead) && failovers[0].contains(&b.url),
        "{log}"
    );

    // A write to a refused address was never sent: it goes to the live one.
    let out = run(
        "catalogd",
        &["kv", "put", "written", "once", "--catalog", &list],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let r = b.http.get("/v1/kv/written?raw").await;
    assert_eq!((r.status, r.text().as_str()), (200, "once"));

    // The same list in the environment, and a replica that died: kill -9 of A.
    a.kill9();
    let out = run(
        "catalogd",
        &["kv", "get", "where"],
        &[("CAIRN_CATALOG", &both)],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "from-b\n");

    // Every address down: one error, exit 1, naming them.
    let out = run(
        "catalogd",
        &[
            "kv",
            "get",
            "where",
            "--catalog",
            &format!("{},{dead}", a.url),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("every other address"), "{out:?}");

    // A list with an empty or a repeated entry is refused, naming it.
    for (list, named) in [
        (format!("{},,{}", a.url, b.url), "entry 2 of 3"),
        (format!("{},{}/", b.url, b.url), "listed twice"),
    ] {
        let out = run("catalogd", &["kv", "get", "where", "--catalog", &list], &[]);
        assert!(!out.status.success(), "{list}: {out:?}");
        assert!(stderr(&out).contains(named), "{list}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn taskrun_and_the_offerd_cli_reach_offerd_past_a_dead_address() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 0,
        ..Default::default()
    })
    .await;
    let dead = dead_url();
    let offerds = format!("{dead},{}", c.offerd.url);
    let dir = c.tmp.path().join("agent-0");
    let base = c.port_base(0);
    let mut args: Vec<String> = vec![
        "agent".into(),
        "--offerd".into(),
        offerds.clone(),
        "--catalog".into(),
        c.catalog.url.clone(),
        "--node".into(),
        "node-0".into(),
        "--address".into(),
        "127.0.0.1".into(),
        "--http-addr".into(),
        ANY_PORT.into(),
        "--work-dir".into(),
        dir.display().to_string(),
        "--resources".into(),
        format!("cpus:4;mem:2048;disk:1000;ports:[{base}-{}]", base + 99),
    ];
    args.extend(c.agent_args.iter().cloned());
    let agent = Daemon::start_any_port(
        "taskrun",
        args,
        "/health",
        c.tmp.path().join("taskrun-0.log"),
    )
    .await;
    c.agents.push(agent);
    c.agent_dirs.push(dir);

    // Registration (a POST: refused, so never sent to the dead one) reaches the live offerd.
    c.wait_for("node-0 to register through the list", 60, || async {
        let agents = c.offerd.http.get("/v1/agents").await.value();
        let known = agents
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["node"] == "node-0"));
        known.then_some(())
    })
    .await;
    // The desired-set long poll and the status reports go the same way: a task runs.
    let r = c.post_app(&sleep_app("/failover/sleep", 1)).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    c.wait_running("/failover/sleep", 1, 60).await;
    let log = c.agents[0].log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("failing over") && l.contains(&dead)),
        "the failover is logged with the dead address:\n{log}"
    );

    // The offerd client commands, from the flag and from CAIRN_OFFERD.
    let out = run("offerd", &["--offerd", &offerds, "apps", "--json"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("/failover/sleep"), "{out:?}");
    let out = run(
        "offerd",
        &["tasks", "/failover/sleep"],
        &[("CAIRN_OFFERD", &offerds)],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("failover"), "{out:?}");

    // taskrun refuses a list with an empty entry before starting (a usage error).
    let out = run(
        "taskrun",
        &[
            "agent",
            "--offerd",
            &format!("{},", c.offerd.url),
            "--work-dir",
            c.tmp.path().join("never").to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--offerd"), "{out:?}");
    assert!(stderr(&out).contains("entry 2 of 2"), "{out:?}");
}
