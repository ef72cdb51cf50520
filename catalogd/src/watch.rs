//! Wake-ups for blocking queries, by topic: a query waits only on what it reads (one KV key, a
//! KV prefix, one service, one node, or a whole table), so a write wakes only the queries whose
//! data it changed, not every watcher in the process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    topics: Mutex<HashMap<Topic, Arc<Notify>>>,
    closing: AtomicBool,
    /// Bumped when the whole state was replaced: every blocking query answers at once, since
    /// indexes it waits on may now lie ahead of the restored data.
    generation: std::sync::atomic::AtomicU64,
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
        let mut topics = self
            .registry
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Clones are only made under this lock: 2 = the map's and ours.
        if Arc::strong_count(&self.notify) == 2 {
            topics.remove(&self.topic);
        }
    }
}

impl Registry {
    pub fn subscribe(&self, topic: Topic) -> Subscription<'_> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let notify = topics.entry(topic.clone()).or_default().clone();
        Subscription {
            registry: self,
            topic,
            notify,
        }
    }

    /// Shutdown: wakes every waiter and tells it to answer now.
    pub fn release_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        for n in topics.values() {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter after the state was replaced (see `generation`).
    pub fn wake_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        for n in topics.values() {
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
        self.topics.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Wakes every waiter whose data `changes` touched.
    pub fn publish(&self, changes: &Changes) {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if topics.is_empty() {
            return;
        }
        let wake = |t: &Topic| {
            if let Some(n) = topics.get(t) {
                n.notify_waiters();
            }
        };
        // A prefix lookup per key boundary; allocation only for the probe keys.
        let mut probe = Topic::KvPrefix(String::new());
        for key in changes.kv.iter().chain(changes.tombstones.iter()) {
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
