//! One watch per distinct dependency, shared by every template: 20 templates that all read the
//! same 3 dependencies (a key, a service, a KV prefix) cost catalogd 3 parked blocking queries,
//! and each change costs about one request (the woken watch asking again) — not one per
//! template. Counted on a dedicated catalogd with its own `/metrics`
//! (`catalogd_http_requests_total` counts every request at its start, `/metrics` reads and the
//! test's own writes included, which the test subtracts; `catalogd_blocking_queries_waiting` is
//! the number of queries parked right now). `--once` reads each dependency exactly once.

use std::time::{Duration, Instant};

use cairn_tests::Catalogd;
use serde_json::json;

use crate::tmpl_common::{SOON, Watcher, Work, register, run};

const TEMPLATES: usize = 20;
const DEPS: u64 = 3;

/// catalogd's counters, with the requests this test made itself.
struct Meter<'a> {
    c: &'a Catalogd,
    own: u64,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    requests: u64,
    blocking_started: u64,
    waiting: u64,
    /// Requests this test had made when the reading was taken (itself included).
    own: u64,
}

impl Meter<'_> {
    async fn read(&mut self) -> Reading {
        self.own += 1;
        let text = self.c.http.get("/metrics").await.text();
        let get = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == name).then(|| v.trim().parse::<f64>().ok())?
                })
                .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}")) as u64
        };
        Reading {
            requests: get("catalogd_http_requests_total"),
            blocking_started: get("catalogd_blocking_queries_total"),
            waiting: get("catalogd_blocking_queries_waiting"),
            own: self.own,
        }
    }

    async fn put_kv(&mut self, key: &str, value: &str) {
        self.own += 1;
        crate::tmpl_common::put_kv(self.c, key, value).await;
    }

    async fn register_web(&mut self, n: u16) {
        self.own += 1;
        register(
            self.c,
            &json!({"Node": format!("n{n}"), "Address": format!("127.0.0.{}", 10 + n),
                    "Service": {"ID": format!("web-{n}"), "Service": "web", "Port": 8000 + n}}),
        )
        .await;
    }

    /// Waits until exactly `want` blocking queries are parked (readings count as own requests).
    async fn wait_parked(&mut self, want: u64) -> Reading {
        let start = Instant::now();
        loop {
            let r = self.read().await;
            if r.waiting == want {
                return r;
            }
            assert!(
                start.elapsed() < SOON,
                "expected {want} parked blocking queries, still {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Requests made by others than this test between two readings.
fn others(a: &Reading, b: &Reading) -> u64 {
    (b.requests - a.requests) - (b.own - a.own)
}

/// Reads the key, the web instances and the `s/dir/` listing.
const SHARED: &str = "{{ key_or_default(path=\"s/a\", default=\"-\") }} {% for s in service(name=\"web\") %}{{ s.Port }},{% endfor %} {% for p in ls(prefix=\"s/dir\") %}{{ p.Key }},{% endfor %}\n";

fn expected(i: usize, a: &str, ports: &str, keys: &str) -> String {
    format!("{i}: {a} {ports} {keys}\n")
}

#[tokio::test]
async fn twenty_templates_share_three_watches() {
    let c = Catalogd::start().await;
    let mut m = Meter { c: &c, own: 0 };
    m.register_web(1).await;
    m.put_kv("s/a", "a0").await;
    m.put_kv("s/dir/k0", "x").await;
    let work = Work::new();
    let mut args = vec!["--wait".to_string(), "0s".to_string()];
    for i in 0..TEMPLATES {
        let tpl = work.write(&format!("t{i}.tmpl"), &format!("{i}: {SHARED}"));
        args.push("-t".into());
        args.push(format!(
            "{}:{}",
            tpl.display(),
            work.p(&format!("out/{i}.txt"))
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // catalogd puts its own node in the catalog (the `consul` service, serfHealth) just after it
    // starts; tmpl's catalog feed reads again on any catalog change, so the count starts once
    // that write is in.
    let deadline = Instant::now() + SOON;
    while c.http.get("/v1/catalog/service/consul").await.value() == json!([]) {
        assert!(
            Instant::now() < deadline,
            "catalogd never listed its own consul service"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = m.read().await;
    let w = Watcher::start(&c.url, work.root(), &args).await;
    let (mut a, mut ports, mut keys) = ("a0".to_string(), "8001,".to_string(), "k0,".to_string());
    for i in 0..TEMPLATES {
        w.wait_file(
            &work,
            &format!("out/{i}.txt"),
            &expected(i, &a, &ports, &keys),
        )
        .await;
    }
    let parked = m.wait_parked(DEPS).await;
    let startup = others(&before, &parked);
    println!(
        "startup: {TEMPLATES} templates rendered with {startup} requests to catalogd, {} parked blocking queries",
        parked.waiting
    );
    assert!(
        startup <= 2 * DEPS,
        "startup costs one plain read and one blocking read per distinct dependency \
         ({} at most), not per template: {startup}",
        2 * DEPS
    );

    // Two changes of each dependency, one at a time.
    let changes = 6u64;
    for round in 1..=2u16 {
        a = format!("a{round}");
        m.put_kv("s/a", &a).await;
        wait_all(&w, &work, &a, &ports, &keys).await;

        m.register_web(1 + round).await;
        ports.push_str(&format!("{},", 8001 + round));
        wait_all(&w, &work, &a, &ports, &keys).await;

        m.put_kv(&format!("s/dir/k{round}"), "x").await;
        keys.push_str(&format!("k{round},"));
        wait_all(&w, &work, &a, &ports, &keys).await;
    }
    let after = m.wait_parked(DEPS).await;
    // `wait_parked` may have read more than once; each reading is counted as our own.
    let during = others(&parked, &after);
    let blocking = after.blocking_started - parked.blocking_started;
    println!(
        "{changes} changes, each re-rendering all {TEMPLATES} templates: tmpl made {during} requests \
         ({blocking} blocking queries started); without sharing it would be at least {}",
        changes * TEMPLATES as u64
    );
    assert!(
        during <= DEPS * changes,
        "at most one request per watch woken per change ({}), far below one per template \
         ({}): {during}",
        DEPS * changes,
        changes * TEMPLATES as u64
    );
    assert!(
        during >= changes,
        "each change is read at least once: {during}"
    );
    assert_eq!(
        after.waiting, DEPS,
        "still exactly one parked query per dependency"
    );
    // The log line follows the file's rename, so the last one may trail the file by a moment.
    let renders = TEMPLATES * (1 + changes as usize);
    w.wait_until(
        "the log to show every render",
        Duration::from_secs(5),
        || w.log_count("rendered") >= renders,
    )
    .await;
    assert_eq!(
        w.log_count("rendered"),
        renders,
        "every template re-rendered on every change, and only then; log:\n{}",
        w.log_text()
    );
}

async fn wait_all(w: &Watcher, work: &Work, a: &str, ports: &str, keys: &str) {
    for i in 0..TEMPLATES {
        w.wait_file(work, &format!("out/{i}.txt"), &expected(i, a, ports, keys))
            .await;
    }
}

#[tokio::test]
async fn once_reads_each_dependency_once() {
    let c = Catalogd::start().await;
    let mut m = Meter { c: &c, own: 0 };
    m.register_web(1).await;
    m.put_kv("s/a", "a0").await;
    m.put_kv("s/dir/k0", "x").await;
    let work = Work::new();
    let mut args = vec!["watch".to_string(), "--once".to_string()];
    for i in 0..TEMPLATES {
        let tpl = work.write(&format!("t{i}.tmpl"), &format!("{i}: {SHARED}"));
        args.push("-t".into());
        args.push(format!(
            "{}:{}",
            tpl.display(),
            work.p(&format!("out/{i}.txt"))
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = m.read().await;
    run(&c.url, work.root(), &args).assert_code(0);
    let after = m.read().await;
    let requests = others(&before, &after);
    println!("--once with {TEMPLATES} templates over {DEPS} dependencies: {requests} requests");
    for i in 0..TEMPLATES {
        assert_eq!(
            work.read(&format!("out/{i}.txt")),
            Some(expected(i, "a0", "8001,", "k0,"))
        );
    }
    assert_eq!(requests, DEPS, "one read per distinct dependency");
}
