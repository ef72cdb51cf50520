//! catalogd replicated on a real etcd cluster: three `catalogd serve --etcd` processes on a
//! three-member etcd, driven over HTTP as clients drive Consul servers. Any replica answers,
//! writes through one are read through the others at the same index, a CAS keeps its meaning
//! across replicas, one leader enforces TTLs and a successor takes over when it is killed, and
//! acknowledged writes survive the loss of an etcd member.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_etcd::testing::EtcdCluster;
use cairn_tests::{Catalogd, Http, wait_for};
use serde_json::{Value, json};

/// Lease TTL of the replicas: a killed leader is replaced within it (plus a second).
const LEASE_TTL: Duration = Duration::from_secs(2);

struct Replicas {
    etcd: EtcdCluster,
    catalogs: Vec<Catalogd>,
}

impl Replicas {
    /// `n` catalogd replicas on a fresh three-member etcd; `None` without etcd (outside CI).
    async fn start(n: usize) -> Option<Replicas> {
        let etcd = EtcdCluster::start(3).await?;
        let urls = etcd.endpoints();
        let mut catalogs = Vec::new();
        for i in 0..n {
            let node = format!("server-{i}");
            catalogs.push(
                Catalogd::start_with(&[
                    "--node",
                    &node,
                    "--etcd",
                    &urls,
                    "--etcd-lease-ttl",
                    "2s",
                    "--session-ttl-min",
                    "1s",
                ])
                .await,
            );
        }
        Some(Replicas { etcd, catalogs })
    }

    fn http(&self, i: usize) -> &Http {
        &self.catalogs[i].http
    }

    /// Waits until every live replica names the same leader, and returns its index.
    async fn leader(&self, live: &[usize]) -> usize {
        wait_for(
            "the replicas to agree on a leader",
            Duration::from_secs(15),
            || self.logs(),
            async || {
                let mut names = Vec::new();
                for &i in live {
                    let r = self.http(i).get("/v1/status/leader").await;
                    names.push(r.json::<String>());
                }
                let first = names.first()?.clone();
                if first.is_empty() || names.iter().any(|n| *n != first) {
                    return None;
                }
                live.iter()
                    .copied()
                    .find(|&i| first.ends_with(&format!(":{}", self.catalogs[i].port)))
            },
        )
        .await
    }

    fn logs(&self) -> String {
        logs(&self.catalogs)
    }
}

/// Every replica's log, for a failure's message.
fn logs(catalogs: &[Catalogd]) -> String {
    catalogs
        .iter()
        .enumerate()
        .map(|(i, c)| format!("--- catalogd {i}\n{}", c.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn any_replica_answers_and_all_agree_on_the_state_and_its_index() {
    let Some(r) = Replicas::start(3).await else {
        return;
    };
    let put = r.http(0).put("/v1/kv/app/config", "v1").await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.text(), "true");
    // Read through the other replicas: the value, and the same X-Consul-Index everywhere once
    // they have it.
    let index = wait_for(
        "the write on every replica at one index",
        Duration::from_secs(10),
        || r.logs(),
        async || {
            let mut seen = Vec::new();
            for i in 0..3 {
                let g = r.http(i).get("/v1/kv/app/config?raw").await;
                if g.status != 200 || g.text() != "v1" {
                    return None;
                }
                seen.push(g.index());
            }
            seen.iter().all(|i| *i == seen[0]).then_some(seen[0])
        },
    )
    .await;
    assert!(index > 0);
    // ?consistent: a read through another replica right after a write's acknowledgement sees it.
    for i in 0..20 {
        let key = format!("/v1/kv/seq/{i}");
        assert_eq!(r.http(i % 3).put(&key, "x").await.status, 200);
        let got = r.http((i + 1) % 3).get(&format!("{key}?consistent")).await;
        assert_eq!(
            got.status,
            200,
            "write {i} not seen by a consistent read: {}",
            got.text()
        );
    }
    // Every replica's own node is in the one catalog, and the consul service has three
    // instances, as with three Consul servers.
    let nodes: Vec<Value> = r.http(2).get("/v1/catalog/nodes").await.json();
    for i in 0..3 {
        assert!(
            nodes.iter().any(|n| n["Node"] == format!("server-{i}")),
            "{nodes:?}"
        );
    }
    let peers: Vec<String> = r.http(1).get("/v1/status/peers").await.json();
    assert_eq!(peers.len(), 3, "{peers:?}");
    let leader = r.leader(&[0, 1, 2]).await;
    assert!(leader < 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocking_query_on_one_replica_wakes_for_a_write_on_another() {
    let Some(r) = Replicas::start(2).await else {
        return;
    };
    let first = r.http(1).get("/v1/kv/watched").await;
    assert_eq!(first.status, 404);
    let index = first.index();
    let parked = {
        let http = r.http(1).clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = http
                .get(&format!("/v1/kv/watched?index={index}&wait=30s"))
                .await;
            (got, started.elapsed())
        })
    };
    r.catalogs[1].wait_parked(1).await;
    assert_eq!(r.http(0).put("/v1/kv/watched", "now").await.status, 200);
    let (got, took) = parked.await.expect("the blocking query");
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.index() > index);
    assert!(
        took < Duration::from_secs(25),
        "woken by the write, not by the wait running out ({took:?})"
    );
    let body: Vec<Value> = got.json();
    assert_eq!(body[0]["Key"], "watched");
}

#[tokio::test(flavor = "multi_thread")]
async fn cas_increments_through_random_replicas_lose_no_update() {
    let Some(r) = Replicas::start(3).await else {
        return;
    };
    assert_eq!(
        r.http(0).put("/v1/kv/counter?cas=0", "0").await.text(),
        "true"
    );
    let https: Arc<Vec<Http>> = Arc::new(r.catalogs.iter().map(|c| c.http.clone()).collect());
    let mut clients = Vec::new();
    for client in 0..8usize {
        let https = https.clone();
        clients.push(tokio::spawn(async move {
            let mut successes = 0u64;
            for i in 0..200usize {
                let http = &https[(client * 7 + i * 13) % https.len()];
                let got = http.get("/v1/kv/counter").await;
                if got.status != 200 {
                    continue; // this replica has not seen the counter yet
                }
                let entry: Vec<Value> = got.json();
                let modify = entry[0]["ModifyIndex"].as_u64().expect("ModifyIndex");
                let raw = entry[0]["Value"].as_str().expect("a value");
                let n: u64 = String::from_utf8(
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, raw)
                        .expect("base64"),
                )
                .expect("utf-8")
                .parse()
                .expect("a number");
                let put = http
                    .put(&format!("/v1/kv/counter?cas={modify}"), (n + 1).to_string())
                    .await;
                assert_eq!(put.status, 200, "{}", put.text());
                if put.text() == "true" {
                    successes += 1;
                }
            }
            successes
        }));
    }
    let mut acknowledged = 0;
    for c in clients {
        acknowledged += c.await.expect("a client");
    }
    assert!(acknowledged > 0);
    for i in 0..3 {
        wait_for(
            "every replica to show the final count",
            Duration::from_secs(10),
            || r.logs(),
            async || {
                let got = r.http(i).get("/v1/kv/counter?raw").await;
                (got.text() == acknowledged.to_string()).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_leader_is_killed_another_enforces_ttls_exactly_once() {
    let Some(mut r) = Replicas::start(3).await else {
        return;
    };
    let leader = r.leader(&[0, 1, 2]).await;
    let other = (leader + 1) % 3;
    // A TTL check and a TTL session, created through a follower.
    let reg = json!({"Node": "web-1", "Address": "10.0.0.5",
        "Check": {"CheckID": "hb", "Name": "heartbeat", "Status": "passing",
                  "Definition": {"TTL": "3s"}}});
    assert_eq!(
        r.http(other)
            .put_json("/v1/catalog/register", &reg)
            .await
            .status,
        200
    );
    let session: Value = r
        .http(other)
        .put_json("/v1/session/create", &json!({"TTL": "1s", "Name": "s"}))
        .await
        .json();
    let session = session["ID"].as_str().expect("a session ID").to_string();
    let killed_at = Instant::now();
    r.catalogs[leader].kill9();
    let live: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let successor = r.leader(&live).await;
    let took_over = killed_at.elapsed();
    assert_ne!(successor, leader);
    assert!(
        took_over <= LEASE_TTL + Duration::from_secs(4),
        "a new leader after {took_over:?}"
    );
    for &i in &live {
        wait_for(
            "the TTL check to go critical and the session to be invalidated",
            Duration::from_secs(20),
            || r.logs(),
            async || {
                let checks: Vec<Value> = r.http(i).get("/v1/health/node/web-1").await.json();
                let critical = checks
                    .iter()
                    .any(|c| c["CheckID"] == "hb" && c["Status"] == "critical");
                let gone = r
                    .http(i)
                    .get(&format!("/v1/session/info/{session}"))
                    .await
                    .json::<Value>()
                    .as_array()
                    .is_some_and(Vec::is_empty);
                (critical && gone).then_some(())
            },
        )
        .await;
    }
    // Exactly once: once critical, the check is not written again by any replica (a second
    // expiry would move the node's index); a blocking query waiting 2 x TTL returns unchanged.
    let now = r.http(live[0]).get("/v1/health/node/web-1").await;
    let index = now.index();
    let later = r
        .http(live[1])
        .get(&format!("/v1/health/node/web-1?index={index}&wait=6s"))
        .await;
    assert_eq!(
        later.index(),
        index,
        "the check was written again after it expired"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_the_loss_of_an_etcd_member() {
    let Some(mut r) = Replicas::start(3).await else {
        return;
    };
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let https: Arc<Vec<Http>> = Arc::new(r.catalogs.iter().map(|c| c.http.clone()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..8usize {
        let (https, stop, count) = (https.clone(), stop.clone(), count.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && i < 5_000 {
                let http = &https[(w + i) % https.len()];
                let key = format!("load/{w}/{i}");
                if let Ok(resp) = http
                    .try_send("PUT", &format!("/v1/kv/{key}"), Some(b"x".to_vec()))
                    .await
                    && resp.status == 200
                    && resp.text() == "true"
                {
                    acked.push(key);
                    count.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            acked
        }));
    }
    // Writers running; an etcd member killed under them; they go on on the other two.
    let catalogs = &r.catalogs;
    let acked_by = async |n: usize| {
        wait_for(
            &format!("{n} acknowledged writes"),
            Duration::from_secs(60),
            || logs(catalogs),
            async || (count.load(Ordering::Relaxed) >= n).then_some(()),
        )
        .await
    };
    acked_by(200).await;
    r.etcd.kill(0);
    let at_kill = count.load(Ordering::Relaxed);
    acked_by(at_kill + 200).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("a writer"));
    }
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    // Writes go on after the loss: on the remaining quorum.
    assert_eq!(r.http(1).put("/v1/kv/after-loss", "ok").await.status, 200);
    for i in 0..3 {
        wait_for(
            "every acknowledged write on every replica",
            Duration::from_secs(20),
            || r.logs(),
            async || {
                let keys: Vec<String> = r.http(i).get("/v1/kv/load/?keys").await.json();
                let have: std::collections::HashSet<&String> = keys.iter().collect();
                acked.iter().all(|k| have.contains(k)).then_some(())
            },
        )
        .await;
    }
}

/// The way an operator moves from one machine to three: a snapshot saved from an embedded
/// catalogd is restored through one replica, and every replica then serves it.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_of_an_embedded_catalogd_restores_into_the_replicas() {
    let Some(r) = Replicas::start(2).await else {
        return;
    };
    let single = Catalogd::start().await;
    for i in 0..300 {
        let put = single
            .http
            .put(&format!("/v1/kv/moved/{i}"), format!("v{i}"))
            .await;
        assert_eq!(put.status, 200);
    }
    let reg = json!({"Node": "db-1", "Address": "10.0.0.7",
        "Service": {"Service": "db", "Port": 5432}});
    assert_eq!(
        single
            .http
            .put_json("/v1/catalog/register", &reg)
            .await
            .status,
        200
    );
    // Something on the replicas before, which the restore replaces.
    assert_eq!(r.http(0).put("/v1/kv/old", "gone").await.status, 200);
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("one-machine.snap");
    let file = file.to_str().expect("a UTF-8 path");
    let out = single.cli(&["snapshot", "save", file], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = r.catalogs[0].cli(&["snapshot", "restore", file], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..2 {
        wait_for(
            "the restored catalog on every replica",
            Duration::from_secs(20),
            || r.logs(),
            async || {
                // 404 (no such keys) until the restore reaches this replica.
                let listed = r.http(i).get("/v1/kv/moved/?keys").await;
                if listed.status != 200 {
                    return None;
                }
                let keys: Vec<String> = listed.json();
                let old = r.http(i).get("/v1/kv/old").await.status;
                let db: Vec<Value> = r.http(i).get("/v1/catalog/service/db").await.json();
                (keys.len() == 300 && old == 404 && db.len() == 1).then_some(())
            },
        )
        .await;
    }
    let got = r.http(1).get("/v1/kv/moved/7?raw").await;
    assert_eq!(got.text(), "v7");
    // And the replicas go on taking writes on top of it.
    assert_eq!(r.http(1).put("/v1/kv/after", "ok").await.status, 200);
}

/// A counter of a replica's `/metrics`.
async fn metric(http: &Http, name: &str) -> f64 {
    let text = http.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Writes sent to a follower are committed by the leader (one writer batches them all), and the
/// follower answers only once it holds them: a client reading back through the follower sees
/// its write without asking for consistency.
#[tokio::test(flavor = "multi_thread")]
async fn followers_send_writes_to_the_leader_and_read_them_back() {
    let Some(r) = Replicas::start(3).await else {
        return;
    };
    let leader = r.leader(&[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    let (lead_before, follow_before) = (
        metric(r.http(leader), "catalogd_commits_total").await,
        metric(r.http(follower), "catalogd_commits_total").await,
    );
    for i in 0..50 {
        let key = format!("/v1/kv/forwarded/{i}");
        let put = r.http(follower).put(&key, format!("v{i}")).await;
        assert_eq!(put.status, 200, "{}", put.text());
        assert_eq!(put.text(), "true");
        let got = r.http(follower).get(&format!("{key}?raw")).await;
        assert_eq!(
            got.text(),
            format!("v{i}"),
            "write {i} not visible on the follower"
        );
    }
    let txn = json!([{"KV": {"Verb": "set", "Key": "forwarded/txn", "Value": "dHhu"}}]);
    assert_eq!(r.http(follower).put_json("/v1/txn", &txn).await.status, 200);
    let lead_commits = metric(r.http(leader), "catalogd_commits_total").await - lead_before;
    let follow_commits = metric(r.http(follower), "catalogd_commits_total").await - follow_before;
    assert!(
        lead_commits >= 51.0,
        "the leader committed {lead_commits} batches"
    );
    assert!(
        follow_commits < 5.0,
        "the follower committed {follow_commits} batches itself"
    );
}

/// A replica whose etcd is gone refuses writes at once (a 5xx naming the store, not a request
/// that hangs), takes them again once etcd is back, and stops on SIGTERM while etcd is down (a
/// `systemctl stop` during an etcd outage must not sit until systemd's kill).
#[tokio::test(flavor = "multi_thread")]
async fn replicas_refuse_writes_while_etcd_is_down_recover_and_stop_on_sigterm() {
    let Some(mut r) = Replicas::start(2).await else {
        return;
    };
    r.leader(&[0, 1]).await;
    assert_eq!(r.http(0).put("/v1/kv/before", "x").await.status, 200);
    let writes_fail = async |r: &Replicas| {
        for i in 0..2 {
            wait_for(
                "a write to be refused with etcd gone",
                Duration::from_secs(30),
                || r.logs(),
                async || {
                    let put = r
                        .http(i)
                        .try_send("PUT", "/v1/kv/after", Some(b"y".to_vec()))
                        .await;
                    put.is_ok_and(|p| p.status >= 500).then_some(())
                },
            )
            .await;
        }
    };
    r.etcd.stop();
    writes_fail(&r).await;
    r.etcd.restart_all().await;
    for i in 0..2 {
        wait_for(
            "writes to be taken again with etcd back",
            Duration::from_secs(30),
            || r.logs(),
            async || {
                let put = r.http(i).put("/v1/kv/back", format!("{i}")).await;
                (put.status == 200).then_some(())
            },
        )
        .await;
    }
    r.etcd.stop();
    writes_fail(&r).await;
    for (i, c) in r.catalogs.iter_mut().enumerate() {
        let status = tokio::task::block_in_place(|| c.sigterm(Duration::from_secs(15)));
        assert!(
            status.success(),
            "replica {i} exited with {status} on SIGTERM\n{}",
            c.log_text()
        );
    }
}
