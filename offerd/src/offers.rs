//! The offers book: two-level scheduling as Mesos does it, for schedulers other than the
//! built-in one. An offer is one agent's unused resources handed to one framework; each offer id
//! is usable once (accept or decline), expires after [`OFFER_TTL_MS`], and a decline can refuse
//! that agent to that framework for a while. Offers live in memory only: after a restart a
//! framework simply asks again.
//!
//! Offers do not reserve anything: the built-in scheduler keeps placing apps, and an accept is
//! checked against what is free on the agent at that moment (a stale offer is refused with 409).

use std::collections::HashMap;
use std::sync::Mutex;

use cairn_cli::LockOrExit as _;
use cairn_marathon::{Attributes, PortRange, Resources};
use serde::Serialize;

use cairn_placement::Offer;

/// How long an unanswered offer stays valid.
pub const OFFER_TTL_MS: u64 = 30_000;
/// Refusal after a decline that names none (Mesos' default filter).
pub const DEFAULT_REFUSE_SECONDS: f64 = 5.0;

/// An offer as a framework sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct IssuedOffer {
    pub id: String,
    pub framework: String,
    pub node: String,
    pub hostname: String,
    pub address: String,
    pub resources: Resources,
    pub attributes: Attributes,
    #[serde(skip)]
    pub issued_ms: u64,
}

#[derive(Default)]
struct Book {
    outstanding: HashMap<String, IssuedOffer>,
    /// (framework, node) → refused until (Unix ms).
    refusals: HashMap<(String, String), u64>,
}

/// Most offers outstanding at once, over every framework. Any client names its own framework,
/// so without a bound, asking under ever new names would grow the book by one offer per agent
/// per name (for [`OFFER_TTL_MS`]). At the bound no new offer is made until some are used or
/// expire.
pub const MAX_OFFERS: usize = 10_000;
/// Most refusals kept; at the bound the one ending soonest is dropped (a refusal only spares a
/// framework offers it does not want).
pub const MAX_REFUSALS: usize = 10_000;

/// Outstanding offers and refusals, each bounded ([`MAX_OFFERS`], [`MAX_REFUSALS`]).
pub struct OfferBook {
    inner: Mutex<Book>,
    max_offers: usize,
    max_refusals: usize,
}

impl Default for OfferBook {
    fn default() -> Self {
        OfferBook::with_limits(MAX_OFFERS, MAX_REFUSALS)
    }
}

/// Why an offer cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OfferError {
    #[error("offer {0} is unknown, expired or already used")]
    Unknown(String),
    #[error("offer {0} was made to another framework")]
    WrongFramework(String),
}

/// The port ranges of an offer that are still free.
pub fn free_ranges(o: &Offer) -> Vec<PortRange> {
    let mut out = Vec::new();
    for r in &o.port_ranges {
        let mut begin: Option<u16> = None;
        for p in r.begin..=r.end {
            let free = !o.used_ports.contains(&p);
            match (free, begin) {
                (true, None) => begin = Some(p),
                (false, Some(b)) => {
                    out.push(PortRange {
                        begin: b,
                        end: p - 1,
                    });
                    begin = None;
                }
                _ => {}
            }
        }
        if let Some(b) = begin {
            out.push(PortRange {
                begin: b,
                end: r.end,
            });
        }
    }
    out
}

impl OfferBook {
    /// A book holding at most `max_offers` offers and `max_refusals` refusals.
    pub fn with_limits(max_offers: usize, max_refusals: usize) -> OfferBook {
        OfferBook {
            inner: Mutex::default(),
            max_offers,
            max_refusals,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.lock_or_exit("offer book")
    }

    /// The offers valid for `framework` now: those it holds already, plus one new offer per
    /// agent with something free that it holds none for and has not refused.
    pub fn issue(
        &self,
        framework: &str,
        agents: &[Offer],
        addresses: &HashMap<String, String>,
        now_ms: u64,
    ) -> Vec<IssuedOffer> {
        let mut book = self.lock();
        book.outstanding
            .retain(|_, o| now_ms < o.issued_ms + OFFER_TTL_MS);
        book.refusals.retain(|_, until| now_ms < *until);
        for a in agents {
            let key = (framework.to_string(), a.node.clone());
            let held = book
                .outstanding
                .values()
                .any(|o| o.framework == framework && o.node == a.node);
            if held || book.refusals.contains_key(&key) || a.free_cpus < 0.01 || a.free_mem < 1.0 {
                continue;
            }
            if book.outstanding.len() >= self.max_offers {
                tracing::warn!(
                    framework,
                    outstanding = book.outstanding.len(),
                    "offer book full: no new offers until some are used or expire"
                );
                break;
            }
            let offer = IssuedOffer {
                id: uuid::Uuid::new_v4().to_string(),
                framework: framework.to_string(),
                node: a.node.clone(),
                hostname: a.node.clone(),
                address: addresses.get(&a.node).cloned().unwrap_or_default(),
                resources: Resources {
                    cpus: (a.free_cpus * 1000.0).floor() / 1000.0,
                    mem: a.free_mem.floor(),
                    disk: a.free_disk.floor(),
                    ports: free_ranges(a),
                },
                attributes: a.attributes.clone(),
                issued_ms: now_ms,
            };
            book.outstanding.insert(offer.id.clone(), offer);
        }
        let mut mine: Vec<IssuedOffer> = book
            .outstanding
            .values()
            .filter(|o| o.framework == framework)
            .cloned()
            .collect();
        mine.sort_by(|a, b| a.node.cmp(&b.node));
        mine
    }

    /// Uses up an offer (accept or decline).
    pub fn take(&self, framework: &str, id: &str, now_ms: u64) -> Result<IssuedOffer, OfferError> {
        let mut book = self.lock();
        match book.outstanding.get(id) {
            None => Err(OfferError::Unknown(id.to_string())),
            Some(o) if now_ms >= o.issued_ms + OFFER_TTL_MS => {
                book.outstanding.remove(id);
                Err(OfferError::Unknown(id.to_string()))
            }
            Some(o) if o.framework != framework => Err(OfferError::WrongFramework(id.to_string())),
            Some(_) => book
                .outstanding
                .remove(id)
                .ok_or_else(|| OfferError::Unknown(id.to_string())),
        }
    }

    /// Puts an offer back (an accept that was refused for a reason the framework can fix).
    /// It was taken a moment ago, so the book has room for it again.
    pub fn restore(&self, offer: IssuedOffer) {
        self.lock().outstanding.insert(offer.id.clone(), offer);
    }

    /// Refuses `node` to `framework` until `until_ms`.
    pub fn refuse(&self, framework: &str, node: &str, until_ms: u64) {
        let mut book = self.lock();
        let key = (framework.to_string(), node.to_string());
        if !book.refusals.contains_key(&key) && book.refusals.len() >= self.max_refusals {
            let soonest = book
                .refusals
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                book.refusals.remove(&k);
            }
        }
        book.refusals.insert(key, until_ms);
    }

    /// Offers and refusals held now.
    pub fn held(&self) -> (usize, usize) {
        let book = self.lock();
        (book.outstanding.len(), book.refusals.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn agent(node: &str, cpus: f64) -> Offer {
        Offer {
            node: node.into(),
            attributes: Default::default(),
            total_cpus: 4.0,
            total_mem: 1024.0,
            free_cpus: cpus,
            free_mem: 512.0,
            free_disk: 100.0,
            port_ranges: vec![PortRange {
                begin: 31000,
                end: 31009,
            }],
            used_ports: BTreeSet::from([31002, 31003, 31009]),
            app_counts: HashMap::new(),
        }
    }

    #[test]
    fn free_ranges_skip_used_ports() {
        assert_eq!(
            free_ranges(&agent("a", 1.0)),
            vec![
                PortRange {
                    begin: 31000,
                    end: 31001
                },
                PortRange {
                    begin: 31004,
                    end: 31008
                }
            ]
        );
    }

    #[test]
    fn offers_are_single_use_per_framework_and_refusals_hold() {
        let book = OfferBook::default();
        let agents = vec![agent("a", 1.0), agent("b", 1.0), agent("full", 0.0)];
        let none = HashMap::new();
        let first = book.issue("cron", &agents, &none, 1000);
        assert_eq!(
            first.iter().map(|o| o.node.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // Asking again returns the same offers, not new ones.
        assert_eq!(book.issue("cron", &agents, &none, 1001), first);
        // Another framework gets its own.
        assert_eq!(book.issue("other", &agents, &none, 1001).len(), 2);
        assert_eq!(
            book.take("other", &first[0].id, 1002),
            Err(OfferError::WrongFramework(first[0].id.clone()))
        );
        let taken = book.take("cron", &first[0].id, 1002).unwrap();
        assert_eq!(
            book.take("cron", &taken.id, 1003),
            Err(OfferError::Unknown(taken.id.clone()))
        );
        book.refuse("cron", "b", 5000);
        book.take("cron", &first[1].id, 1004).unwrap();
        let again = book.issue("cron", &agents, &none, 1005);
        assert_eq!(
            again.iter().map(|o| o.node.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_ne!(again[0].id, first[0].id);
        // Refusal over, offers expire.
        let later = book.issue("cron", &agents, &none, 1005 + OFFER_TTL_MS);
        assert_eq!(later.len(), 2);
        assert!(later.iter().all(|o| o.issued_ms == 1005 + OFFER_TTL_MS));
    }

    #[test]
    fn the_book_is_bounded_however_many_frameworks_ask() {
        let book = OfferBook::with_limits(3, 2);
        let agents = vec![agent("a", 1.0), agent("b", 1.0)];
        let none = HashMap::new();
        assert_eq!(book.issue("f1", &agents, &none, 1000).len(), 2);
        assert_eq!(book.issue("f2", &agents, &none, 1000).len(), 1, "one left");
        assert!(book.issue("f3", &agents, &none, 1000).is_empty(), "full");
        assert_eq!(book.held().0, 3);
        // Room again once offers expire.
        assert_eq!(
            book.issue("f3", &agents, &none, 1000 + OFFER_TTL_MS).len(),
            2
        );

        let far = 100 * OFFER_TTL_MS;
        book.refuse("f1", "a", far + 9);
        book.refuse("f2", "a", far + 5);
        book.refuse("f3", "a", far + 7);
        assert_eq!(book.held().1, 2);
        // The refusal ending soonest (f2) made room; the others hold.
        let f1 = book.issue("f1", &agents, &none, 2000 + OFFER_TTL_MS);
        assert_eq!(f1.len(), 1);
        assert!(f1.iter().all(|o| o.node != "a"), "f1 still refuses a");
        let f2 = book.issue("f2", &agents, &none, 2000 + 2 * OFFER_TTL_MS);
        assert!(f2.iter().any(|o| o.node == "a"), "f2's refusal was dropped");
    }
}
