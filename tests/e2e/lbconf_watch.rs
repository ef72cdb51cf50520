//! `lbconf watch` driving a real HAProxy (master-worker, runtime API socket) from a real
//! catalogd, with real HTTP backends: instance churn goes through the runtime API with no
//! reload, a new service reloads, a rejected config keeps the running one and later changes
//! still apply; an exact host beats a wildcard and keeps its route against a later claimer;
//! reloads are paced by --reload-interval.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::lb::{Balancer, BalancerOpts, Proc};
use cairn_tests::{Catalogd, free_port};
use serde_json::json;

/// A Python HTTP server answering `/` with `name`, listening when this returns (a request
/// HAProxy forwards before the server listens is answered 503 after HAProxy's retries).
pub(crate) fn backend(dir: &Path, name: &str) -> (Proc, u16) {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), name).unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    cairn_tests::wait_listening(port, &format!("backend {name} (python3 -m http.server)"));
    (Proc(child), port)
}

pub(crate) async fn get(port: u16, host: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .ok()?;
    let r = client
        .get(format!("http://127.0.0.1:{port}/"))
        .header("Host", host)
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 200 {
        return Some(format!("status {}", r.status().as_u16()));
    }
    r.text().await.ok()
}

/// The set of bodies seen over `n` requests.
async fn seen(port: u16, host: &str, n: usize) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for _ in 0..n {
        out.insert(get(port, host).await.unwrap_or_else(|| "no answer".into()));
    }
    out
}

async fn eventually(what: &str, log: &Path, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok().await {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; lbconf log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(str::trim_start).map(str::to_owned))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn count(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[tokio::test]
async fn runtime_updates_without_reload_and_reloads_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_a, port_a) = backend(d, "A");
    let (_b, port_b) = backend(d, "B");
    let (_c, port_c) = backend(d, "C");
    let c = Catalogd::start().await;
    let reg = |node: &str, svc: &str, port: u16, host: &str| {
        json!({"Node": node, "Address": "127.0.0.1",
               "Service": {"ID": node, "Service": svc, "Port": port, "Meta": {"lb_vhost": host}}})
    };
    c.http
        .put_json("/v1/catalog/register", &reg("a", "web", port_a, "web.test"))
        .await;

    // A validator that is the real `haproxy -c`, except that it refuses any config routing
    // bad.test, and hangs (with a child of its own) on one routing slow.test: how the test makes
    // lbconf meet a config HAProxy rejects, and a validation that never ends.
    let validator = d.join("haproxy-check");
    let hung_pid = d.join("hung.pid");
    std::fs::write(
        &validator,
        format!(
            "#!/bin/sh\nfor f; do :; done\n\
             if grep -q bad.test \"$f\"; then echo \"[ALERT] bad.test refused\" >&2; exit 1; fi\n\
             if grep -q slow.test \"$f\"; then sleep 600 & echo $! > {hung}; wait; fi\n\
             exec haproxy \"$@\"\n",
            hung = hung_pid.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&validator)
        .status()
        .unwrap();

    let lb = Balancer::start(
        d,
        &c.url,
        BalancerOpts {
            validator: Some(validator.clone()),
            spare_slots: Some(2),
            command_timeout: Some("2s"),
            ..Default::default()
        },
    )
    .await;
    let (http_port, cfg, lb_log, hap_log) = (
        lb.http_port,
        lb.cfg.clone(),
        lb.lb_log.clone(),
        lb.haproxy_log.clone(),
    );
    eventually("web.test served by A", &lb_log, async || {
        get(http_port, "web.test").await.as_deref() == Some("A")
    })
    .await;
    let reloads = || count(&hap_log, "Reloading HAProxy");
    assert_eq!(reloads(), 0);

    // Instance churn: B joins, A leaves, A returns: all through the runtime API, no reload.
    c.http
        .put_json("/v1/catalog/register", &reg("b", "web", port_b, "web.test"))
        .await;
    eventually("A and B both served", &lb_log, async || {
        seen(http_port, "web.test", 8).await == ["A".to_string(), "B".to_string()].into()
    })
    .await;
    c.http
        .put_json("/v1/catalog/deregister", &json!({"Node": "a"}))
        .await;
    eventually("only B served", &lb_log, async || {
        seen(http_port, "web.test", 6).await == ["B".to_string()].into()
    })
    .await;
    c.http
        .put_json("/v1/catalog/register", &reg("a", "web", port_a, "web.test"))
        .await;
    eventually("A back", &lb_log, async || {
        seen(http_port, "web.test", 8).await.contains("A")
    })
    .await;
    // lbconf logs a runtime update after HAProxy has it, so the last line may trail the traffic.
    eventually("three runtime updates logged", &lb_log, async || {
        count(&lb_log, "no reload") >= 3
    })
    .await;
    assert_eq!(reloads(), 0, "instance changes must not reload HAProxy");
    // The config file follows the runtime updates (a moment later, off the change path), so a
    // restarted HAProxy starts with what the running one serves: A and B in web's slots.
    eventually("the config file shows A and B", &lb_log, async || {
        let text = std::fs::read_to_string(&cfg).unwrap_or_default();
        [port_a, port_b]
            .iter()
            .all(|p| text.contains(&format!("127.0.0.1:{p}")))
    })
    .await;

    // A new service is a structural change: config rewritten, validated, HAProxy reloaded.
    c.http
        .put_json("/v1/catalog/register", &reg("c", "api", port_c, "api.test"))
        .await;
    eventually("api.test served by C", &lb_log, async || {
        get(http_port, "api.test").await.as_deref() == Some("C")
    })
    .await;
    assert!(reloads() >= 1, "a new service reloads HAProxy");
    assert!(
        seen(http_port, "web.test", 8).await.contains("B"),
        "web keeps both instances"
    );

    // A config the validator refuses: reported, the running config stays...
    let before = std::fs::read_to_string(&cfg).unwrap();
    c.http
        .put_json("/v1/catalog/register", &reg("x", "bad", port_c, "bad.test"))
        .await;
    eventually("the rejection logged", &lb_log, async || {
        count(&lb_log, "rejected by haproxy -c") >= 1
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        before,
        "a rejected config never replaces the running one"
    );
    assert_eq!(get(http_port, "api.test").await.as_deref(), Some("C"));
    // A validation that hangs is killed at --command-timeout, its children with it, and
    // counts as a rejection.
    c.http
        .put_json("/v1/catalog/deregister", &json!({"Node": "x"}))
        .await;
    c.http
        .put_json(
            "/v1/catalog/register",
            &reg("y", "slow", port_c, "slow.test"),
        )
        .await;
    eventually("the hung validation killed", &lb_log, async || {
        count(&lb_log, "timed out after 2.000 s") >= 1
    })
    .await;
    let hung: i32 = std::fs::read_to_string(&hung_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually("the validator's child gone", &lb_log, async || {
        !running(hung)
    })
    .await;
    assert!(!std::fs::read_to_string(&cfg).unwrap().contains("slow.test"));
    // ...and once the bad services are gone, later valid changes apply again.
    c.http
        .put_json("/v1/catalog/deregister", &json!({"Node": "y"}))
        .await;
    c.http
        .put_json(
            "/v1/catalog/register",
            &reg("c2", "shop", port_c, "shop.test"),
        )
        .await;
    eventually("shop.test served", &lb_log, async || {
        get(http_port, "shop.test").await.as_deref() == Some("C")
    })
    .await;
}

#[tokio::test]
async fn exact_hosts_win_claims_hold_and_reloads_are_paced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_a, port_a) = backend(d, "A");
    let (_w, port_w) = backend(d, "W");
    let (_x, port_x) = backend(d, "X");
    let c = Catalogd::start().await;
    let reg = |node: &str, svc: &str, port: u16, host: &str| {
        json!({"Node": node, "Address": "127.0.0.1",
               "Service": {"ID": node, "Service": svc, "Port": port, "Meta": {"lb_vhost": host}}})
    };
    // The wildcard's service sorts first by name: the order of names must not matter.
    c.http
        .put_json(
            "/v1/catalog/register",
            &reg("w", "aaa-wild", port_w, "*.wild.test"),
        )
        .await;
    c.http
        .put_json(
            "/v1/catalog/register",
            &reg("a", "web", port_a, "a.wild.test"),
        )
        .await;
    let lb = Balancer::start(
        d,
        &c.url,
        BalancerOpts {
            reload_interval: Some("3s"),
            ..Default::default()
        },
    )
    .await;
    let (http_port, lb_log, hap_log) = (lb.http_port, lb.lb_log.clone(), lb.haproxy_log.clone());
    eventually(
        "a.wild.test served by its exact route",
        &lb_log,
        async || get(http_port, "a.wild.test").await.as_deref() == Some("A"),
    )
    .await;
    assert_eq!(get(http_port, "z.wild.test").await.as_deref(), Some("W"));
    assert_eq!(
        get(http_port, "wild.test").await.as_deref(),
        Some("status 503")
    );

    // A later service claiming a.wild.test is reported and does not take it.
    c.http
        .put_json(
            "/v1/catalog/register",
            &reg("x", "aardvark", port_x, "a.wild.test"),
        )
        .await;
    eventually("the conflict reported", &lb_log, async || {
        count(&lb_log, "already routed to service") >= 1
    })
    .await;
    assert_eq!(get(http_port, "a.wild.test").await.as_deref(), Some("A"));

    // Twenty new services as fast as catalogd takes them: each is a reload on its own, but
    // reloads come at least 3 s apart, and the last one carries every service.
    let reloads = || count(&hap_log, "Reloading HAProxy");
    let before = reloads();
    let started = Instant::now();
    for i in 0..20 {
        c.http
            .put_json(
                "/v1/catalog/register",
                &reg(
                    &format!("s{i}"),
                    &format!("svc{i}"),
                    port_x,
                    &format!("s{i}.test"),
                ),
            )
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..20 {
        while get(http_port, &format!("s{i}.test")).await.as_deref() != Some("X") {
            assert!(Instant::now() < deadline, "s{i}.test never served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = reloads() - before;
    // One reload may be due at once, then at most one per started 3 s.
    let allowed = 1 + (elapsed / 3.0).ceil() as usize;
    assert!(
        (1..=allowed).contains(&done),
        "{done} reloads for 20 changes over {elapsed:.1} s (at most {allowed} allowed)"
    );
}
