//! cairn-etcd against real etcd processes (`cairn_etcd::testing::EtcdCluster`): KV, txn, watch
//! (ordering, grouping, resumption after a member is killed, compaction), leases, failover
//! between endpoints, bounded bodies. Without `etcd` installed each test prints a NOTICE and
//! returns (under CI=true it fails).

use std::time::{Duration, Instant};

use cairn_etcd::testing::EtcdCluster;
use cairn_etcd::{
    Compare, CompareResult, CompareTarget, EtcdClient, EtcdError, EventKind, KeyValue, Op,
    OpResponse, RangeRequest, Txn, Watch, WatchRequest, WatchResponse,
};
use url::Url;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A URL nothing listens on: a port the kernel gave us, released.
fn dead_url() -> Url {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}").parse().unwrap()
}

fn client(urls: Vec<Url>) -> EtcdClient {
    EtcdClient::new(urls, None, TIMEOUT).unwrap()
}

/// The next response of a watch, within 10 s.
async fn next(watch: &mut Watch) -> Result<WatchResponse, EtcdError> {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch response within 10 s")
        .expect("the watch goes on")
}

/// `(revision, kind, key)` of every event, in order.
fn summary(responses: &[WatchResponse]) -> Vec<(i64, EventKind, Vec<u8>)> {
    responses
        .iter()
        .flat_map(|r| &r.events)
        .map(|e| (e.kv.mod_revision, e.kind, e.kv.key.clone()))
        .collect()
}

fn keys(kvs: &[KeyValue]) -> Vec<Vec<u8>> {
    kvs.iter().map(|kv| kv.key.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_and_range_by_prefix_with_binary_keys() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let etcd = cluster.client();

    // Every byte value, in keys and values: base64 on the wire both ways.
    let binary: Vec<u8> = (0..=255).collect();
    let keys_put: [&[u8]; 6] = [
        b"p/a",
        b"p/b",
        b"p\xff",
        b"p\xff\xff",
        b"q",
        b"\xff\xff\xff",
    ];
    let mut revisions = Vec::new();
    for key in keys_put {
        let put = etcd.put(key, &binary).await.unwrap();
        revisions.push(put.revision);
    }
    assert!(
        revisions.windows(2).all(|w| w[1] == w[0] + 1),
        "{revisions:?}"
    );

    let got = etcd.get(b"p\xff").await.unwrap().expect("p\\xff exists");
    assert_eq!(got.value, binary);
    assert_eq!(got.version, 1);
    assert_eq!(got.create_revision, revisions[2]);
    assert_eq!(got.mod_revision, revisions[2]);
    assert_eq!(got.lease, 0);
    assert_eq!(etcd.get("absent").await.unwrap(), None);

    let slash = etcd.get_prefix("p/").await.unwrap();
    assert_eq!(keys(&slash.kvs), [b"p/a".to_vec(), b"p/b".to_vec()]);
    assert_eq!(slash.count, 2);
    assert_eq!(slash.revision, *revisions.last().unwrap());
    let p = etcd.get_prefix("p").await.unwrap();
    assert_eq!(
        keys(&p.kvs),
        [&b"p/a"[..], b"p/b", b"p\xff", b"p\xff\xff"].map(<[u8]>::to_vec)
    );
    // prefix_end(p\xff) is "q": the 0xff is dropped, 'p' incremented.
    let pff = etcd.get_prefix(b"p\xff").await.unwrap();
    assert_eq!(keys(&pff.kvs), [b"p\xff".to_vec(), b"p\xff\xff".to_vec()]);
    // A prefix of only 0xff bytes reaches to the end of the key space.
    let all_ff = etcd.get_prefix(b"\xff").await.unwrap();
    assert_eq!(keys(&all_ff.kvs), [b"\xff\xff\xff".to_vec()]);
    let everything = etcd.get_prefix("").await.unwrap();
    assert_eq!(everything.count, 6);

    // keys_only leaves values out, count_only everything but the count; limit says `more`.
    let only_keys = etcd
        .range(&RangeRequest {
            keys_only: true,
            ..RangeRequest::prefix("p")
        })
        .await
        .unwrap();
    assert_eq!(only_keys.kvs.len(), 4);
    assert!(only_keys.kvs.iter().all(|kv| kv.value.is_empty()));
    let count = etcd
        .range(&RangeRequest {
            count_only: true,
            ..RangeRequest::prefix("p")
        })
        .await
        .unwrap();
    assert!(count.kvs.is_empty());
    assert_eq!(count.count, 4);
    let limited = etcd
        .range(&RangeRequest {
            limit: 3,
            ..RangeRequest::prefix("p")
        })
        .await
        .unwrap();
    assert_eq!(
        (limited.kvs.len(), limited.more, limited.count),
        (3, true, 4)
    );

    // Reads at an older revision, min_mod_revision, serializable reads.
    etcd.put("p/a", "new").await.unwrap();
    let old = etcd
        .range(&RangeRequest {
            revision: revisions[0],
            ..RangeRequest::key("p/a")
        })
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, binary);
    let changed = etcd
        .range(&RangeRequest {
            min_mod_revision: revisions.last().unwrap() + 1,
            ..RangeRequest::prefix("")
        })
        .await
        .unwrap();
    assert_eq!(keys(&changed.kvs), [b"p/a".to_vec()]);
    assert_eq!(changed.kvs[0].version, 2);
    let local = etcd
        .range(&RangeRequest {
            serializable: true,
            ..RangeRequest::key("p/a")
        })
        .await
        .unwrap();
    assert_eq!(local.kvs[0].value, b"new");
    // A future revision is refused with etcd's code and message.
    let future = etcd
        .range(&RangeRequest {
            revision: 1000,
            ..RangeRequest::key("p/a")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&future, EtcdError::Server { code: 11, message } if message.contains("future revision")),
        "{future:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_compares_succeed_and_fail() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let etcd = cluster.client();

    // Create-if-absent: an absent key's mod_revision is 0.
    let create = Txn {
        compare: vec![Compare::mod_revision_is("lock", 0)],
        success: vec![Op::Put {
            key: b"lock".to_vec(),
            value: b"me".to_vec(),
            lease: 0,
            prev_kv: true,
        }],
        failure: vec![Op::get("lock")],
    };
    let first = etcd.txn(&create).await.unwrap();
    assert!(first.succeeded);
    let [OpResponse::Put(put)] = &first.responses[..] else {
        panic!("{first:?}")
    };
    assert_eq!(put.prev_kv, None, "nothing was there");
    assert_eq!(put.revision, first.revision);
    let created_at = first.revision;

    // Again: the compare fails (the gateway leaves `succeeded` out), the failure branch reads.
    let second = etcd.txn(&create).await.unwrap();
    assert!(!second.succeeded);
    assert_eq!(second.revision, created_at, "nothing written");
    let [OpResponse::Range(read)] = &second.responses[..] else {
        panic!("{second:?}")
    };
    assert_eq!(read.kvs[0].value, b"me");
    assert_eq!(read.kvs[0].create_revision, created_at);

    // create_revision, version, value and lease compares, all at once, with several writes:
    // one revision for the whole txn.
    let swap = Txn {
        compare: vec![
            Compare::new(
                "lock",
                CompareTarget::Create(created_at),
                CompareResult::Equal,
            ),
            Compare::new("lock", CompareTarget::Version(1), CompareResult::Equal),
            Compare::new(
                "lock",
                CompareTarget::Value(b"me".to_vec()),
                CompareResult::Equal,
            ),
            Compare::new("lock", CompareTarget::Lease(0), CompareResult::Equal),
            Compare::new(
                "lock",
                CompareTarget::Mod(created_at + 1),
                CompareResult::Less,
            ),
            Compare::new("other", CompareTarget::Version(0), CompareResult::Equal),
        ],
        success: vec![
            Op::Put {
                key: b"lock".to_vec(),
                value: b"you".to_vec(),
                lease: 0,
                prev_kv: true,
            },
            Op::put("other", "x"),
            Op::Delete {
                key: b"gone".to_vec(),
                range_end: Vec::new(),
                prev_kv: false,
            },
        ],
        failure: vec![],
    };
    let swapped = etcd.txn(&swap).await.unwrap();
    assert!(swapped.succeeded, "{swapped:?}");
    assert_eq!(swapped.revision, created_at + 1);
    let [
        OpResponse::Put(lock),
        OpResponse::Put(other),
        OpResponse::Delete(gone),
    ] = &swapped.responses[..]
    else {
        panic!("{swapped:?}")
    };
    assert_eq!(lock.prev_kv.as_ref().unwrap().value, b"me");
    assert_eq!(other.revision, created_at + 1);
    assert_eq!(gone.deleted, 0);

    // A compare that no longer holds (value) fails; an empty failure branch answers nothing.
    let stale = Txn {
        compare: vec![Compare::new(
            "lock",
            CompareTarget::Value(b"me".to_vec()),
            CompareResult::Equal,
        )],
        success: vec![Op::delete("lock")],
        failure: vec![],
    };
    let failed = etcd.txn(&stale).await.unwrap();
    assert!(!failed.succeeded);
    assert!(failed.responses.is_empty());
    assert_eq!(etcd.get("lock").await.unwrap().unwrap().value, b"you");
    // NOT_EQUAL and GREATER hold.
    let differs = Txn {
        compare: vec![
            Compare::new(
                "lock",
                CompareTarget::Value(b"me".to_vec()),
                CompareResult::NotEqual,
            ),
            Compare::new("lock", CompareTarget::Version(1), CompareResult::Greater),
        ],
        ..Default::default()
    };
    assert!(etcd.txn(&differs).await.unwrap().succeeded);

    // etcd refuses a txn writing one key twice, with its message.
    let twice = Txn {
        success: vec![Op::put("k", "1"), Op::delete("k")],
        ..Default::default()
    };
    let err = etcd.txn(&twice).await.unwrap_err();
    assert!(
        matches!(&err, EtcdError::Server { code: 3, message } if message.contains("duplicate key")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ranges() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let etcd = cluster.client();
    for key in ["d/1", "d/2", "d/3", "e/1"] {
        etcd.put(key, key).await.unwrap();
    }
    assert_eq!(etcd.delete("absent").await.unwrap(), 0);
    assert_eq!(etcd.delete("d/1").await.unwrap(), 1);
    // A range with prev_kv returns what it deleted.
    let resp = etcd
        .request(Op::Delete {
            key: b"d/".to_vec(),
            range_end: cairn_etcd::prefix_end(b"d/"),
            prev_kv: true,
        })
        .await
        .unwrap();
    let OpResponse::Delete(deleted) = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(deleted.deleted, 2);
    assert_eq!(keys(&deleted.prev_kvs), [b"d/2".to_vec(), b"d/3".to_vec()]);
    assert_eq!(deleted.prev_kvs[0].value, b"d/2");
    assert!(etcd.get_prefix("d/").await.unwrap().kvs.is_empty());
    assert_eq!(etcd.get("e/1").await.unwrap().unwrap().value, b"e/1");
    assert_eq!(etcd.delete_prefix("").await.unwrap(), 1, "e/1 was left");
    assert_eq!(etcd.get_prefix("").await.unwrap().count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_revision_sees_every_change_in_order() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let etcd = cluster.client();
    let outside = etcd.put("elsewhere", "x").await.unwrap();
    let first = etcd.put("w/a", "1").await.unwrap().revision;
    etcd.put("w/b", "1").await.unwrap();
    etcd.put("elsewhere", "y").await.unwrap();

    // From `first`, in the past: history first, then live changes.
    let mut watch = etcd
        .watch(WatchRequest {
            prev_kv: true,
            ..WatchRequest::prefix("w/", first)
        })
        .await
        .unwrap();
    etcd.put("w/a", "2").await.unwrap();
    etcd.delete("w/b").await.unwrap();
    let txn = etcd
        .txn(&Txn {
            success: vec![Op::put("w/c", "1"), Op::put("w/d", "1"), Op::delete("w/a")],
            ..Default::default()
        })
        .await
        .unwrap();
    let last = etcd.put("w/e", "1").await.unwrap().revision;

    let mut got = Vec::new();
    while summary(&got).last().map(|e| e.0) != Some(last) {
        got.push(next(&mut watch).await.unwrap());
    }
    let r = first;
    let expected = vec![
        (r, EventKind::Put, b"w/a".to_vec()),
        (r + 1, EventKind::Put, b"w/b".to_vec()),
        (r + 3, EventKind::Put, b"w/a".to_vec()),
        (r + 4, EventKind::Delete, b"w/b".to_vec()),
        (txn.revision, EventKind::Put, b"w/c".to_vec()),
        (txn.revision, EventKind::Put, b"w/d".to_vec()),
        (txn.revision, EventKind::Delete, b"w/a".to_vec()),
        (last, EventKind::Put, b"w/e".to_vec()),
    ];
    assert_eq!(summary(&got), expected);
    assert!(outside.revision < first);

    // Grouped by revision: the txn is one group of three.
    let groups: Vec<(i64, usize)> = got
        .iter()
        .flat_map(|r| {
            r.by_revision()
                .map(|(rev, g)| (rev, g.len()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        groups,
        [
            (r, 1),
            (r + 1, 1),
            (r + 3, 1),
            (r + 4, 1),
            (txn.revision, 3),
            (last, 1)
        ]
    );
    let events: Vec<_> = got.iter().flat_map(|r| r.events.clone()).collect();
    // Values, versions, prev_kv.
    assert_eq!(events[2].kv.value, b"2");
    assert_eq!(events[2].kv.version, 2);
    assert_eq!(events[2].prev_kv.as_ref().unwrap().value, b"1");
    let deleted = &events[3];
    assert!(deleted.kv.value.is_empty());
    assert_eq!(deleted.kv.version, 0);
    assert_eq!(deleted.prev_kv.as_ref().unwrap().key, b"w/b");
    assert_eq!(watch.next_revision(), last + 1);

    // A watch "from now" misses nothing written after `watch` returned.
    let mut from_now = etcd.watch(WatchRequest::prefix("w/", 0)).await.unwrap();
    let after = etcd.put("w/f", "1").await.unwrap().revision;
    let resp = next(&mut from_now).await.unwrap();
    assert_eq!(summary(&[resp]), [(after, EventKind::Put, b"w/f".to_vec())]);
}

/// Puts `key` until a put is acknowledged (a member being killed makes some fail).
async fn put_until_acknowledged(etcd: &EtcdClient, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match etcd.put(key, value).await {
            Ok(_) => return,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "put {key} never acknowledged: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_the_kill_of_its_member() {
    let Some(mut cluster) = EtcdCluster::start(3).await else {
        return;
    };
    let urls = cluster.client_urls();
    let watcher = client(urls.clone());
    let start = watcher.put("start", "").await.unwrap().revision;
    let mut watch = watcher
        .watch(WatchRequest::prefix("k/", start + 1))
        .await
        .unwrap();
    assert_eq!(
        watch.endpoint(),
        Some(&urls[0]),
        "the first endpoint takes it"
    );

    // A writer on the other two members, putting k/00..k/59 every 20 ms: the kill comes
    // while it writes, so the watch resumes both on history and on live changes.
    // A put in flight when the leader dies has an unknown outcome: it is retried after the
    // writer's (short) timeout, and etcd's own record below says what was written.
    let writer = EtcdClient::new(urls[1..].to_vec(), None, Duration::from_secs(2)).unwrap();
    let writes = tokio::spawn(async move {
        for i in 0..60 {
            put_until_acknowledged(&writer, &format!("k/{i:02}"), &i.to_string()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let mut got = Vec::new();
    let mut killed = false;
    while !summary(&got).iter().any(|(_, _, key)| key == b"k/59") {
        got.push(next(&mut watch).await.unwrap());
        if !killed && summary(&got).len() >= 20 {
            cluster.kill(0);
            killed = true;
        }
    }
    writes.await.unwrap();
    assert!(killed);
    assert_ne!(
        watch.endpoint(),
        Some(&urls[0]),
        "resumed on another member"
    );

    // What etcd itself recorded (a fresh watch on the survivors, from the same revision):
    // identical, so nothing was lost or repeated across the kill.
    let last = summary(&got).last().unwrap().0;
    let mut truth_watch = client(urls[1..].to_vec())
        .watch(WatchRequest::prefix("k/", start + 1))
        .await
        .unwrap();
    let mut truth = Vec::new();
    while summary(&truth).last().map(|e| e.0) < Some(last) {
        truth.push(next(&mut truth_watch).await.unwrap());
    }
    assert_eq!(summary(&got), summary(&truth));
    let revisions: Vec<i64> = summary(&got).iter().map(|e| e.0).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "no duplicate: {revisions:?}"
    );
    for i in 0..60 {
        let key = format!("k/{i:02}").into_bytes();
        assert!(summary(&got).iter().any(|e| e.2 == key), "k/{i:02} seen");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_is_refused() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let etcd = cluster.client();
    let old = etcd.put("c", "1").await.unwrap().revision;
    etcd.put("c", "2").await.unwrap();
    let current = etcd.put("c", "3").await.unwrap().revision;
    etcd.compact(current, true).await.unwrap();

    let mut watch = etcd.watch(WatchRequest::prefix("c", old)).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .expect("an answer");
    assert_eq!(
        err,
        Err(EtcdError::Compacted {
            compact_revision: current
        })
    );
    assert!(watch.next().await.is_none(), "the watch has ended");

    // From the compaction revision on, it works.
    let mut watch = etcd
        .watch(WatchRequest::prefix("c", current))
        .await
        .unwrap();
    let resp = next(&mut watch).await.unwrap();
    assert_eq!(summary(&[resp]), [(current, EventKind::Put, b"c".to_vec())]);
    // A range at a compacted revision is etcd's code 11; compacting again too.
    let err = etcd
        .range(&RangeRequest {
            revision: old,
            ..RangeRequest::key("c")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EtcdError::Server { code: 11, message } if message.contains("compacted")),
        "{err:?}"
    );
    assert!(etcd.compact(old, false).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_keys_alive_and_expire() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let etcd = cluster.client();
    let (id, ttl) = etcd.lease_grant(2).await.unwrap();
    assert_eq!(ttl, 2);
    etcd.request(Op::Put {
        key: b"leased".to_vec(),
        value: b"v".to_vec(),
        lease: id,
        prev_kv: false,
    })
    .await
    .unwrap();
    let kv = etcd.get("leased").await.unwrap().unwrap();
    assert_eq!(kv.lease, id);
    let live = etcd.lease_time_to_live(id, true).await.unwrap();
    assert_eq!((live.id, live.granted_ttl), (id, 2));
    assert!((0..=2).contains(&live.ttl), "{live:?}");
    assert_eq!(live.keys, [b"leased".to_vec()]);

    // Kept alive for twice its TTL, the key stays.
    let kept_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < kept_until {
        assert_eq!(etcd.lease_keepalive(id).await.unwrap(), 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(etcd.get("leased").await.unwrap().is_some());

    // Left alone, it expires and takes the key with it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while etcd.get("leased").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the leased key outlived its lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = EtcdError::LeaseExpired { id };
    assert_eq!(etcd.lease_keepalive(id).await, Err(gone.clone()));
    assert_eq!(etcd.lease_time_to_live(id, false).await, Err(gone.clone()));
    assert_eq!(etcd.lease_revoke(id).await, Err(gone));

    // A revoked lease deletes its keys at once.
    let (id, _) = etcd.lease_grant(60).await.unwrap();
    let txn = Txn {
        success: vec![
            Op::Put {
                key: b"r/1".to_vec(),
                value: vec![],
                lease: id,
                prev_kv: false,
            },
            Op::Put {
                key: b"r/2".to_vec(),
                value: vec![],
                lease: id,
                prev_kv: false,
            },
        ],
        ..Default::default()
    };
    etcd.txn(&txn).await.unwrap();
    assert_eq!(etcd.get_prefix("r/").await.unwrap().count, 2);
    etcd.lease_revoke(id).await.unwrap();
    assert_eq!(etcd.get_prefix("r/").await.unwrap().count, 0);
    // A put with an unknown lease is etcd's "requested lease not found".
    let err = etcd
        .request(Op::Put {
            key: b"x".to_vec(),
            value: vec![],
            lease: id,
            prev_kv: false,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EtcdError::Server { code: 5, message } if message.contains("lease not found")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_endpoint_is_skipped_and_remembered() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let dead = dead_url();
    let live = cluster.client_url(0);
    let etcd = client(vec![dead.clone(), live.clone()]);
    assert_eq!(etcd.current_endpoint(), &dead);
    // A write whose connection was refused never left: sent again to the next endpoint.
    etcd.put("k", "v").await.unwrap();
    assert_eq!(
        etcd.current_endpoint(),
        &live,
        "the endpoint that answered is remembered"
    );
    assert_eq!(etcd.get("k").await.unwrap().unwrap().value, b"v");
    let mut watch = etcd.watch(WatchRequest::prefix("k", 0)).await.unwrap();
    assert_eq!(watch.endpoint(), Some(&live));
    let rev = etcd.put("k", "w").await.unwrap().revision;
    assert_eq!(
        next(&mut watch).await.unwrap().events[0].kv.mod_revision,
        rev
    );
    let status = etcd.status().await.unwrap();
    assert_eq!(status.endpoint, live);

    // No endpoint at all: Unavailable, naming each.
    let other_dead = dead_url();
    let none = client(vec![dead.clone(), other_dead.clone()]);
    let err = none.get("k").await.unwrap_err();
    let EtcdError::Unavailable { attempts } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(attempts.len(), 2);
    assert!(attempts[0].starts_with(dead.as_str()), "{err}");
    assert!(attempts[1].starts_with(other_dead.as_str()), "{err}");
    assert!(err.is_transient());
    assert!(matches!(
        none.watch(WatchRequest::prefix("k", 0)).await,
        Err(EtcdError::Unavailable { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_status_and_a_member_without_leader() {
    let Some(mut cluster) = EtcdCluster::start(3).await else {
        return;
    };
    let etcd = cluster.client();
    let members = etcd.member_list().await.unwrap();
    let mut names: Vec<_> = members.members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["m0", "m1", "m2"]);
    let me = members.answering().expect("the answering member is listed");
    assert_eq!(
        me.client_urls,
        [cluster.client_url(0).as_str().trim_end_matches('/')]
    );
    assert_eq!(
        me.peer_urls,
        [cluster.peer_url(0).as_str().trim_end_matches('/')]
    );
    let status = etcd.status().await.unwrap();
    assert_eq!(status.member_id, members.member_id);
    assert!(
        members.members.iter().any(|m| m.id == status.leader),
        "{status:?}"
    );
    assert!(status.raft_term >= 1 && status.raft_index > 0 && status.db_size > 0);
    assert!(status.version.starts_with("3."), "{status:?}");

    // A watch on member 0, from the revision after the last write.
    let revision = etcd.put("k", "before").await.unwrap().revision;
    let mut watch = etcd
        .watch(WatchRequest::prefix("k", revision + 1))
        .await
        .unwrap();
    assert_eq!(watch.endpoint(), Some(&cluster.client_url(0)));

    // Two members down: the last one has no leader once its election timeout passes, and says
    // so at once (the client asks for a leader) instead of letting reads time out.
    cluster.kill(1);
    cluster.kill(2);
    let alone = client(vec![cluster.client_url(0)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        let asked = Instant::now();
        match alone.get("k").await {
            Err(EtcdError::Unavailable { attempts }) if attempts[0].contains("no leader") => {
                assert!(asked.elapsed() < Duration::from_secs(1), "refused at once");
                break attempts;
            }
            other => {
                assert!(Instant::now() < deadline, "still {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(err.len(), 1);
    // Status still answers, with no leader.
    let status = alone.status().await.unwrap();
    assert_eq!(status.leader, 0);

    // etcd cancels the watch of a member without leader (after a few election timeouts); no
    // endpoint takes it back: the watch says so, and is not over.
    let err = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("the watch notices within 30 s")
        .expect("an error, not the end");
    let Err(EtcdError::Unavailable { attempts }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts.iter().any(|a| a.contains("no leader")),
        "{attempts:?}"
    );

    // A member restarted on its data rejoins: reads work again.
    cluster.restart(1).await;
    let back = alone.put("k", "back").await.unwrap().revision;
    assert_eq!(alone.get("k").await.unwrap().unwrap().value, b"back");
    let client1 = client(vec![cluster.client_url(1)]);
    assert_eq!(client1.get("k").await.unwrap().unwrap().value, b"back");
    // And the watch resumes where it was: the first change it sees is the one made since.
    let resp = next(&mut watch).await.unwrap();
    assert_eq!(summary(&[resp]), [(back, EventKind::Put, b"k".to_vec())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let etcd = cluster.client();
    let small = etcd.with_max_body(1024);
    assert_eq!(small.max_body(), 1024);
    // The write's answer is small: fine.
    small.put("big", vec![b'x'; 4096]).await.unwrap();
    small.put("little", "x").await.unwrap();
    let err = small.get("big").await.unwrap_err();
    assert!(
        matches!(&err, EtcdError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert_eq!(small.get("little").await.unwrap().unwrap().value, b"x");
    // A watch message over the limit ends the watch.
    let mut watch = small.watch(WatchRequest::prefix("big", 0)).await.unwrap();
    etcd.put("big", vec![b'y'; 4096]).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, EtcdError::TooLarge { .. }), "{err:?}");
    assert!(watch.next().await.is_none());
    // The default limit reads it.
    assert_eq!(etcd.get("big").await.unwrap().unwrap().value.len(), 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips() {
    // Three members, as in production: a write is acknowledged once a majority has it.
    let Some(cluster) = EtcdCluster::start(3).await else {
        return;
    };
    let etcd = cluster.client();
    etcd.put("warm", "up").await.unwrap();
    let n = 50;
    let started = Instant::now();
    for i in 0..n {
        etcd.put(format!("rt/{i}"), "v").await.unwrap();
    }
    let put = started.elapsed() / n;
    let txn = Txn {
        success: (0..100)
            .map(|i| Op::put(format!("txn/{i:03}"), "v"))
            .collect(),
        ..Default::default()
    };
    let mut revisions = Vec::new();
    let started = Instant::now();
    for _ in 0..10 {
        revisions.push(etcd.txn(&txn).await.unwrap().revision);
    }
    let per_txn = started.elapsed() / 10;
    let all = etcd.get_prefix("txn/").await.unwrap();
    assert_eq!(all.count, 100);
    assert!(
        all.kvs
            .iter()
            .all(|kv| kv.mod_revision == *revisions.last().unwrap())
    );
    eprintln!("etcd round trip: put {put:?}, 100-op txn {per_txn:?}");
}

/// How many requests of gRPC method `method` etcd member `i` has handled (its `/metrics`; the
/// JSON gateway's requests go through the same gRPC server).
async fn handled(cluster: &EtcdCluster, i: usize, method: &str) -> u64 {
    let url = cluster.client_url(i).join("metrics").unwrap();
    // reqwest has rustls without a provider here; cairn's TLS options supply one (plain HTTP).
    let tls = cairn_etcd::TlsOptions::default()
        .client_config(false)
        .unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    let needle = format!("grpc_method=\"{method}\"");
    text.lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The daemons keep their data under the election's prefix (`<prefix>data/`): writes there
/// must not wake the election, which would campaign, read its keys and watch again per write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_the_data_under_the_prefix_leave_the_election_alone() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let etcd = cluster.client();
    let (view_tx, mut view) = tokio::sync::watch::channel(cairn_etcd::ElectionView::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let election = tokio::spawn(cairn_etcd::campaign(
        etcd.clone(),
        cairn_etcd::ElectionConfig {
            prefix: b"/svc/".to_vec(),
            name: "a:1".into(),
            ttl: Duration::from_secs(60),
        },
        view_tx,
        stop.clone(),
    ));
    tokio::time::timeout(TIMEOUT, view.wait_for(|v| v.is_leader()))
        .await
        .expect("elected within 5 s")
        .expect("the election runs");
    let ranges = handled(&cluster, 0, "Range").await;
    let txns = handled(&cluster, 0, "Txn").await;
    for i in 0..100 {
        etcd.put(format!("/svc/data/k{i}"), "v").await.unwrap();
    }
    // A change of the election's own keys still reaches it: another member joins.
    etcd.put("/svc/members/b:2", "b:2").await.unwrap();
    tokio::time::timeout(TIMEOUT, view.wait_for(|v| v.members.len() == 2))
        .await
        .expect("the new member seen within 5 s")
        .expect("the election runs");
    let (ranges, txns) = (
        handled(&cluster, 0, "Range").await - ranges,
        handled(&cluster, 0, "Txn").await - txns,
    );
    // One wake for the member (a campaign txn and a read), none for the 100 data writes.
    assert!(
        ranges <= 2 && txns <= 2,
        "the election read {ranges} times and campaigned {txns} times for 100 data writes"
    );
    assert!(view.borrow().is_leader());
    stop.cancel();
    election.await.unwrap();
}
