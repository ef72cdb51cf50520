//! Wake-ups for blocking queries, by topic: a query waits only on what it reads (one KV key, a
//! KV prefix, one service, one node, or a whole table), so a write wakes only the queries whose
//! data it changed, not every watcher in the process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cairn_cli::LockOrExit as _;
use tokio::sync::Notify;

use crate::state::Changes;

/// What a blocking query reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    Kv(String),
    KvPrefix(String),
    Service(String),
    Node(String),
    Nodes,
    Services,
    Checks,
    Sessions,
    /// Any node, service or check change (the whole-catalog endpoint).
    Catalog,
    /// Any change to a document table (coordinates, config entries, queries, autopilot).
    Table(crate::state::Table),
}

/// Topic → the `Notify` its waiters park on. Entries exist only while someone waits.
#[derive(Default)]
pub struct Registry {
    topics: Mutex<Topics>,
    closing: AtomicBool,
    /// Bumped when the whole state was replaced: every blocking query answers at once, since
    /// indexes it waits on may now lie ahead of the restored data.
    generation: std::sync::atomic::AtomicU64,
}

/// The watched topics, and how many of them are KV ones: a KV write probes one topic per key
/// prefix, which is skipped altogether while nobody watches the KV store.
#[derive(Default)]
struct Topics {
    map: HashMap<Topic, Arc<Notify>>,
    kv: usize,
}

fn is_kv(topic: &Topic) -> bool {
    matches!(topic, Topic::Kv(_) | Topic::KvPrefix(_))
}

/// A waiter's handle on a topic; dropping the last one removes the topic's entry.
pub struct Subscription<'a> {
    registry: &'a Registry,
    topic: Topic,
    notify: Arc<Notify>,
}

impl Subscription<'_> {
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut topics = self.registry.topics.lock_or_exit("watch topics");
        // Clones are only made under this lock: 2 = the map's and ours.
        if Arc::strong_count(&self.notify) == 2 && topics.map.remove(&self.topic).is_some() {
            topics.kv -= usize::from(is_kv(&self.topic));
        }
    }
}

impl Registry {
    pub fn subscribe(&self, topic: Topic) -> Subscription<'_> {
        let mut topics = self.topics.lock_or_exit("watch topics");
        let kv = is_kv(&topic);
        let notify = match topics.map.get(&topic) {
            Some(n) => n.clone(),
            None => {
                topics.kv += usize::from(kv);
                topics.map.entry(topic.clone()).or_default().clone()
            }
        };
        Subscription {
            registry: self,
            topic,
            notify,
        }
    }

    /// Shutdown: wakes every waiter and tells it to answer now.
    pub fn release_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let topics = self.topics.lock_or_exit("watch topics");
        for n in topics.map.values() {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter after the state was replaced (see `generation`).
    pub fn wake_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let topics = self.topics.lock_or_exit("watch topics");
        for n in topics.map.values() {
            n.notify_waiters();
        }
    }

    /// The current replacement generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// True once [`Registry::release_all`] was called.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Number of topics with waiters (for metrics).
    pub fn topic_count(&self) -> usize {
        self.topics.lock_or_exit("watch topics").map.len()
    }

    /// Wakes every waiter whose data `changes` touched.
    pub fn publish(&self, changes: &Changes) {
        let topics = self.topics.lock_or_exit("watch topics");
        if topics.map.is_empty() {
            return;
        }
        let wake = |t: &Topic| {
            if let Some(n) = topics.map.get(t) {
                n.notify_waiters();
            }
        };
        // A prefix lookup per key boundary; allocation only for the probe keys.
        let mut probe = Topic::KvPrefix(String::new());
        let kv_keys = changes.kv.iter().chain(changes.tombstones.iter());
        for key in kv_keys.filter(|_| topics.kv > 0) {
            wake(&Topic::Kv(key.clone()));
            for (i, _) in key.char_indices().chain(std::iter::once((key.len(), ' '))) {
                if let Topic::KvPrefix(p) = &mut probe {
                    p.clear();
                    p.push_str(&key[..i]);
                }
                wake(&probe);
            }
        }
        for name in &changes.service_idx {
            wake(&Topic::Service(name.clone()));
        }
        for name in &changes.node_idx {
            wake(&Topic::Node(name.clone()));
        }
        if !changes.nodes.is_empty() {
            wake(&Topic::Nodes);
        }
        if !changes.services.is_empty() || !changes.nodes.is_empty() {
            wake(&Topic::Services);
        }
        if !changes.checks.is_empty() {
            wake(&Topic::Checks);
        }
        if !changes.sessions.is_empty() {
            wake(&Topic::Sessions);
        }
        let mut tables: Vec<crate::state::Table> = changes.docs.iter().map(|(t, _)| *t).collect();
        tables.sort_unstable();
        tables.dedup();
        for t in tables {
            wake(&Topic::Table(t));
        }
        if !changes.nodes.is_empty() || !changes.services.is_empty() || !changes.checks.is_empty() {
            wake(&Topic::Catalog);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv_topics(r: &Registry) -> usize {
        r.topics.lock().unwrap().kv
    }

    #[tokio::test]
    async fn kv_writes_wake_prefix_watchers_and_are_skipped_without_any() {
        let r = Registry::default();
        let node = r.subscribe(Topic::Node("n1".into()));
        assert_eq!(kv_topics(&r), 0, "a node watch is not a KV one");
        let prefix = r.subscribe(Topic::KvPrefix("app/".into()));
        let same = r.subscribe(Topic::KvPrefix("app/".into()));
        assert_eq!(kv_topics(&r), 1, "one topic however many waiters");
        {
            let woken = prefix.notify().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let mut ch = Changes::default();
            ch.kv.insert("app/x".into());
            r.publish(&ch);
            tokio::time::timeout(std::time::Duration::from_secs(1), woken)
                .await
                .expect("a write under the prefix wakes its watcher");
        }
        drop(same);
        assert_eq!(kv_topics(&r), 1, "the topic stays while a waiter is left");
        drop(prefix);
        assert_eq!(kv_topics(&r), 0);
        drop(node);
        assert_eq!(r.topic_count(), 0);
    }
}
