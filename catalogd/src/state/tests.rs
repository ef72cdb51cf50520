//! Unit tests of the catalog rules, straight on [`State`] without HTTP or disk.

use std::time::{Duration, Instant};

use cairn_store::{MemStore, Store};
use cairn_wire::{
    CatalogDeregistration, CatalogRegistration, CheckStatus, HealthCheck, NodeService,
    SessionRequest, TxnKvOp,
};

use super::*;

fn reg(node: &str, svc: &str, id: &str, status: CheckStatus) -> CatalogRegistration {
    CatalogRegistration {
        node: node.into(),
        address: "127.0.0.1".into(),
        service: Some(NodeService {
            id: id.into(),
            service: svc.into(),
            port: 80,
            ..Default::default()
        }),
        check: Some(HealthCheck {
            check_id: format!("{id}-check"),
            name: "c".into(),
            status,
            service_id: id.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A session with no health checks (`"Checks": []`): the nodes here have no `serfHealth`.
fn unchecked() -> SessionRequest {
    SessionRequest {
        checks: Some(Vec::new()),
        ..Default::default()
    }
}

fn put(st: &mut State, key: &str, value: &str) -> bool {
    let p = KvPut {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    };
    st.kv_put(
        p,
        &LockDelays::default(),
        Instant::now(),
        &mut Changes::default(),
    )
    .unwrap()
}

#[test]
fn unchanged_registration_does_not_move_the_index() {
    let mut st = State::default();
    st.register(
        reg("n1", "web", "w1", CheckStatus::Passing),
        "dc1",
        &mut Changes::default(),
    )
    .unwrap();
    let idx = st.index;
    let mut ch = Changes::default();
    st.register(reg("n1", "web", "w1", CheckStatus::Passing), "dc1", &mut ch)
        .unwrap();
    assert_eq!(st.index, idx);
    assert!(ch.is_empty());
    st.register(
        reg("n1", "web", "w1", CheckStatus::Critical),
        "dc1",
        &mut ch,
    )
    .unwrap();
    assert_eq!(st.index, idx + 1);
    assert_eq!(st.service_read_index("web"), idx + 1);
    assert!(ch.service_idx.contains("web") && ch.checks.len() == 1);
}

#[test]
fn node_checks_move_every_service_on_the_node() {
    let mut st = State::default();
    st.register(
        reg("n1", "web", "w1", CheckStatus::Passing),
        "dc1",
        &mut Changes::default(),
    )
    .unwrap();
    st.register(
        reg("n1", "db", "d1", CheckStatus::Passing),
        "dc1",
        &mut Changes::default(),
    )
    .unwrap();
    st.register(
        reg("n2", "cache", "c1", CheckStatus::Passing),
        "dc1",
        &mut Changes::default(),
    )
    .unwrap();
    let cache_idx = st.service_read_index("cache");
    let node_check = CatalogRegistration {
        node: "n1".into(),
        address: "127.0.0.1".into(),
        check: Some(HealthCheck {
            check_id: "serfHealth".into(),
            status: CheckStatus::Critical,
            ..Default::default()
        }),
        ..Default::default()
    };
    st.register(node_check, "dc1", &mut Changes::default())
        .unwrap();
    assert_eq!(st.service_read_index("web"), st.index);
    assert_eq!(st.service_read_index("db"), st.index);
    assert_eq!(
        st.service_read_index("cache"),
        cache_idx,
        "another node's service is untouched"
    );
    let entry = &st.service_entries("web")[0];
    assert_eq!(entry.status(), CheckStatus::Critical);
}

#[test]
fn renaming_a_service_moves_its_instance() {
    let mut st = State::default();
    st.register(
        reg("n1", "web", "x1", CheckStatus::Passing),
        "dc1",
        &mut Changes::default(),
    )
    .unwrap();
    st.register(
        reg("n1", "api", "x1", CheckStatus::Passing),
        "dc1",
        &mut Changes::default(),
    )
    .unwrap();
    assert!(st.service_instances("web").is_empty());
    assert_eq!(st.service_instances("api").len(), 1);
    assert_eq!(
        st.checks[&("n1".to_string(), "x1-check".to_string())].service_name,
        "api"
    );
}

#[test]
fn deregistering_a_node_ends_its_sessions_and_releases_locks() {
    let mut st = State::default();
    st.register(
        reg("n1", "web", "w1", CheckStatus::Passing),
        "dc1",
        &mut Changes::default(),
    )
    .unwrap();
    let req = SessionRequest {
        node: "n1".into(),
        ..unchecked()
    };
    let sid = st
        .session_create(
            "s1".into(),
            req,
            "n1",
            Duration::from_secs(10),
            &mut Changes::default(),
        )
        .unwrap();
    let acquire = KvPut {
        key: "lock".into(),
        acquire: Some(sid.clone()),
        ..Default::default()
    };
    assert!(
        st.kv_put(
            acquire,
            &LockDelays::default(),
            Instant::now(),
            &mut Changes::default()
        )
        .unwrap()
    );
    assert_eq!(st.kv["lock"].lock_index, 1);
    let mut ch = Changes::default();
    st.deregister(
        CatalogDeregistration {
            node: "n1".into(),
            ..Default::default()
        },
        "dc1",
        &mut ch,
    )
    .unwrap();
    assert!(st.sessions.is_empty());
    assert!(st.kv["lock"].session.is_empty());
    assert_eq!(
        ch.lock_delays.len(),
        1,
        "lock-delay starts for the released key"
    );
    assert!(st.service_instances("web").is_empty());
}

#[test]
fn lock_delay_blocks_acquisition_until_it_passes() {
    let mut st = State::default();
    st.register(
        reg("n1", "web", "w1", CheckStatus::Passing),
        "dc1",
        &mut Changes::default(),
    )
    .unwrap();
    let sid = st
        .session_create(
            "s".into(),
            unchecked(),
            "n1",
            Duration::from_secs(10),
            &mut Changes::default(),
        )
        .unwrap();
    let mut delays = LockDelays::default();
    let now = Instant::now();
    delays.set("k".into(), now + Duration::from_secs(5));
    let acquire = || KvPut {
        key: "k".into(),
        acquire: Some(sid.clone()),
        ..Default::default()
    };
    assert!(
        !st.kv_put(acquire(), &delays, now, &mut Changes::default())
            .unwrap()
    );
    assert!(
        st.kv_put(
            acquire(),
            &delays,
            now + Duration::from_secs(6),
            &mut Changes::default()
        )
        .unwrap()
    );
}

#[test]
fn a_transaction_is_one_index_and_reports_every_failure() {
    let mut st = State::default();
    put(&mut st, "a", "1");
    let before = st.index;
    let op = |verb: &str, key: &str| TxnKvOp {
        verb: verb.into(),
        key: key.into(),
        ..Default::default()
    };
    let ops = vec![op("set", "b"), op("delete", "a"), op("set", "c")];
    st.txn(
        &ops,
        &LockDelays::default(),
        Instant::now(),
        &mut Changes::default(),
    )
    .unwrap();
    assert_eq!(st.index, before + 1);
    assert_eq!(st.kv["b"].modify_index, st.kv["c"].modify_index);
    assert_eq!(st.tombstones["a"], before + 1);
    let failing = vec![
        op("get", "missing"),
        op("set", "d"),
        op("check-not-exists", "b"),
    ];
    match st.clone().txn(
        &failing,
        &LockDelays::default(),
        Instant::now(),
        &mut Changes::default(),
    ) {
        Err(ApplyError::Txn(errors)) => {
            let at: Vec<usize> = errors.iter().map(|e| e.op_index).collect();
            assert_eq!(at, vec![0, 2]);
        }
        other => panic!("expected a failed txn, got {other:?}"),
    }
}

#[test]
fn prefix_index_never_goes_backwards_when_tombstones_are_reaped() {
    let mut st = State::default();
    for i in 0..10 {
        put(&mut st, &format!("dir/{i}"), "v");
    }
    st.kv_delete("dir/", true, None, &mut Changes::default())
        .unwrap();
    let idx = st.kv_prefix_index("dir/");
    assert_eq!(idx, st.index, "a delete moves the prefix index");
    st.reap_tombstones(0, &mut Changes::default());
    assert!(st.tombstones.is_empty());
    assert!(st.kv_prefix_index("dir/") >= idx);
}

#[test]
fn persisted_state_loads_back_identical() {
    let mut st = State::default();
    let mut ch = Changes::default();
    st.register(reg("n1", "web", "w1", CheckStatus::Warning), "dc1", &mut ch)
        .unwrap();
    let p = KvPut {
        key: "k/x".into(),
        value: b"\x00\xffbinary".to_vec(),
        flags: Some(9),
        ..Default::default()
    };
    st.kv_put(p, &LockDelays::default(), Instant::now(), &mut ch)
        .unwrap();
    put(&mut st, "k/gone", "v");
    st.kv_delete("k/gone", false, None, &mut ch).unwrap();
    let sid = st
        .session_create(
            "s".into(),
            unchecked(),
            "n1",
            Duration::from_secs(10),
            &mut ch,
        )
        .unwrap();
    ch.kv.insert("k/gone".into());
    ch.kv.insert("k/x".into());
    let store = MemStore::new();
    store.commit(crate::persist::batch_for(&st, &ch)).unwrap();
    let loaded = crate::persist::load(&store).unwrap();
    assert_eq!(loaded.index, st.index);
    assert_eq!(loaded.tables, st.tables);
    assert_eq!(loaded.nodes, st.nodes);
    assert_eq!(loaded.services, st.services);
    assert_eq!(loaded.checks, st.checks);
    assert_eq!(loaded.kv, st.kv);
    assert_eq!(loaded.tombstones, st.tombstones);
    assert_eq!(loaded.sessions[&sid], st.sessions[&sid]);
    assert_eq!(loaded.service_index, st.service_index);
    assert_eq!(loaded.by_service, st.by_service);
}
