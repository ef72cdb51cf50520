//! Consul's lock and semaphore layout in the KV store, as pure decisions over what a read
//! returned, so `catalogd lock` and `consul lock` on one prefix exclude each other and the rules
//! are tested without a server. The layout (Consul's `api/lock.go` and `api/semaphore.go`):
//!
//! - lock (`-n 1`): the key `<prefix>/.lock`, flags [`LOCK_FLAG`], held through `?acquire=` by
//!   the holder's session;
//! - semaphore (`-n N`): the same key holding `{"Limit":N,"Holders":{"<session>":true,...}}`
//!   with flags [`SEMAPHORE_FLAG`], updated by check-and-set, plus one contender key
//!   `<prefix>/<session>` per contender, acquired by its session (Behavior delete), so a dead
//!   contender's key vanishes and its slot is pruned by the next reader.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_wire::KvPair;
use serde_json::Value;

/// Consul's `LockFlagValue`: the flags of a lock's key.
pub const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// Consul's `SemaphoreFlagValue`: the flags of a semaphore's keys.
pub const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;
/// Consul's `DefaultSemaphoreKey`: the key under the prefix both kinds coordinate on, so a lock
/// and a semaphore on one prefix see each other's flags and refuse to mix.
pub const LOCK_KEY: &str = ".lock";
/// Consul's `DefaultLockSessionTTL` / `DefaultSemaphoreSessionTTL`.
pub const SESSION_TTL: Duration = Duration::from_secs(15);
/// Consul's `DefaultLockWaitTime`: the longest one blocking read waits while the lock is taken.
pub const LOCK_WAIT: Duration = Duration::from_secs(15);
/// Consul's `DefaultLockRetryTime`: the pause after an acquire refused while the key is free,
/// which means the previous holder's lock-delay is in force.
pub const LOCK_RETRY: Duration = Duration::from_secs(5);
/// `consul lock`'s `defaultMonitorRetryTime`: the pause between monitor retries.
pub const MONITOR_RETRY_TIME: Duration = Duration::from_secs(1);
/// `consul lock`'s `lockKillGracePeriod`: between SIGTERM and SIGKILL of a child whose lock is
/// gone (short, because another holder may start once the lock-delay has passed).
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Why the KV contents do not allow this lock or semaphore (texts are Consul's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("Existing key does not match lock use")]
    LockConflict,
    #[error("Existing key does not match semaphore use")]
    SemaphoreConflict,
    #[error("semaphore limit conflict (lock: {lock}, local: {local})")]
    LimitConflict { lock: i64, local: i64 },
    #[error("lock decoding failed: {0}")]
    Decode(String),
}

/// Go's `path.Join(prefix, name)`: segments joined by `/`, empty and `.` segments dropped, `..`
/// removing the one before it.
pub fn join(prefix: &str, name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in prefix.split('/').chain(name.split('/')) {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// What a lock contender does after reading the lock key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStep {
    /// Our session already holds it.
    Held,
    /// Another session holds it: block on the key for a change.
    Wait { holder: String },
    /// Free: try `?acquire=`.
    Acquire,
}

/// Consul's `Lock.Lock` decision over the key's current entry.
pub fn lock_step(pair: Option<&KvPair>, session: &str) -> Result<LockStep, LayoutError> {
    let Some(pair) = pair else {
        return Ok(LockStep::Acquire);
    };
    if pair.flags != LOCK_FLAG {
        return Err(LayoutError::LockConflict);
    }
    Ok(if pair.session == session {
        LockStep::Held
    } else if !pair.session.is_empty() {
        LockStep::Wait {
            holder: pair.session.clone(),
        }
    } else {
        LockStep::Acquire
    })
}

/// The semaphore's coordination record (Consul's `semaphoreLock`). A holder counts by its
/// presence in `holders`, whatever its boolean, as in Consul's Go code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreRecord {
    pub limit: i64,
    /// Sorted, as Go's encoding/json writes a map.
    pub holders: BTreeMap<String, bool>,
}

impl SemaphoreRecord {
    /// Reads the record from the lock key's value; no value (no key, or an empty one) is a fresh
    /// record with our limit. Field names match case-insensitively and unknown fields are
    /// ignored, as Go's decoder does.
    pub fn decode(value: Option<&[u8]>, local_limit: i64) -> Result<Self, LayoutError> {
        let fresh = SemaphoreRecord {
            limit: local_limit,
            holders: BTreeMap::new(),
        };
        let Some(bytes) = value.filter(|v| !v.is_empty()) else {
            return Ok(fresh);
        };
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| LayoutError::Decode(e.to_string()))?;
        let Value::Object(fields) = doc else {
            return Err(LayoutError::Decode(
                "the record is not a JSON object".into(),
            ));
        };
        let mut record = SemaphoreRecord {
            limit: 0,
            holders: BTreeMap::new(),
        };
        for (name, value) in fields {
            if name.eq_ignore_ascii_case("limit") {
                record.limit = value.as_i64().ok_or_else(|| {
                    LayoutError::Decode(format!("Limit is not an integer: {value}"))
                })?;
            } else if name.eq_ignore_ascii_case("holders") {
                match value {
                    Value::Null => {}
                    Value::Object(holders) => {
                        for (session, held) in holders {
                            let held = held.as_bool().ok_or_else(|| {
                                LayoutError::Decode(format!("holder {session:?} is not a boolean"))
                            })?;
                            record.holders.insert(session, held);
                        }
                    }
                    other => {
                        return Err(LayoutError::Decode(format!(
                            "Holders is not an object: {other}"
                        )));
                    }
                }
            }
        }
        Ok(record)
    }

    /// The JSON Consul writes: `{"Limit":N,"Holders":{...}}`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({"Limit": self.limit, "Holders": self.holders})
            .to_string()
            .into_bytes()
    }

    /// Drops holders whose session holds no key under the prefix any more (Consul's
    /// `pruneDeadHolders`): their contender key went with their session.
    pub fn prune(&mut self, pairs: &[KvPair]) {
        self.holders
            .retain(|holder, _| pairs.iter().any(|p| p.session == *holder));
    }
}

/// The lock key's entry among a prefix listing, or Consul's stand-in for a missing one (no value,
/// semaphore flags, ModifyIndex 0 so a check-and-set creates it).
pub fn find_lock_pair(pairs: &[KvPair], lock_key: &str) -> KvPair {
    pairs
        .iter()
        .find(|p| p.key == lock_key)
        .cloned()
        .unwrap_or_else(|| KvPair {
            key: lock_key.to_string(),
            flags: SEMAPHORE_FLAG,
            ..Default::default()
        })
}

/// What a semaphore contender does after listing the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SemaphoreStep {
    /// Every slot is taken by a live holder: block on the prefix for a change.
    Wait { holders: Vec<String> },
    /// A slot is free: write `value` to the lock key with `?cas=cas`.
    Take { value: Vec<u8>, cas: u64 },
}

/// Consul's `Semaphore.Acquire` decision over a listing of the prefix.
pub fn semaphore_step(
    pairs: &[KvPair],
    lock_key: &str,
    session: &str,
    limit: i64,
) -> Result<SemaphoreStep, LayoutError> {
    let lock_pair = find_lock_pair(pairs, lock_key);
    if lock_pair.flags != SEMAPHORE_FLAG {
        return Err(LayoutError::SemaphoreConflict);
    }
    let mut record = SemaphoreRecord::decode(Some(&lock_pair.value_bytes()), limit)?;
    if record.limit != limit {
        return Err(LayoutError::LimitConflict {
            lock: record.limit,
            local: limit,
        });
    }
    record.prune(pairs);
    if record.holders.len() as i64 >= record.limit {
        return Ok(SemaphoreStep::Wait {
            holders: record.holders.into_keys().collect(),
        });
    }
    record.holders.insert(session.to_string(), true);
    Ok(SemaphoreStep::Take {
        value: record.encode(),
        cas: lock_pair.modify_index,
    })
}

/// Whether `session` still holds a slot, for the monitor (Consul's `Semaphore.monitorLock`).
pub fn semaphore_holds(
    pairs: &[KvPair],
    lock_key: &str,
    session: &str,
) -> Result<bool, LayoutError> {
    let lock_pair = find_lock_pair(pairs, lock_key);
    // The limit is not checked here, so any value stands in for it.
    let mut record = SemaphoreRecord::decode(Some(&lock_pair.value_bytes()), 0)?;
    record.prune(pairs);
    Ok(record.holders.contains_key(session))
}

/// The lock key's new value without `session` among its holders, with the `cas` to write it; `None`
/// when it is not a holder (nothing to write).
pub fn semaphore_release(
    lock_pair: Option<&KvPair>,
    session: &str,
) -> Result<Option<(Vec<u8>, u64)>, LayoutError> {
    let (value, cas) = match lock_pair {
        Some(p) => (p.value_bytes(), p.modify_index),
        None => (Vec::new(), 0),
    };
    let mut record = SemaphoreRecord::decode(Some(&value), 0)?;
    if record.holders.remove(session).is_none() {
        return Ok(None);
    }
    Ok(Some((record.encode(), cas)))
}

/// What to do with the lock key once we are done (Consul's `Destroy`, best effort): delete it
/// with `?cas=` when nobody holds or waits on it any more. `pairs` lists the prefix (a lock's
/// listing may hold only the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    Delete {
        cas: u64,
    },
    /// Someone else still uses it (or there is nothing to delete).
    Keep,
}

/// The cleanup of a lock's key.
pub fn lock_cleanup(pair: Option<&KvPair>) -> Result<Cleanup, LayoutError> {
    match pair {
        None => Ok(Cleanup::Keep),
        Some(p) if p.flags != LOCK_FLAG => Err(LayoutError::LockConflict),
        Some(p) if !p.session.is_empty() => Ok(Cleanup::Keep),
        Some(p) => Ok(Cleanup::Delete {
            cas: p.modify_index,
        }),
    }
}

/// The cleanup of a semaphore's lock key, from a listing of the prefix.
pub fn semaphore_cleanup(pairs: &[KvPair], lock_key: &str) -> Result<Cleanup, LayoutError> {
    let lock_pair = find_lock_pair(pairs, lock_key);
    if lock_pair.modify_index == 0 {
        return Ok(Cleanup::Keep);
    }
    if lock_pair.flags != SEMAPHORE_FLAG {
        return Err(LayoutError::SemaphoreConflict);
    }
    let mut record = SemaphoreRecord::decode(Some(&lock_pair.value_bytes()), 0)?;
    record.prune(pairs);
    Ok(if record.holders.is_empty() {
        Cleanup::Delete {
            cas: lock_pair.modify_index,
        }
    } else {
        Cleanup::Keep
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, flags: u64, session: &str, value: &str, modify_index: u64) -> KvPair {
        KvPair {
            key: key.into(),
            flags,
            session: session.into(),
            value: (!value.is_empty()).then(|| cairn_wire::b64_encode(value.as_bytes())),
            modify_index,
            ..Default::default()
        }
    }

    #[test]
    fn flags_are_consuls() {
        assert_eq!(LOCK_FLAG, 3304740253564472344);
        assert_eq!(SEMAPHORE_FLAG, 16210313421097356768);
    }

    #[test]
    fn join_is_go_path_join() {
        for (prefix, name, want) in [
            ("jobs/nightly", ".lock", "jobs/nightly/.lock"),
            ("jobs/nightly/", ".lock", "jobs/nightly/.lock"),
            ("jobs//nightly", ".lock", "jobs/nightly/.lock"),
            ("jobs/./x/../nightly", "s1", "jobs/nightly/s1"),
            ("", ".lock", ".lock"),
        ] {
            assert_eq!(join(prefix, name), want, "{prefix:?} + {name:?}");
        }
    }

    #[test]
    fn lock_steps() {
        let ours = "s-ours";
        let cases: Vec<(Option<KvPair>, Result<LockStep, LayoutError>)> = vec![
            (None, Ok(LockStep::Acquire)),
            (
                Some(pair("p/.lock", LOCK_FLAG, "", "", 5)),
                Ok(LockStep::Acquire),
            ),
            (
                Some(pair("p/.lock", LOCK_FLAG, ours, "", 5)),
                Ok(LockStep::Held),
            ),
            (
                Some(pair("p/.lock", LOCK_FLAG, "s-other", "", 5)),
                Ok(LockStep::Wait {
                    holder: "s-other".into(),
                }),
            ),
            (
                Some(pair("p/.lock", 0, "", "x", 5)),
                Err(LayoutError::LockConflict),
            ),
            (
                Some(pair("p/.lock", SEMAPHORE_FLAG, "", "{}", 5)),
                Err(LayoutError::LockConflict),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(lock_step(input.as_ref(), ours), want, "{input:?}");
        }
    }

    #[test]
    fn record_round_trip_is_consuls_json() {
        let r = SemaphoreRecord::decode(Some(br#"{"Limit":2,"Holders":{"b":true,"a":true}}"#), 9)
            .unwrap();
        assert_eq!(r.limit, 2);
        assert_eq!(
            String::from_utf8(r.encode()).unwrap(),
            r#"{"Limit":2,"Holders":{"a":true,"b":true}}"#
        );
        // Go's decoder: any case, unknown fields ignored, null holders.
        let r = SemaphoreRecord::decode(Some(br#"{"limit":3,"holders":null,"x":1}"#), 9).unwrap();
        assert_eq!((r.limit, r.holders.len()), (3, 0));
        // No value: a fresh record with our limit.
        assert_eq!(SemaphoreRecord::decode(None, 4).unwrap().limit, 4);
        assert_eq!(SemaphoreRecord::decode(Some(b""), 4).unwrap().limit, 4);
        for bad in [
            &b"nope"[..],
            b"[]",
            br#"{"Limit":"2"}"#,
            br#"{"Holders":{"a":1}}"#,
        ] {
            assert!(
                matches!(
                    SemaphoreRecord::decode(Some(bad), 1),
                    Err(LayoutError::Decode(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn semaphore_steps() {
        let lk = "p/.lock";
        let me = "s-me";
        let contender = |s: &str| pair(&format!("p/{s}"), SEMAPHORE_FLAG, s, "", 3);
        let record = |json: &str, idx| pair(lk, SEMAPHORE_FLAG, "", json, idx);
        struct Case {
            name: &'static str,
            pairs: Vec<KvPair>,
            limit: i64,
            want: Result<SemaphoreStep, LayoutError>,
        }
        let cases = vec![
            Case {
                name: "no record yet: take with cas 0",
                pairs: vec![contender(me)],
                limit: 2,
                want: Ok(SemaphoreStep::Take {
                    value: br#"{"Limit":2,"Holders":{"s-me":true}}"#.to_vec(),
                    cas: 0,
                }),
            },
            Case {
                name: "one live holder of two",
                pairs: vec![
                    record(r#"{"Limit":2,"Holders":{"s-a":true}}"#, 7),
                    contender("s-a"),
                    contender(me),
                ],
                limit: 2,
                want: Ok(SemaphoreStep::Take {
                    value: br#"{"Limit":2,"Holders":{"s-a":true,"s-me":true}}"#.to_vec(),
                    cas: 7,
                }),
            },
            Case {
                name: "full",
                pairs: vec![
                    record(r#"{"Limit":2,"Holders":{"s-a":true,"s-b":true}}"#, 7),
                    contender("s-a"),
                    contender("s-b"),
                    contender(me),
                ],
                limit: 2,
                want: Ok(SemaphoreStep::Wait {
                    holders: vec!["s-a".into(), "s-b".into()],
                }),
            },
            Case {
                name: "a dead holder (no contender key) is pruned",
                pairs: vec![
                    record(r#"{"Limit":2,"Holders":{"s-a":true,"s-dead":true}}"#, 9),
                    contender("s-a"),
                    contender(me),
                ],
                limit: 2,
                want: Ok(SemaphoreStep::Take {
                    value: br#"{"Limit":2,"Holders":{"s-a":true,"s-me":true}}"#.to_vec(),
                    cas: 9,
                }),
            },
            Case {
                name: "a holder marked false still counts (presence is what Consul checks)",
                pairs: vec![
                    record(r#"{"Limit":1,"Holders":{"s-a":false}}"#, 9),
                    contender("s-a"),
                    contender(me),
                ],
                limit: 1,
                want: Ok(SemaphoreStep::Wait {
                    holders: vec!["s-a".into()],
                }),
            },
            Case {
                name: "limit mismatch",
                pairs: vec![record(r#"{"Limit":3,"Holders":{}}"#, 4), contender(me)],
                limit: 2,
                want: Err(LayoutError::LimitConflict { lock: 3, local: 2 }),
            },
            Case {
                name: "a lock (not a semaphore) on the prefix",
                pairs: vec![pair(lk, LOCK_FLAG, "s-x", "", 4), contender(me)],
                limit: 2,
                want: Err(LayoutError::SemaphoreConflict),
            },
            Case {
                name: "garbage record",
                pairs: vec![record("{", 4), contender(me)],
                limit: 2,
                want: Err(LayoutError::Decode(
                    "EOF while parsing an object at line 1 column 1".into(),
                )),
            },
        ];
        for c in cases {
            assert_eq!(
                semaphore_step(&c.pairs, lk, me, c.limit),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn semaphore_monitor_release_and_cleanup() {
        let lk = "p/.lock";
        let rec = pair(
            lk,
            SEMAPHORE_FLAG,
            "",
            r#"{"Limit":2,"Holders":{"s-a":true,"s-b":true}}"#,
            8,
        );
        let a = pair("p/s-a", SEMAPHORE_FLAG, "s-a", "", 3);
        let b = pair("p/s-b", SEMAPHORE_FLAG, "s-b", "", 3);
        assert_eq!(
            semaphore_holds(&[rec.clone(), a.clone(), b.clone()], lk, "s-a"),
            Ok(true)
        );
        // s-a's contender key is gone with its session: it no longer holds.
        assert_eq!(
            semaphore_holds(&[rec.clone(), b.clone()], lk, "s-a"),
            Ok(false)
        );
        assert_eq!(semaphore_holds(&[], lk, "s-a"), Ok(false));

        assert_eq!(
            semaphore_release(Some(&rec), "s-a"),
            Ok(Some((br#"{"Limit":2,"Holders":{"s-b":true}}"#.to_vec(), 8)))
        );
        assert_eq!(semaphore_release(Some(&rec), "s-x"), Ok(None));
        assert_eq!(semaphore_release(None, "s-a"), Ok(None));

        assert_eq!(
            semaphore_cleanup(&[rec.clone(), b.clone()], lk),
            Ok(Cleanup::Keep),
            "s-b still holds"
        );
        assert_eq!(
            semaphore_cleanup(std::slice::from_ref(&rec), lk),
            Ok(Cleanup::Delete { cas: 8 }),
            "only dead holders left"
        );
        assert_eq!(semaphore_cleanup(&[], lk), Ok(Cleanup::Keep));

        let held = pair(lk, LOCK_FLAG, "s-a", "", 5);
        let free = pair(lk, LOCK_FLAG, "", "", 6);
        assert_eq!(lock_cleanup(Some(&held)), Ok(Cleanup::Keep));
        assert_eq!(lock_cleanup(Some(&free)), Ok(Cleanup::Delete { cas: 6 }));
        assert_eq!(lock_cleanup(None), Ok(Cleanup::Keep));
        assert_eq!(
            lock_cleanup(Some(&pair(lk, 0, "", "", 6))),
            Err(LayoutError::LockConflict)
        );
    }
}
