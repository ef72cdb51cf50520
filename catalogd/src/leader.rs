//! Which replica runs the work that must happen exactly once (TTL checks turning critical,
//! sessions invalidated), and what `/v1/status/leader` and `/v1/status/peers` answer.
//!
//! One catalogd is always its own leader. Replicas on etcd elect one through an etcd lease
//! (`crate::ha`); this module is what the rest of catalogd reads: the current view, and a
//! receiver that wakes on every change of it.

use std::sync::Arc;

use tokio::sync::watch;

/// Who leads, as this replica knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The leading replica's address (`""` while there is none).
    pub leader: String,
    /// Whether that is this replica.
    pub is_self: bool,
    /// Every live replica's address, sorted.
    pub peers: Vec<String>,
}

/// The shared, changing [`View`].
#[derive(Clone)]
pub struct Leadership {
    tx: Arc<watch::Sender<View>>,
}

impl Leadership {
    /// A catalogd with no replicas: it leads, and is its only peer.
    pub fn alone(addr: String) -> Leadership {
        Leadership::with(View {
            leader: addr.clone(),
            is_self: true,
            peers: vec![addr],
        })
    }

    /// A replica that does not lead (yet).
    pub fn follower() -> Leadership {
        Leadership::with(View::default())
    }

    fn with(view: View) -> Leadership {
        Leadership {
            tx: Arc::new(watch::channel(view).0),
        }
    }

    pub fn view(&self) -> View {
        self.tx.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.tx.borrow().is_self
    }

    /// Replaces the view (only the election does this), waking subscribers when it changed.
    pub fn set(&self, view: View) {
        self.tx.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.tx.subscribe()
    }
}
