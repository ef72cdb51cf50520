//! `GET /v1/cairn/prometheus/targets`: Prometheus' HTTP service discovery
//! (<https://prometheus.io/docs/prometheus/latest/http_sd/>), so that a Prometheus pointed at
//! catalogd (`http_sd_configs`) finds everything by itself.
//!
//! A service instance opts in with ServiceMeta `prometheus_port` (the target is the instance's
//! address, ServiceAddress else its node's, and that port), and optionally `prometheus_path`
//! (default `/metrics`) and `prometheus_scheme` (`http` or `https`). An instance whose values do
//! not parse is left out and counted (`catalogd_prometheus_sd_invalid_instances`), not answered
//! with an error: one bad registration must not cost Prometheus every other target. cairn's
//! daemons register themselves that way as `cairn-<daemon>` with tag `cairn`; catalogd lists
//! itself (every live replica, with replicas on etcd) as `cairn-catalogd` without registering
//! anything.
//!
//! Each instance is one target group, labelled as Prometheus' own Consul discovery labels its
//! targets, with `cairn` in place of `consul` (`__meta_cairn_service`, `__meta_cairn_tags` as
//! `,a,b,`, `__meta_cairn_service_metadata_<key>` with the key sanitized to `[a-zA-Z0-9_]`...),
//! so relabeling rules written for `consul_sd_configs` carry over by renaming.
//!
//! The answer is the whole list each time (Prometheus polls it), as the caller's token sees the
//! catalog (service:read and node:read, like the catalog's reads), and is built like the whole
//! catalog: from one snapshot, on a blocking thread, shared by the readers of one state
//! ([`WholeCatalogCache::shared`](crate::whole_catalog::WholeCatalogCache::shared)).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use cairn_wire::{CheckStatus, HealthCheck, Node, NodeService, ServiceEntry, StringMap};
use serde::Serialize;

use super::agent::aggregated_status;
use super::respond::{filtered_by_acls, json_read_bytes, snapshot_past};
use super::{HttpError, HttpResult, Read, ReadOpts};
use crate::acl::Caller;
use crate::core::Core;
use crate::watch::Topic;
use crate::whole_catalog::{Kind, Seq};

/// The ServiceMeta key an instance opts in with: the port Prometheus scrapes.
pub const PORT_META: &str = "prometheus_port";
/// The path Prometheus scrapes (must start with `/`).
pub const PATH_META: &str = "prometheus_path";
/// `http` or `https`.
pub const SCHEME_META: &str = "prometheus_scheme";
/// The path scraped when an instance names none.
pub const DEFAULT_PATH: &str = "/metrics";
/// The service catalogd's own targets are listed as (the other daemons register
/// `cairn-<daemon>`).
pub const CATALOGD_SERVICE: &str = "cairn-catalogd";
/// The tag of every cairn daemon's target.
pub const CAIRN_TAG: &str = "cairn";
/// The prefix of every label this discovery sets for relabeling (Prometheus drops `__meta_*`
/// labels after relabeling).
const META: &str = "__meta_cairn_";
/// Invalid instances named in the debug log when their count changes.
const NAMED_INVALID: usize = 5;

/// Where Prometheus scrapes an instance that opted in.
#[derive(Debug, PartialEq, Eq)]
struct Scrape<'a> {
    port: u16,
    path: &'a str,
    scheme: Option<&'a str>,
}

/// Why an instance that opted in is left out.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Invalid {
    #[error("{PORT_META} {0:?} is not a port number (1-65535)")]
    Port(String),
    #[error(
        "{PATH_META} {0:?} does not start with / or holds a space, a control character, ? or #"
    )]
    Path(String),
    #[error("{SCHEME_META} {0:?} is neither http nor https")]
    Scheme(String),
    #[error("address {0:?} is empty or holds a space, a control character or /")]
    Address(String),
}

/// The scrape an instance's meta asks for; `None` when it does not opt in (no
/// `prometheus_port`, or an empty one). An empty path or scheme counts as not given.
fn scrape_of(meta: &StringMap) -> Option<Result<Scrape<'_>, Invalid>> {
    let port = meta.get(PORT_META).filter(|p| !p.is_empty())?;
    let given = |key| meta.get(key).map(String::as_str).filter(|v| !v.is_empty());
    Some(parse_scrape(port, given(PATH_META), given(SCHEME_META)))
}

fn parse_scrape<'a>(
    port: &str,
    path: Option<&'a str>,
    scheme: Option<&'a str>,
) -> Result<Scrape<'a>, Invalid> {
    // Digits only: `u16::from_str` would also take `+80`.
    let port = port
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| port.parse::<u16>().ok())
        .flatten()
        .filter(|p| *p != 0)
        .ok_or_else(|| Invalid::Port(port.to_string()))?;
    let path = path.unwrap_or(DEFAULT_PATH);
    // Prometheus would escape a `?` or `#` into the path; query parameters are `__param_*`.
    let unfit = |c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#';
    if !path.starts_with('/') || path.chars().any(unfit) {
        return Err(Invalid::Path(path.to_string()));
    }
    if let Some(s) = scheme
        && s != "http"
        && s != "https"
    {
        return Err(Invalid::Scheme(s.to_string()));
    }
    Ok(Scrape { port, path, scheme })
}

/// `host:port` as Go's `net.JoinHostPort` writes it (an IPv6 address in brackets).
fn host_port(host: &str, port: u16) -> Result<String, Invalid> {
    let unfit = |c: char| c.is_whitespace() || c.is_control() || c == '/';
    if host.is_empty() || host.chars().any(unfit) {
        return Err(Invalid::Address(host.to_string()));
    }
    Ok(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// A label name made of `[a-zA-Z0-9_]` only, as Prometheus' `strutil.SanitizeLabelName` makes
/// the Consul meta keys it turns into labels: anything else becomes `_`. A name Prometheus
/// refuses would make it refuse the whole answer.
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Tags as Prometheus' Consul discovery joins them: with the separator around the list too, so
/// a relabeling regex need not care where a tag stands (`,a,b,`; no tags: `,,`).
fn tags_label(tags: &[String]) -> String {
    format!(",{},", tags.join(","))
}

/// One target group of Prometheus' HTTP SD format: one target and its labels.
#[derive(Serialize, Debug, PartialEq)]
struct Group {
    targets: [String; 1],
    labels: BTreeMap<String, String>,
}

/// The group of an instance that opted in with `scrape`; `health` is the aggregate of its and
/// its node's checks. Meta keys that sanitize to the same label: the first in key order wins.
fn group_of(
    node: &Node,
    svc: &NodeService,
    health: CheckStatus,
    dc: &str,
    scrape: &Scrape,
) -> Result<Group, Invalid> {
    let host = if svc.address.is_empty() {
        &node.address
    } else {
        &svc.address
    };
    let target = host_port(host, scrape.port)?;
    let mut labels = BTreeMap::new();
    labels.insert("__metrics_path__".to_string(), scrape.path.to_string());
    if let Some(scheme) = scrape.scheme {
        labels.insert("__scheme__".to_string(), scheme.to_string());
    }
    let port = svc.port.to_string();
    let tags = tags_label(&svc.tags);
    for (name, value) in [
        ("service", svc.service.as_str()),
        ("service_id", &svc.id),
        ("service_address", &svc.address),
        ("service_port", &port),
        ("tags", &tags),
        ("node", &node.node),
        ("address", &node.address),
        ("health", health.as_str()),
        ("dc", dc),
    ] {
        labels.insert(format!("{META}{name}"), value.to_string());
    }
    for (prefix, map) in [
        ("metadata_", &node.meta),
        ("service_metadata_", &svc.meta),
        ("tagged_address_", &node.tagged_addresses),
    ] {
        for (key, value) in map {
            labels
                .entry(format!("{META}{prefix}{}", sanitize(key)))
                .or_insert_with(|| value.clone());
        }
    }
    Ok(Group {
        targets: [target],
        labels,
    })
}

/// One of catalogd's own targets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Own {
    host: String,
    port: u16,
    /// This catalogd (not another replica).
    me: bool,
}

/// What an answer depends on beside the state, the token and the read options.
#[derive(Debug)]
struct Params {
    /// `?passing`: only instances whose checks all pass.
    passing: bool,
    dc: String,
    /// catalogd's own node.
    node: String,
    /// Whether catalogd speaks HTTPS.
    https: bool,
    own: Vec<Own>,
}

/// catalogd's own targets: this catalogd at the address its node is registered with, or with
/// replicas on etcd, every live replica by the name it campaigns under (`--advertise-addr`,
/// HOST:PORT).
fn own_targets(core: &Core) -> Vec<Own> {
    let cfg = &core.config;
    let Some(etcd) = &cfg.etcd else {
        return vec![Own {
            host: cfg.advertise.to_string(),
            port: cfg.http_addr.port(),
            me: true,
        }];
    };
    let mut peers = core.leadership.view().peers;
    if !peers.contains(&etcd.name) {
        // Not (yet) a member of the election: it still answers.
        peers.push(etcd.name.clone());
    }
    peers
        .iter()
        .filter_map(|peer| {
            let (host, port) = peer.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some(Own {
                host: host.to_string(),
                port: port.parse().ok()?,
                me: *peer == etcd.name,
            })
        })
        .collect()
}

/// catalogd as an instance of `cairn-catalogd` that opted in, as the other daemons register.
fn own_instance(own: &Own, https: bool) -> NodeService {
    let scheme = if https { "https" } else { "http" };
    NodeService {
        id: CATALOGD_SERVICE.to_string(),
        service: CATALOGD_SERVICE.to_string(),
        tags: vec![CAIRN_TAG.to_string()],
        address: own.host.clone(),
        port: own.port,
        meta: [
            (PORT_META, own.port.to_string()),
            (PATH_META, DEFAULT_PATH.to_string()),
            (SCHEME_META, scheme.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        ..Default::default()
    }
}

/// What one answer held, beside its groups.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    targets: u64,
    invalid: u64,
    /// The first few invalid instances, `node/id: why`.
    named: Vec<String>,
    /// Whether the caller's token hid an instance that opted in.
    hidden: bool,
}

/// The walk over one snapshot that yields the groups as they are serialized (at 100,000
/// instances the answer is never held as values beside its bytes).
struct Walk<'a> {
    st: &'a crate::state::State,
    caller: &'a Caller,
    params: &'a Params,
    opts: &'a ReadOpts,
    tally: RefCell<Tally>,
    hidden: Cell<bool>,
}

impl<'a> Walk<'a> {
    fn new(
        st: &'a crate::state::State,
        caller: &'a Caller,
        params: &'a Params,
        opts: &'a ReadOpts,
    ) -> Self {
        Walk {
            st,
            caller,
            params,
            opts,
            tally: RefCell::new(Tally::default()),
            hidden: Cell::new(false),
        }
    }

    fn sees(&self, node: &str, service: &str) -> bool {
        let visible = self.caller.sees_instance(node, service);
        self.hidden.set(self.hidden.get() || !visible);
        visible
    }

    /// catalogd's own groups. The right to see them is `cairn-catalogd` on catalogd's node,
    /// whichever replica they are (another replica's node name is not known here, and its
    /// target carries none).
    fn own(&self) -> impl Iterator<Item = Group> + '_ {
        self.params.own.iter().filter_map(|own| {
            if !self.sees(&self.params.node, CATALOGD_SERVICE) {
                return None;
            }
            let svc = own_instance(own, self.params.https);
            let fallback = || Node {
                node: if own.me {
                    self.params.node.clone()
                } else {
                    String::new()
                },
                address: own.host.clone(),
                ..Default::default()
            };
            let node = match own.me {
                true => self.st.nodes.get(&self.params.node).cloned(),
                false => None,
            }
            .unwrap_or_else(fallback);
            // Another live replica is passing: it holds its place in the election.
            let checks: Vec<&HealthCheck> = match own.me {
                true => self
                    .st
                    .node_checks(&self.params.node)
                    .map(|(_, c)| c)
                    .filter(|c| c.service_id.is_empty())
                    .collect(),
                false => Vec::new(),
            };
            let scrape = scrape_of(&svc.meta)?;
            self.admit(&node, &svc, &checks, scrape)
        })
    }

    /// The groups of the instances in the catalog that opted in, in (node, id) order.
    fn instances(&self) -> impl Iterator<Item = Group> + '_ {
        self.st
            .services
            .iter()
            .filter_map(|((node, _), svc)| self.instance(node, svc))
    }

    fn instance(&self, node_name: &str, svc: &NodeService) -> Option<Group> {
        // Most instances stop here, before any lookup.
        let scrape = scrape_of(&svc.meta)?;
        if !self.sees(node_name, &svc.service) {
            return None;
        }
        let node = self.st.nodes.get(node_name)?;
        let checks: Vec<&HealthCheck> = self
            .st
            .node_checks(node_name)
            .map(|(_, c)| c)
            .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
            .collect();
        self.admit(node, svc, &checks, scrape)
    }

    /// The group of an instance the caller sees, unless the request leaves it out (`passing`,
    /// `node-meta`, `filter` over its health entry) or its scrape settings are invalid.
    fn admit(
        &self,
        node: &Node,
        svc: &NodeService,
        checks: &[&HealthCheck],
        scrape: Result<Scrape, Invalid>,
    ) -> Option<Group> {
        let health = aggregated_status(checks.iter().copied());
        if self.params.passing && health != CheckStatus::Passing {
            return None;
        }
        if !self.opts.node_matches(&node.meta) {
            return None;
        }
        if let Some(filter) = &self.opts.filter {
            let entry = ServiceEntry {
                node: node.clone(),
                service: svc.clone(),
                checks: checks.iter().map(|c| (*c).clone()).collect(),
            };
            if !filter.matches(&serde_json::to_value(&entry).unwrap_or_default()) {
                return None;
            }
        }
        let mut tally = self.tally.borrow_mut();
        match scrape.and_then(|s| group_of(node, svc, health, &self.params.dc, &s)) {
            Ok(group) => {
                tally.targets += 1;
                Some(group)
            }
            Err(why) => {
                tally.invalid += 1;
                if tally.named.len() < NAMED_INVALID {
                    tally.named.push(format!("{}/{}: {why}", node.node, svc.id));
                }
                None
            }
        }
    }
}

/// The targets of `st` as `caller` sees them, serialized, and what they held.
fn build(
    st: &crate::state::State,
    caller: &Caller,
    params: &Params,
    opts: &ReadOpts,
) -> (Vec<u8>, Tally) {
    let walk = Walk::new(st, caller, params, opts);
    let groups = Seq::new(walk.own().chain(walk.instances()));
    let bytes = serde_json::to_vec(&groups).unwrap_or_default();
    drop(groups);
    let mut tally = walk.tally.take();
    tally.hidden = walk.hidden.get();
    (bytes, tally)
}

/// `GET /v1/cairn/prometheus/targets`: every target as Prometheus' `http_sd_configs` reads it
/// (200, `application/json`, a JSON array of `{"targets": [...], "labels": {...}}`, `[]` when
/// there are none). Takes the catalog reads' options: `?passing`, `node-meta`, `filter` (over
/// each instance's health entry, catalogd's own too), and `index`/`wait` as a blocking read.
pub async fn targets(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let Read {
        opts,
        caller,
        query,
    } = read;
    let st = snapshot_past(&core, &opts, Topic::Catalog, |st| st.catalog_index()).await;
    let params = Params {
        passing: query.present("passing"),
        dc: core.config.datacenter.clone(),
        node: core.config.node.clone(),
        https: core.config.https,
        own: own_targets(&core),
    };
    let key = (
        st.index,
        caller.accessor.clone(),
        Some(format!("{params:?} {:?} {:?}", opts.filter, opts.node_meta)),
        Kind::PrometheusTargets,
    );
    let metrics = core.metrics.clone();
    let built = core
        .whole_catalog
        .shared(key, move || {
            let (bytes, tally) = build(&st, &caller, &params, &opts);
            metrics.sd_targets.store(tally.targets, Relaxed);
            let before = metrics.sd_invalid.swap(tally.invalid, Relaxed);
            // Once per change of the count, not per request (Prometheus polls every few seconds).
            if tally.invalid != before {
                tracing::debug!(
                    invalid = tally.invalid,
                    first = ?tally.named,
                    "instances left out of Prometheus' targets for invalid prometheus_* meta"
                );
            }
            (st.catalog_index(), bytes, tally.hidden)
        })
        .await
        .map_err(HttpError::internal)?;
    Ok(filtered_by_acls(
        built.hidden,
        json_read_bytes(built.index, built.bytes.clone()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> StringMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Opting in and its settings: the port is required and strict, the path and scheme
    /// optional and checked; empty values count as not given.
    #[test]
    fn meta_parsing() {
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Option<Result<Scrape<'a>, Invalid>>,
        );
        let ok = |port, path, scheme| Some(Ok(Scrape { port, path, scheme }));
        let cases: &[Case] = &[
            (&[], None),
            (&[("version", "1")], None),
            (&[(PORT_META, "")], None),
            (&[(PATH_META, "/m")], None),
            (&[(PORT_META, "9100")], ok(9100, "/metrics", None)),
            (&[(PORT_META, "65535")], ok(65535, "/metrics", None)),
            (
                &[(PORT_META, "80"), (PATH_META, "/v1/agent/metrics")],
                ok(80, "/v1/agent/metrics", None),
            ),
            (
                &[(PORT_META, "443"), (SCHEME_META, "https")],
                ok(443, "/metrics", Some("https")),
            ),
            (
                &[(PORT_META, "80"), (PATH_META, ""), (SCHEME_META, "")],
                ok(80, "/metrics", None),
            ),
            (&[(PORT_META, "0")], Some(Err(Invalid::Port("0".into())))),
            (
                &[(PORT_META, "65536")],
                Some(Err(Invalid::Port("65536".into()))),
            ),
            (
                &[(PORT_META, "+80")],
                Some(Err(Invalid::Port("+80".into()))),
            ),
            (
                &[(PORT_META, " 80")],
                Some(Err(Invalid::Port(" 80".into()))),
            ),
            (
                &[(PORT_META, "http")],
                Some(Err(Invalid::Port("http".into()))),
            ),
            (
                &[(PORT_META, "99999999999999999999")],
                Some(Err(Invalid::Port("99999999999999999999".into()))),
            ),
            (
                &[(PORT_META, "80"), (PATH_META, "metrics")],
                Some(Err(Invalid::Path("metrics".into()))),
            ),
            (
                &[(PORT_META, "80"), (PATH_META, "/metrics?x=1")],
                Some(Err(Invalid::Path("/metrics?x=1".into()))),
            ),
            (
                &[(PORT_META, "80"), (PATH_META, "/a b")],
                Some(Err(Invalid::Path("/a b".into()))),
            ),
            (
                &[(PORT_META, "80"), (PATH_META, "/a\nb")],
                Some(Err(Invalid::Path("/a\nb".into()))),
            ),
            (
                &[(PORT_META, "80"), (SCHEME_META, "HTTP")],
                Some(Err(Invalid::Scheme("HTTP".into()))),
            ),
            (
                &[(PORT_META, "80"), (SCHEME_META, "ftp")],
                Some(Err(Invalid::Scheme("ftp".into()))),
            ),
        ];
        for (meta, want) in cases {
            assert_eq!(&scrape_of(&map(meta)), want, "{meta:?}");
        }
    }

    fn node(name: &str, address: &str) -> Node {
        Node {
            node: name.into(),
            address: address.into(),
            ..Default::default()
        }
    }

    fn service(address: &str, meta: &[(&str, &str)]) -> NodeService {
        NodeService {
            id: "web-1".into(),
            service: "web".into(),
            address: address.into(),
            port: 8080,
            meta: map(meta),
            ..Default::default()
        }
    }

    fn group(node: &Node, svc: &NodeService) -> Result<Group, Invalid> {
        let scrape = scrape_of(&svc.meta).expect("opted in")?;
        group_of(node, svc, CheckStatus::Passing, "dc1", &scrape)
    }

    /// The target is the instance's address, else its node's, with the meta's port; IPv6 in
    /// brackets; no usable address leaves the instance out.
    #[test]
    fn address_fallback() {
        let port = [(PORT_META, "9100")];
        let cases = [
            ("10.0.0.1", "", Ok("10.0.0.1:9100")),
            ("10.0.0.1", "10.0.0.2", Ok("10.0.0.2:9100")),
            ("10.0.0.1", "web.internal", Ok("web.internal:9100")),
            ("::1", "", Ok("[::1]:9100")),
            ("10.0.0.1", "fd00::2", Ok("[fd00::2]:9100")),
            ("10.0.0.1", "[fd00::2]", Ok("[fd00::2]:9100")),
            ("", "", Err(Invalid::Address(String::new()))),
            ("10.0.0.1", "a/b", Err(Invalid::Address("a/b".into()))),
            ("a b", "", Err(Invalid::Address("a b".into()))),
        ];
        for (node_addr, svc_addr, want) in cases {
            let got = group(&node("n1", node_addr), &service(svc_addr, &port));
            let got = got.map(|g| g.targets[0].clone());
            assert_eq!(
                got,
                want.map(str::to_string),
                "node {node_addr:?} service {svc_addr:?}"
            );
        }
    }

    /// The labels Prometheus' Consul discovery sets, with `cairn` for `consul`: tags joined
    /// with the separator around them, meta keys sanitized, scrape settings as Prometheus'
    /// own labels.
    #[test]
    fn labels_of_an_instance() {
        let mut n = node("n1", "10.0.0.1");
        n.meta = map(&[("rack", "r1"), ("zone.name", "eu")]);
        n.tagged_addresses = map(&[("lan", "10.0.0.1"), ("wan", "1.2.3.4")]);
        let mut svc = service(
            "",
            &[
                (PORT_META, "9100"),
                (PATH_META, "/stats"),
                (SCHEME_META, "https"),
                ("version", "2"),
                ("team-name", "core"),
                ("ünïcode key", "v"),
                ("9lives", "cat"),
            ],
        );
        svc.tags = vec!["a".into(), "b".into()];
        let g = group_of(
            &n,
            &svc,
            CheckStatus::Warning,
            "dc1",
            &scrape_of(&svc.meta).expect("opted in").expect("valid"),
        )
        .expect("a group");
        let want: BTreeMap<String, String> = [
            ("__metrics_path__", "/stats"),
            ("__scheme__", "https"),
            ("__meta_cairn_service", "web"),
            ("__meta_cairn_service_id", "web-1"),
            ("__meta_cairn_service_address", ""),
            ("__meta_cairn_service_port", "8080"),
            ("__meta_cairn_tags", ",a,b,"),
            ("__meta_cairn_node", "n1"),
            ("__meta_cairn_address", "10.0.0.1"),
            ("__meta_cairn_health", "warning"),
            ("__meta_cairn_dc", "dc1"),
            ("__meta_cairn_metadata_rack", "r1"),
            ("__meta_cairn_metadata_zone_name", "eu"),
            ("__meta_cairn_tagged_address_lan", "10.0.0.1"),
            ("__meta_cairn_tagged_address_wan", "1.2.3.4"),
            ("__meta_cairn_service_metadata_prometheus_port", "9100"),
            ("__meta_cairn_service_metadata_prometheus_path", "/stats"),
            ("__meta_cairn_service_metadata_prometheus_scheme", "https"),
            ("__meta_cairn_service_metadata_version", "2"),
            ("__meta_cairn_service_metadata_team_name", "core"),
            ("__meta_cairn_service_metadata__n_code_key", "v"),
            ("__meta_cairn_service_metadata_9lives", "cat"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(g.labels, want);
        assert_eq!(g.targets, ["10.0.0.1:9100".to_string()]);
        // Every label name is one Prometheus accepts.
        for name in g.labels.keys() {
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit()),
                "{name}"
            );
        }
    }

    /// Tags and keys as Prometheus writes them; two keys that sanitize alike: the first wins.
    #[test]
    fn tags_and_sanitized_keys() {
        for (tags, want) in [
            (&[][..], ",,"),
            (&["a"][..], ",a,"),
            (&["a", "b c", "d"][..], ",a,b c,d,"),
        ] {
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            assert_eq!(tags_label(&tags), want);
        }
        for (key, want) in [
            ("plain_key", "plain_key"),
            ("dotted.key", "dotted_key"),
            ("a-b/c:d", "a_b_c_d"),
            ("ключ", "____"),
            ("", ""),
        ] {
            assert_eq!(sanitize(key), want, "{key:?}");
        }
        let svc = service("", &[(PORT_META, "1"), ("a-b", "first"), ("a.b", "second")]);
        let g = group(&node("n", "10.0.0.1"), &svc).expect("a group");
        assert_eq!(g.labels["__meta_cairn_service_metadata_a_b"], "first");
    }

    async fn register(c: &crate::core::Catalog, v: serde_json::Value) {
        let reg = serde_json::from_value(v).expect("a registration");
        c.core
            .writer
            .submit(crate::writer::Command::Register(Box::new(reg)))
            .await
            .expect("registered");
    }

    /// Over a real catalog: catalogd's own target first, then the instances that opted in in
    /// (node, id) order; those that did not are absent, an invalid one is counted, not listed;
    /// `?passing`, `node-meta` and `filter` leave out what they should (catalogd too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn targets_of_a_catalog() {
        let c = crate::core::Catalog::start(crate::test_support::config("server"))
            .await
            .expect("catalog");
        // (node, instance, prometheus_port, its check's status); node nK is on rack rK.
        let instances = [
            ("n1", "web-1", Some("9100"), "passing"),
            ("n1", "plain-1", None, "passing"),
            ("n2", "web-2", Some("9100"), "critical"),
            ("n2", "bad-1", Some("nope"), "passing"),
        ];
        for (node, id, port, status) in instances {
            let name = id.split('-').next().expect("a name");
            let meta: StringMap = port
                .map(|p| (PORT_META.to_string(), p.to_string()))
                .into_iter()
                .collect();
            register(
                &c,
                serde_json::json!({
                    "Node": node, "Address": format!("10.0.0.{}", &node[1..]),
                    "NodeMeta": {"rack": format!("r{}", &node[1..])},
                    "Service": {"ID": id, "Service": name, "Port": 80, "Meta": meta},
                    "Check": {"CheckID": format!("{id}-alive"), "ServiceID": id,
                              "Status": status},
                }),
            )
            .await;
        }
        let st = c.core.current.load_full();
        let caller = c.core.acl.resolve(&st, None).expect("a caller");
        let answer = |passing: bool, query: &str| {
            let params = Params {
                passing,
                dc: "dc1".into(),
                node: "server".into(),
                https: false,
                own: vec![Own {
                    host: "127.0.0.1".into(),
                    port: 8500,
                    me: true,
                }],
            };
            let q = cairn_http::QueryParams::parse(Some(query));
            let opts = ReadOpts::parse(&q).expect("read options");
            let (bytes, tally) = build(&st, &caller, &params, &opts);
            let groups: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            let listed: Vec<(String, String)> = groups
                .as_array()
                .expect("an array")
                .iter()
                .map(|g| {
                    (
                        g["labels"]["__meta_cairn_service_id"]
                            .as_str()
                            .expect("an id")
                            .to_string(),
                        g["targets"][0].as_str().expect("a target").to_string(),
                    )
                })
                .collect();
            (listed, tally)
        };
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };

        let (all, tally) = answer(false, "");
        assert_eq!(
            all,
            owned(&[
                (CATALOGD_SERVICE, "127.0.0.1:8500"),
                ("web-1", "10.0.0.1:9100"),
                ("web-2", "10.0.0.2:9100"),
            ])
        );
        assert_eq!((tally.targets, tally.invalid), (3, 1));
        assert_eq!(tally.named.len(), 1);
        assert!(
            tally.named[0].starts_with("n2/bad-1: prometheus_port"),
            "{tally:?}"
        );
        assert!(!tally.hidden);

        let (passing, _) = answer(true, "passing");
        assert_eq!(
            passing,
            owned(&[
                (CATALOGD_SERVICE, "127.0.0.1:8500"),
                ("web-1", "10.0.0.1:9100")
            ])
        );
        let (rack, _) = answer(false, "node-meta=rack:r2");
        assert_eq!(rack, owned(&[("web-2", "10.0.0.2:9100")]));
        let (filtered, _) = answer(false, "filter=Service.Service%20%3D%3D%20web");
        assert_eq!(
            filtered,
            owned(&[("web-1", "10.0.0.1:9100"), ("web-2", "10.0.0.2:9100")])
        );
        c.stop().await;
    }

    /// The answer's JSON is Prometheus' format exactly.
    #[test]
    fn groups_serialize_in_the_http_sd_format() {
        let g = Group {
            targets: ["10.0.0.1:9100".into()],
            labels: [("__meta_cairn_service".to_string(), "web".to_string())].into(),
        };
        let empty: Vec<Group> = Vec::new();
        assert_eq!(serde_json::to_string(&empty).expect("JSON"), "[]");
        assert_eq!(
            serde_json::to_string(&[g]).expect("JSON"),
            r#"[{"targets":["10.0.0.1:9100"],"labels":{"__meta_cairn_service":"web"}}]"#
        );
    }
}
