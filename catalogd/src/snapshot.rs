//! Snapshots (`/v1/snapshot`): the whole catalog in one file, restorable into any catalogd with
//! every index intact.
//!
//! The archive has the layout of Consul's, so the tools that move, list and verify Consul
//! snapshots handle it: a gzip-compressed tar of `meta.json` (Raft snapshot metadata: ID, Index,
//! Term, Size...), `state.bin` and `SHA256SUMS`. `state.bin` is catalogd's own: every key and
//! value of its store, length-prefixed, after a magic line; a Consul `state.bin` (a msgpack
//! stream of Consul's FSM) is refused when restoring, since catalogd cannot read it.

use std::io::{Read as _, Write as _};

use cairn_store::{Batch, MemStore, Op, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::persist;
use crate::state::State;

/// First line of a catalogd `state.bin`.
const MAGIC: &[u8] = b"cairn-catalogd-state 1\n";
/// Largest key or value a `state.bin` record may hold (well above any limit catalogd enforces).
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Largest archive content a restore unpacks: a small upload must not inflate into memory
/// exhaustion (a gzip bomb).
pub const MAX_UNPACKED: u64 = 4 * 1024 * 1024 * 1024;

/// Raft snapshot metadata, as `meta.json` carries it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Meta {
    pub version: u32,
    #[serde(rename = "ID")]
    pub id: String,
    pub index: u64,
    pub term: u64,
    pub peers: String,
    pub configuration: serde_json::Value,
    pub configuration_index: u64,
    pub size: u64,
}

/// Why an archive could not be restored (texts as Consul's where Consul has one).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("failed to decompress snapshot: {0}")]
    Decompress(String),
    #[error("failed to read snapshot file: {0}")]
    Read(String),
    #[error("failed to restore snapshot: {0}")]
    Restore(String),
}

/// The server writing a snapshot, for its Raft configuration.
pub struct Server<'a> {
    pub id: &'a str,
    pub address: &'a str,
}

fn state_bin(state: &State) -> Vec<u8> {
    let batch = persist::full_batch(state);
    let mut out = MAGIC.to_vec();
    for op in batch.ops {
        if let Op::Put { key, value } = op {
            for part in [&key, &value] {
                out.extend_from_slice(&(part.len() as u32).to_le_bytes());
                out.extend_from_slice(part);
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `state` as a snapshot archive.
pub fn save(state: &State, server: &Server<'_>, now_ms: u64) -> std::io::Result<Vec<u8>> {
    let bin = state_bin(state);
    let meta = Meta {
        version: 1,
        id: format!("1-{}-{now_ms}", state.index),
        index: state.index,
        term: 1,
        peers: String::new(),
        configuration: serde_json::json!({"Servers": [
            {"Suffrage": 0, "ID": server.id, "Address": server.address}]}),
        configuration_index: 1,
        size: bin.len() as u64,
    };
    let mut meta_json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
    meta_json.push(b'\n');
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        hex(&Sha256::digest(&meta_json)),
        hex(&Sha256::digest(&bin))
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in [
        ("meta.json", meta_json.as_slice()),
        ("state.bin", bin.as_slice()),
        ("SHA256SUMS", sums.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(now_ms / 1000);
        header.set_cksum();
        tar.append_data(&mut header, name, data)?;
    }
    let gz = tar.into_inner()?;
    let mut out = gz.finish()?;
    out.flush()?;
    Ok(out)
}

/// Reads a snapshot archive back into a state (its indexes as they were saved).
pub fn restore(archive: &[u8]) -> Result<(Meta, State), SnapshotError> {
    if archive.is_empty() {
        return Err(SnapshotError::Decompress("EOF".into()));
    }
    if !archive.starts_with(&[0x1f, 0x8b]) {
        return Err(SnapshotError::Decompress("gzip: invalid header".into()));
    }
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(archive)
        .take(MAX_UNPACKED + 1)
        .read_to_end(&mut raw)
        .map_err(|e| SnapshotError::Decompress(format!("gzip: {e}")))?;
    if raw.len() as u64 > MAX_UNPACKED {
        return Err(SnapshotError::Decompress(format!(
            "more than {MAX_UNPACKED} bytes unpacked"
        )));
    }
    let read = |why: String| SnapshotError::Read(why);
    let mut files: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut tar = tar::Archive::new(raw.as_slice());
    let entries = tar
        .entries()
        .map_err(|e| read(format!("failed reading snapshot: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read(format!("failed reading snapshot: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| read(format!("failed reading snapshot: {e}")))?
            .to_string_lossy()
            .into_owned();
        if !["meta.json", "state.bin", "SHA256SUMS"].contains(&name.as_str()) {
            return Err(read(format!("unexpected file {name:?} in snapshot")));
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| read(format!("failed reading snapshot: {e}")))?;
        files.insert(name, data);
    }
    let file = |name: &str| {
        files.get(name).ok_or_else(|| {
            read(format!(
                "failed checking integrity of snapshot: file missing for {name:?}"
            ))
        })
    };
    let meta: Meta = serde_json::from_slice(file("meta.json")?)
        .map_err(|e| read(format!("failed to decode snapshot metadata: {e}")))?;
    let sums = String::from_utf8_lossy(file("SHA256SUMS")?).into_owned();
    for name in ["meta.json", "state.bin"] {
        let want = sums
            .lines()
            .find_map(|l| {
                l.split_once("  ")
                    .filter(|(_, n)| *n == name)
                    .map(|(h, _)| h)
            })
            .ok_or_else(|| {
                read(format!(
                    "failed checking integrity of snapshot: list missing hash for {name:?}"
                ))
            })?;
        if hex(&Sha256::digest(file(name)?)) != want {
            return Err(read(format!(
                "failed checking integrity of snapshot: hash check failed for {name:?}"
            )));
        }
    }
    let state = decode_state(file("state.bin")?)?;
    Ok((meta, state))
}

fn decode_state(bin: &[u8]) -> Result<State, SnapshotError> {
    let bad = |why: &str| SnapshotError::Restore(format!("state.bin: {why}"));
    let mut rest = bin.strip_prefix(MAGIC).ok_or_else(|| {
        bad("not a catalogd snapshot (a Consul snapshot cannot be restored here)")
    })?;
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, SnapshotError> {
        if rest.len() < 4 {
            return Err(bad("truncated record"));
        }
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_RECORD || tail.len() < len {
            return Err(bad("truncated record"));
        }
        let (data, tail) = tail.split_at(len);
        *rest = tail;
        Ok(data.to_vec())
    };
    let mut batch = Batch::default();
    while !rest.is_empty() {
        let key = take(&mut rest)?;
        let value = take(&mut rest)?;
        batch.put(key, value);
    }
    let store = MemStore::new();
    store
        .commit(batch)
        .map_err(|e| SnapshotError::Restore(e.to_string()))?;
    persist::load(&store).map_err(|e| SnapshotError::Restore(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Changes, KvPut, LockDelays};

    #[test]
    fn a_snapshot_restores_the_same_state() {
        let mut st = State::default();
        let mut ch = Changes::default();
        for (k, v) in [("a", "1"), ("b/c", "2")] {
            st.kv_put(
                KvPut {
                    key: k.into(),
                    value: v.into(),
                    ..Default::default()
                },
                &LockDelays::default(),
                std::time::Instant::now(),
                &mut ch,
            )
            .unwrap();
        }
        let archive = save(
            &st,
            &Server {
                id: "id",
                address: "127.0.0.1:8300",
            },
            1_700_000_000_000,
        )
        .unwrap();
        assert_eq!(&archive[..2], b"\x1f\x8b", "gzip magic");
        let (meta, back) = restore(&archive).unwrap();
        assert_eq!(meta.index, st.index);
        assert_eq!(back.index, st.index);
        assert_eq!(back.kv, st.kv);
        assert_eq!(back.tables, st.tables);
    }

    #[test]
    fn damaged_archives_are_refused_with_consuls_texts() {
        assert_eq!(
            restore(b"").unwrap_err().to_string(),
            "failed to decompress snapshot: EOF"
        );
        assert_eq!(
            restore(b"not gzip").unwrap_err().to_string(),
            "failed to decompress snapshot: gzip: invalid header"
        );
        let mut st = State::default();
        st.index = 7;
        let mut archive = save(
            &st,
            &Server {
                id: "id",
                address: "a",
            },
            0,
        )
        .unwrap();
        // Flip a byte inside the compressed data: either the gzip CRC or our hashes catch it.
        let mid = archive.len() / 2;
        archive[mid] ^= 0xff;
        assert!(restore(&archive).is_err());
    }
}
