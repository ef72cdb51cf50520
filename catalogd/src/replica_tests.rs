//! Replicas sharing one store, in one process: two or three [`Catalog`]s on a shared
//! [`MemStore`] (the same feed semantics as etcd's watch), driven through their writers. The
//! end-to-end tests repeat the important cases on a real etcd cluster with real processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_store::{MemStore, Store};
use cairn_wire::{CatalogRegistration, CheckStatus, SessionRequest};

use crate::core::Catalog;
use crate::leader::{Leadership, View};
use crate::state::KvPut;
use crate::test_support::config;
use crate::writer::{Command, Reply};

/// `n` replicas on one shared store; the first leads.
async fn replicas(n: usize) -> (Vec<Catalog>, Vec<Leadership>) {
    let store: Arc<dyn Store> = Arc::new(MemStore::shared());
    let mut catalogs = Vec::new();
    let mut leaders = Vec::new();
    for i in 0..n {
        let leadership = Leadership::follower();
        if i == 0 {
            leadership.set(leader_view(true));
        }
        let c = Catalog::start_on(
            config(&format!("server-{i}")),
            store.clone(),
            leadership.clone(),
        )
        .await
        .expect("a replica starts");
        catalogs.push(c);
        leaders.push(leadership);
    }
    (catalogs, leaders)
}

fn leader_view(is_self: bool) -> View {
    View {
        leader: "server".into(),
        is_self,
        peers: vec!["server".into()],
    }
}

fn put(key: &str, value: &str, cas: Option<u64>) -> Command {
    Command::KvPut(KvPut {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        cas,
        ..Default::default()
    })
}

async fn submit(c: &Catalog, cmd: Command) -> Reply {
    c.core
        .writer
        .submit(cmd)
        .await
        .expect("the write is accepted")
}

/// Waits (with a deadline) until `f` holds for the replica's current state.
async fn wait_for(c: &Catalog, what: &str, f: impl Fn(&crate::state::State) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f(&c.core.current.load()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn kv_value(st: &crate::state::State, key: &str) -> Option<(Vec<u8>, u64)> {
    st.kv.get(key).map(|e| (e.value.to_vec(), e.modify_index))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_is_read_on_the_others_at_the_same_index() {
    let (cs, _l) = replicas(3).await;
    submit(&cs[0], put("app/x", "1", None)).await;
    let want = kv_value(&cs[0].core.current.load(), "app/x").expect("written");
    for c in &cs[1..] {
        wait_for(c, "the write on another replica", |st| {
            kv_value(st, "app/x").as_ref() == Some(&want)
        })
        .await;
    }
    // Same state, same index, whichever replica answers.
    let indexes: Vec<u64> = cs.iter().map(|c| c.core.index()).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] == w[1]),
        "replicas agree on the index: {indexes:?}"
    );
    // Every replica's own node is in everyone's catalog.
    for c in &cs {
        wait_for(c, "three server nodes", |st| st.nodes.len() == 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cas_that_succeeded_on_one_replica_fails_on_another_with_the_old_index() {
    let (cs, _l) = replicas(2).await;
    submit(&cs[0], put("lock", "a", None)).await;
    let old = cs[0].core.current.load().kv["lock"].modify_index;
    // B may not have seen the first write yet: its CAS with the right index still succeeds,
    // because it is decided on the newest state.
    assert!(matches!(
        submit(&cs[1], put("lock", "b", Some(old))).await,
        Reply::Bool(true)
    ));
    assert!(
        matches!(
            submit(&cs[0], put("lock", "c", Some(old))).await,
            Reply::Bool(false)
        ),
        "A must refuse a CAS with the index B's write replaced"
    );
    let st = cs[0].core.current.load();
    assert_eq!(st.kv["lock"].value.as_ref(), b"b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_increments_through_random_replicas_lose_no_update() {
    let (cs, _l) = replicas(3).await;
    let cs = Arc::new(cs);
    submit(&cs[0], put("counter", "0", Some(0))).await;
    for c in cs.iter() {
        wait_for(c, "the counter on every replica", |st| {
            st.kv.contains_key("counter")
        })
        .await;
    }
    let mut tasks = Vec::new();
    for client in 0..8usize {
        let cs = cs.clone();
        tasks.push(tokio::spawn(async move {
            let mut successes = 0u64;
            for i in 0..40usize {
                let c = &cs[(client + i) % cs.len()];
                let (value, index) = kv_value(&c.core.current.load(), "counter").expect("set");
                let n: u64 = String::from_utf8(value)
                    .expect("utf-8")
                    .parse()
                    .expect("a number");
                match c
                    .core
                    .writer
                    .submit(put("counter", &(n + 1).to_string(), Some(index)))
                    .await
                {
                    Ok(Reply::Bool(true)) => successes += 1,
                    Ok(Reply::Bool(false)) => {}
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            successes
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("a client task");
    }
    assert!(total > 0, "some increments succeed");
    for c in cs.iter() {
        wait_for(c, "the final counter", |st| {
            kv_value(st, "counter").is_some_and(|(v, _)| v == total.to_string().as_bytes())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_replica_wakes_for_a_write_on_another() {
    let (cs, _l) = replicas(2).await;
    let sub = cs[1]
        .core
        .registry
        .subscribe(crate::watch::Topic::Kv("watched".into()));
    let woken = sub.notify().notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    submit(&cs[0], put("watched", "v", None)).await;
    tokio::time::timeout(Duration::from_secs(10), woken)
        .await
        .expect("B's watcher is woken by A's write");
    assert!(cs[1].core.current.load().kv.contains_key("watched"));
}

fn ttl_check_registration(node: &str, ttl: &str) -> CatalogRegistration {
    serde_json::from_value(serde_json::json!({
        "Node": node,
        "Address": "10.0.0.9",
        "Check": {"CheckID": "hb", "Name": "heartbeat", "Status": "passing",
                  "Definition": {"TTL": ttl}},
    }))
    .expect("a registration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_check_registered_through_a_follower_expires_on_the_leader_and_after_a_handover() {
    let (cs, leaders) = replicas(2).await;
    // Registered through the follower: the leader learns the TTL from the heartbeat key.
    submit(
        &cs[1],
        Command::Register(Box::new(ttl_check_registration("web-1", "300ms"))),
    )
    .await;
    let key = ("web-1".to_string(), "hb".to_string());
    let critical = |st: &crate::state::State| {
        st.checks
            .get(&key)
            .is_some_and(|c| c.status == CheckStatus::Critical)
    };
    for c in &cs {
        wait_for(c, "the TTL check to expire", critical).await;
    }
    // Leadership moves; a check that passes again expires on the new leader.
    leaders[0].set(leader_view(false));
    leaders[1].set(leader_view(true));
    submit(
        &cs[0],
        Command::Register(Box::new(ttl_check_registration("web-1", "300ms"))),
    )
    .await;
    wait_for(&cs[0], "the check to pass again", |st| {
        st.checks
            .get(&key)
            .is_some_and(|c| c.status == CheckStatus::Passing)
    })
    .await;
    for c in &cs {
        wait_for(c, "the new leader to expire the check", critical).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_through_a_follower_keep_a_session_alive_on_the_leader() {
    let (cs, _l) = replicas(2).await;
    let Reply::Id(id) = submit(
        &cs[1],
        Command::SessionCreate(SessionRequest {
            ttl: "100ms".into(),
            ..Default::default()
        }),
    )
    .await
    else {
        panic!("a session id");
    };
    // Alive for 2 x TTL after each renewal; renewing every 60 ms through the follower for
    // 600 ms (three lifetimes) keeps it.
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        submit(&cs[1], Command::SessionRenew(id.clone())).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(
        cs[0].core.current.load().sessions.contains_key(&id),
        "the leader kept the renewed session"
    );
    // Without renewals it is invalidated, on every replica.
    for c in &cs {
        wait_for(c, "the session to be invalidated", |st| {
            !st.sessions.contains_key(&id)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_through_one_replica_replaces_the_state_of_every_replica() {
    let (cs, _l) = replicas(2).await;
    submit(&cs[0], put("before", "1", None)).await;
    let mut restored = (**cs[0].core.current.load()).clone();
    restored.kv = Default::default();
    restored.tombstones = Default::default();
    let mut other = crate::state::Changes::default();
    restored
        .kv_put(
            KvPut {
                key: "restored".into(),
                value: b"yes".to_vec(),
                ..Default::default()
            },
            &Default::default(),
            Instant::now(),
            &mut other,
        )
        .expect("a put on the restored state");
    submit(&cs[0], Command::Restore(Box::new(restored))).await;
    wait_for(&cs[1], "the restored state", |st| {
        st.kv.contains_key("restored") && !st.kv.contains_key("before")
    })
    .await;
    assert_eq!(cs[0].core.index(), cs[1].core.index());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_read_on_a_replica_sees_every_write_acknowledged_before_it() {
    let (cs, _l) = replicas(2).await;
    for i in 0..50 {
        let key = format!("seq/{i}");
        submit(&cs[0], put(&key, "v", None)).await;
        cs[1].core.catch_up().await.expect("the replica catches up");
        assert!(
            cs[1].core.current.load().kv.contains_key(&key),
            "write {i} acknowledged on A is missing on B after a consistent barrier"
        );
    }
}

async fn session(c: &Catalog, lock_delay: &str) -> String {
    let Reply::Id(id) = submit(
        c,
        Command::SessionCreate(SessionRequest {
            lock_delay: Some(serde_json::json!(lock_delay)),
            ..Default::default()
        }),
    )
    .await
    else {
        panic!("a session id");
    };
    id
}

fn acquire(key: &str, session: &str) -> Command {
    Command::KvPut(KvPut {
        key: key.into(),
        value: b"held".to_vec(),
        acquire: Some(session.into()),
        ..Default::default()
    })
}

/// A lock whose session another replica ended stays delayed here too (Consul's servers all
/// apply the lock-delay from the replicated log), so a follower committing an acquisition
/// itself, or the next leader, honours it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_delay_started_on_one_replica_holds_on_the_others() {
    let (cs, _l) = replicas(2).await;
    let holder = session(&cs[0], "30s").await;
    assert!(matches!(
        submit(&cs[0], acquire("lock", &holder)).await,
        Reply::Bool(true)
    ));
    let waiter = session(&cs[1], "0s").await;
    submit(&cs[0], Command::SessionDestroy(holder.clone())).await;
    wait_for(&cs[1], "the session's end on the other replica", |st| {
        !st.sessions.contains_key(&holder)
    })
    .await;
    // Released, but within the holder's lock-delay: refused on either replica.
    for c in &cs {
        assert!(
            matches!(
                submit(c, acquire("lock", &waiter)).await,
                Reply::Bool(false)
            ),
            "{}: an acquisition within the lock-delay was granted",
            c.core.config.node
        );
    }
    // A session without a lock-delay starts none: its lock is free at once everywhere.
    let quick = session(&cs[0], "0s").await;
    assert!(matches!(
        submit(&cs[0], acquire("other", &quick)).await,
        Reply::Bool(true)
    ));
    submit(&cs[0], Command::SessionDestroy(quick.clone())).await;
    wait_for(&cs[1], "the quick session's end", |st| {
        !st.sessions.contains_key(&quick)
    })
    .await;
    assert!(matches!(
        submit(&cs[1], acquire("other", &waiter)).await,
        Reply::Bool(true)
    ));
}
