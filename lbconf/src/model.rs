//! The routing model: which services HAProxy serves and how, derived from the whole catalog.
//! Everything that comes from `ServiceMeta` is validated here, so the renderer only ever sees
//! safe identifiers, host names, paths and keywords: a hostile value is dropped (and logged),
//! never copied into the config.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use cairn_wire::{CatalogMirror, CheckStatus, ServiceEntry, Touched, WholeCatalog};

/// Balance algorithms accepted from `lb_balance`.
const BALANCE: &[&str] = &[
    "roundrobin",
    "static-rr",
    "leastconn",
    "first",
    "source",
    "random",
    "uri",
];

/// One routable instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Server {
    pub addr: IpAddr,
    pub port: u16,
}

/// How a service is exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// Shared HTTP frontend, routed by Host (and path prefix).
    Http {
        hosts: Vec<String>,
        path: Option<String>,
    },
    /// Its own TCP frontend.
    Tcp { port: u16 },
}

/// A service HAProxy routes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The catalog name, for humans (comments are written sanitised too).
    pub service: String,
    /// HAProxy identifier of its backend (unique, safe).
    pub backend: String,
    pub exposure: Exposure,
    pub balance: String,
    /// Passing instances, sorted.
    pub servers: Vec<Server>,
    /// The service's meta with only values safe to place in a config line (no control
    /// characters or quotes), for operators' templates.
    pub meta: BTreeMap<String, String>,
}

/// Something in the catalog that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub service: String,
    pub reason: String,
}

/// Letters, digits, `-`, `_` and `.` only: safe anywhere an HAProxy identifier goes.
pub fn identifier(raw: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".into() } else { s }
}

/// A host name as `lb_vhost` may give it: labels of letters, digits and `-`, an optional
/// leading `*.` wildcard; lowercase.
pub fn host(raw: &str) -> Option<String> {
    let h = raw.trim().to_ascii_lowercase();
    let body = h.strip_prefix("*.").unwrap_or(&h);
    let ok = !body.is_empty()
        && h.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    ok.then_some(h)
}

/// A path prefix: starts with `/`, only URL-safe characters, no spaces or quotes.
pub fn path(raw: &str) -> Option<String> {
    let p = raw.trim();
    let ok = p.starts_with('/')
        && p.len() <= 1024
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:@".contains(c) && c != '\'');
    ok.then(|| p.to_string())
}

/// A port number as meta gives it: decimal digits only (no sign, no spaces inside), 1-65535.
pub fn port(raw: &str) -> Option<u16> {
    let p = raw.trim();
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|p| *p > 0)
}

/// The frontend port of a TCP service: `lb_port` when given (an invalid one is an error, not a
/// reason to pick another port), else the task's `service_port` (the app's Marathon service
/// port, which taskrun registers; marathon-lb binds that port the same way).
fn tcp_port(meta: &BTreeMap<String, String>) -> Result<u16, String> {
    match (meta.get("lb_port"), meta.get("service_port")) {
        (Some(raw), _) => {
            port(raw).ok_or_else(|| format!("lb_port {raw:?} is not a port (1-65535)"))
        }
        (None, Some(raw)) => {
            port(raw).ok_or_else(|| format!("service_port {raw:?} is not a port (1-65535)"))
        }
        (None, None) => Err("lb_mode tcp needs lb_port or a service_port (1-65535)".into()),
    }
}

/// Builds the routes from the catalog; services without `lb_*` meta are not routed. Where two
/// services claim one host (and path) or one TCP port, the one registered first keeps it and
/// the other is reported: a newcomer never takes a route away from a running service, and the
/// outcome never depends on how the names sort. A TCP port equal to `http_port` (the shared
/// HTTP frontend's) is refused.
pub fn routes(catalog: &WholeCatalog, http_port: u16) -> (Vec<Route>, Vec<Rejected>) {
    // Group instances by service name; meta is read from the instances (the first valid wins).
    let mut by_name: BTreeMap<&str, Vec<&ServiceEntry>> = BTreeMap::new();
    for e in &catalog.services {
        by_name
            .entry(e.service.service.as_str())
            .or_default()
            .push(e);
    }
    let wanted: Vec<(String, Wanted)> = by_name
        .into_iter()
        .map(|(name, entries)| (name.to_string(), wanted(name, &entries)))
        .collect();
    assemble(wanted.iter().map(|(n, w)| (n.as_str(), w)), http_port)
}

/// The routes of a followed catalog, kept service by service: a change recomputes only the
/// services it touched. Backend names and claims depend on every service, but only on their
/// names, hosts, ports and age: they are settled again (over the services, not their
/// instances) only when one of those changed. A change of instances alone — the common one, a
/// check flipping — patches the touched routes' servers in place.
pub struct RouteTable {
    http_port: u16,
    wanted: BTreeMap<String, Wanted>,
    routes: Vec<Route>,
    rejected: Vec<Rejected>,
    /// Each routed service's position in `routes`.
    position: HashMap<String, usize>,
}

/// What an update changed in a [`RouteTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// Only these routes' servers (positions in [`RouteTable::routes`]); nothing else moved.
    Servers(Vec<usize>),
    /// Routes or rejections may differ in anything: compare them whole.
    Whole,
}

impl RouteTable {
    /// An empty table for a frontend on `http_port` (a TCP route may not claim it).
    pub fn new(http_port: u16) -> RouteTable {
        RouteTable {
            http_port,
            wanted: BTreeMap::new(),
            routes: Vec::new(),
            rejected: Vec::new(),
            position: HashMap::new(),
        }
    }

    /// Brings the table to `catalog`, which `touched` says what changed in.
    pub fn update(&mut self, catalog: &CatalogMirror, touched: &Touched) -> RouteChange {
        if touched.all {
            self.wanted.clear();
            let all: std::collections::BTreeSet<&str> = catalog
                .instances()
                .map(|e| e.service.service.as_str())
                .collect();
            for name in all {
                let entries: Vec<&ServiceEntry> = catalog.instances_of(name).collect();
                self.wanted.insert(name.to_string(), wanted(name, &entries));
            }
            self.assemble();
            return RouteChange::Whole;
        }
        let mut structural = false;
        let mut servers_of: Vec<String> = Vec::new();
        for name in &touched.services {
            let entries: Vec<&ServiceEntry> = catalog.instances_of(name).collect();
            if entries.is_empty() {
                structural |= self.wanted.remove(name).is_some();
                continue;
            }
            let w = wanted(name, &entries);
            match self.wanted.get(name) {
                Some(old) if old.same_but_servers(&w) => {
                    if old.servers() != w.servers() {
                        servers_of.push(name.clone());
                    }
                }
                _ => structural = true,
            }
            self.wanted.insert(name.clone(), w);
        }
        if structural {
            self.assemble();
            return RouteChange::Whole;
        }
        let mut changed = Vec::new();
        for name in servers_of {
            // A service whose claims were all refused has no route to patch.
            let (Some(&at), Some(w)) = (self.position.get(&name), self.wanted.get(&name)) else {
                continue;
            };
            self.routes[at].servers = w.servers().to_vec();
            changed.push(at);
        }
        RouteChange::Servers(changed)
    }

    /// The routes now, as [`routes`] gives them for the same catalog.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// What could not be routed as asked, as [`routes`] gives it for the same catalog.
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    fn assemble(&mut self) {
        let (routes, rejected) = assemble(
            self.wanted.iter().map(|(n, w)| (n.as_str(), w)),
            self.http_port,
        );
        self.position = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.service.clone(), i))
            .collect();
        self.routes = routes;
        self.rejected = rejected;
    }
}

/// Names the backends (unique identifiers, in service name order) and settles the claims.
fn assemble<'a>(
    services: impl Iterator<Item = (&'a str, &'a Wanted)>,
    http_port: u16,
) -> (Vec<Route>, Vec<Rejected>) {
    let mut candidates = Vec::new();
    let mut rejected = Vec::new();
    let mut used_ids: BTreeMap<String, usize> = BTreeMap::new();
    for (name, w) in services {
        rejected.extend(w.rejected.iter().cloned());
        let Some(c) = &w.candidate else { continue };
        let base = format!("be_{}", identifier(name));
        let n = used_ids.entry(base.clone()).or_default();
        *n += 1;
        let backend = if *n == 1 { base } else { format!("{base}_{n}") };
        let mut route = c.route.clone();
        route.backend = backend;
        candidates.push(Candidate {
            route,
            since: c.since,
        });
    }
    let routes = settle_claims(candidates, http_port, &mut rejected);
    (routes, rejected)
}

/// A route as its service asks for it, and since when it has asked (the lowest CreateIndex of
/// its instances).
#[derive(Clone)]
struct Candidate {
    route: Route,
    since: u64,
}

/// One service's wish: its route (backend not named yet), or none, and what of its meta could
/// not be used.
#[derive(Clone)]
struct Wanted {
    candidate: Option<Candidate>,
    rejected: Vec<Rejected>,
}

impl Wanted {
    fn servers(&self) -> &[Server] {
        self.candidate
            .as_ref()
            .map_or(&[], |c| c.route.servers.as_slice())
    }

    /// Whether `other` asks for the same route but perhaps other servers: then backend names
    /// and claims (which never look at servers) settle as they did.
    fn same_but_servers(&self, other: &Wanted) -> bool {
        let same_route = match (&self.candidate, &other.candidate) {
            (Some(a), Some(b)) => {
                let (x, y) = (&a.route, &b.route);
                a.since == b.since
                    && x.service == y.service
                    && x.exposure == y.exposure
                    && x.balance == y.balance
                    && x.meta == y.meta
            }
            (None, None) => true,
            _ => false,
        };
        self.rejected == other.rejected && same_route
    }
}

/// Gives every host (and path) and every TCP port to its first claimer; drops what is left
/// without a host or port.
fn settle_claims(
    mut candidates: Vec<Candidate>,
    http_port: u16,
    rejected: &mut Vec<Rejected>,
) -> Vec<Route> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        (candidates[a].since, &candidates[a].route.service)
            .cmp(&(candidates[b].since, &candidates[b].route.service))
    });
    let mut hosts: BTreeMap<(String, Option<String>), String> = BTreeMap::new();
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    let mut keep = vec![true; candidates.len()];
    for i in order {
        let route = &mut candidates[i].route;
        let service = route.service.clone();
        let reject = |reason: String| Rejected {
            service: service.clone(),
            reason,
        };
        match &mut route.exposure {
            Exposure::Tcp { port } => {
                if *port == http_port {
                    rejected.push(reject(format!(
                        "TCP port {port} is the HTTP frontend's port; service not routed"
                    )));
                    keep[i] = false;
                } else if let Some(first) = ports.get(port) {
                    rejected.push(reject(format!(
                        "TCP port {port} is already routed to service {first:?}, registered \
                         first; service not routed"
                    )));
                    keep[i] = false;
                } else {
                    ports.insert(*port, service.clone());
                }
            }
            Exposure::Http {
                hosts: wanted,
                path,
            } => {
                wanted.retain(|h| {
                    let key = (h.clone(), path.clone());
                    match hosts.get(&key) {
                        Some(first) => {
                            rejected.push(reject(format!(
                                "lb_vhost {h}{} is already routed to service {first:?}, \
                                 registered first; ignored",
                                path.as_deref().unwrap_or("")
                            )));
                            false
                        }
                        None => {
                            hosts.insert(key, service.clone());
                            true
                        }
                    }
                });
                keep[i] = !wanted.is_empty();
            }
        }
    }
    candidates
        .into_iter()
        .zip(keep)
        .filter_map(|(c, keep)| keep.then_some(c.route))
        .collect()
}

/// One service's route as its meta asks for it, before its backend is named and claims are
/// settled.
fn wanted(name: &str, entries: &[&ServiceEntry]) -> Wanted {
    let mut rejected = Vec::new();
    let none = |rejected| Wanted {
        candidate: None,
        rejected,
    };
    let meta = &entries[0].service.meta;
    let reject = |reason: String| Rejected {
        service: name.to_string(),
        reason,
    };
    let mode = meta.get("lb_mode").map(|m| m.trim().to_ascii_lowercase());
    let exposure = match mode.as_deref() {
        Some("tcp") => match tcp_port(meta) {
            Ok(port) => Exposure::Tcp { port },
            Err(why) => {
                rejected.push(reject(why));
                return none(rejected);
            }
        },
        Some("http") | None => {
            let Some(vhosts) = meta.get("lb_vhost") else {
                if mode.is_some() {
                    rejected.push(reject("lb_mode http needs lb_vhost".into()));
                }
                return none(rejected);
            };
            let mut hosts = Vec::new();
            for raw in vhosts.split(',').filter(|h| !h.trim().is_empty()) {
                match host(raw) {
                    Some(h) => hosts.push(h),
                    None => rejected.push(reject(format!(
                        "lb_vhost {raw:?} is not a host name; ignored"
                    ))),
                }
            }
            if hosts.is_empty() {
                return none(rejected);
            }
            let p = match meta.get("lb_path") {
                None => None,
                Some(raw) => match path(raw) {
                    Some(p) => Some(p),
                    None => {
                        rejected.push(reject(format!(
                            "lb_path {raw:?} is not a path prefix; service not routed"
                        )));
                        return none(rejected);
                    }
                },
            };
            Exposure::Http { hosts, path: p }
        }
        Some(other) => {
            rejected.push(reject(format!("lb_mode {other:?} is neither http nor tcp")));
            return none(rejected);
        }
    };
    let balance = match meta
        .get("lb_balance")
        .map(|b| b.trim().to_ascii_lowercase())
    {
        None => "roundrobin".to_string(),
        Some(b) if BALANCE.contains(&b.as_str()) => b,
        Some(b) => {
            rejected.push(reject(format!(
                "lb_balance {b:?} is not one of {}; using roundrobin",
                BALANCE.join(", ")
            )));
            "roundrobin".to_string()
        }
    };
    let mut servers: Vec<Server> = entries
        .iter()
        .filter(|e| e.status() == CheckStatus::Passing)
        .filter_map(|e| {
            Some(Server {
                addr: e.address().parse().ok()?,
                port: e.service.port,
            })
        })
        .filter(|s| s.port > 0)
        .collect();
    servers.sort();
    servers.dedup();
    let since = entries
        .iter()
        .map(|e| e.service.create_index)
        .min()
        .unwrap_or(0);
    // Only values safe on a config line reach operators' templates.
    let safe = |x: &str| {
        !x.chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\'))
    };
    let meta = meta
        .iter()
        .filter(|(k, v)| safe(k) && safe(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Wanted {
        candidate: Some(Candidate {
            route: Route {
                service: name.to_string(),
                backend: String::new(),
                exposure,
                balance,
                servers,
                meta,
            },
            since,
        }),
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused() {
        assert_eq!(host("Web.Example.com"), Some("web.example.com".into()));
        assert_eq!(host("*.example.com"), Some("*.example.com".into()));
        assert_eq!(host("evil.com\n    server x 1.2.3.4:80"), None);
        assert_eq!(host("a b"), None);
        assert_eq!(host("a\"b"), None);
        assert_eq!(path("/api/v1"), Some("/api/v1".into()));
        assert_eq!(path("/api v1"), None);
        assert_eq!(path("api"), None);
        assert_eq!(path("/a'b"), None);
        assert_eq!(path("/a\nb"), None);
        assert_eq!(identifier("shop/web prod\n"), "shop_web_prod_");
    }

    #[test]
    fn tcp_frontend_port_from_lb_port_or_service_port() {
        let meta = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<u16, &'a str>);
        let cases: &[Case] = &[
            (&[("service_port", "10001")], Ok(10001)),
            (&[("service_port", " 10001 ")], Ok(10001)),
            (&[("lb_port", "9000"), ("service_port", "10001")], Ok(9000)),
            (
                &[("lb_port", "x"), ("service_port", "10001")],
                Err("lb_port \"x\""),
            ),
            (&[("service_port", "0")], Err("service_port \"0\"")),
            (&[("service_port", "70000")], Err("service_port")),
            (&[("service_port", "+80")], Err("service_port")),
            (
                &[("service_port", "10001\n    bind :22")],
                Err("service_port"),
            ),
            (&[], Err("needs lb_port or a service_port")),
        ];
        for (pairs, want) in cases {
            let got = tcp_port(&meta(pairs));
            match (want, &got) {
                (Ok(p), Ok(g)) => assert_eq!(p, g, "{pairs:?}"),
                (Err(frag), Err(e)) => assert!(e.contains(frag), "{pairs:?}: {e}"),
                _ => panic!("{pairs:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    /// One instance: service name, meta pairs, CreateIndex.
    type Instance<'a> = (&'a str, &'a [(&'a str, &'a str)], u64);

    /// A catalog of one instance per service.
    fn catalog(services: &[Instance]) -> WholeCatalog {
        let services = services
            .iter()
            .map(|(name, meta, create_index)| cairn_wire::ServiceEntry {
                node: cairn_wire::Node {
                    node: format!("n-{name}"),
                    address: "127.0.0.1".into(),
                    ..Default::default()
                },
                service: cairn_wire::NodeService {
                    id: name.to_string(),
                    service: name.to_string(),
                    port: 8080,
                    meta: meta
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    create_index: *create_index,
                    ..Default::default()
                },
                checks: Vec::new(),
            })
            .collect();
        WholeCatalog {
            nodes: Vec::new(),
            services,
        }
    }

    /// The first service to register keeps a host or port another one claims later, whatever
    /// the names; the HTTP frontend's port is never a TCP frontend's.
    #[test]
    fn claims_go_to_the_first_registered() {
        let (routes, rejected) = routes(
            &catalog(&[
                ("zeta", &[("lb_vhost", "shop.test,zeta.test")], 5),
                ("alpha", &[("lb_vhost", "shop.test")], 9),
                (
                    "beta",
                    &[("lb_vhost", "shop.test"), ("lb_path", "/api")],
                    12,
                ),
                ("db", &[("lb_mode", "tcp"), ("lb_port", "5432")], 7),
                ("db2", &[("lb_mode", "tcp"), ("lb_port", "5432")], 3),
                ("web80", &[("lb_mode", "tcp"), ("lb_port", "80")], 1),
            ]),
            80,
        );
        let summary: Vec<(String, String)> = routes
            .iter()
            .map(|r| (r.service.clone(), format!("{:?}", r.exposure)))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "beta".to_string(),
                    r#"Http { hosts: ["shop.test"], path: Some("/api") }"#.to_string()
                ),
                ("db2".into(), "Tcp { port: 5432 }".into()),
                (
                    "zeta".into(),
                    r#"Http { hosts: ["shop.test", "zeta.test"], path: None }"#.into()
                ),
            ]
        );
        let reasons: Vec<(String, String)> = rejected
            .into_iter()
            .map(|r| (r.service, r.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "web80".to_string(),
                    "TCP port 80 is the HTTP frontend's port; service not routed".to_string()
                ),
                (
                    "db".into(),
                    "TCP port 5432 is already routed to service \"db2\", registered first; \
                     service not routed"
                        .into()
                ),
                (
                    "alpha".into(),
                    "lb_vhost shop.test is already routed to service \"zeta\", registered first; \
                     ignored"
                        .into()
                ),
            ]
        );
    }

    /// A second instance of web on its own node (web's meta), with one check of `status`.
    fn web_instance(node: &str, addr: &str, status: CheckStatus) -> ServiceEntry {
        let mut e = catalog(&[("web", &[("lb_vhost", "shop.test")], 11)])
            .services
            .remove(0);
        e.node.node = node.into();
        e.node.address = addr.into();
        e.service.id = format!("web-{node}");
        e.checks = vec![cairn_wire::HealthCheck {
            node: node.into(),
            check_id: "alive".into(),
            status,
            service_id: e.service.id.clone(),
            service_name: "web".into(),
            ..Default::default()
        }];
        e
    }

    /// A table kept by deltas gives the routes computed from the whole catalog, step by step:
    /// instances coming, failing and going (only their route's servers change), a service
    /// leaving, claims changing hands, meta turning invalid (routes settled again).
    #[test]
    fn a_route_table_follows_deltas_as_the_whole_catalog_routes() {
        use cairn_wire::{CatalogDelta, InstanceRef};
        let whole = |list: &[Instance]| catalog(list).services;
        let web2 = |status| CatalogDelta {
            services: vec![web_instance("n-web2", "127.0.0.2", status)],
            ..CatalogDelta::default()
        };
        // Each step, and whether only servers changed (the positions of the routes they did).
        let steps: Vec<(CatalogDelta, RouteChange)> = vec![
            (
                CatalogDelta {
                    full: true,
                    services: whole(&[
                        ("web", &[("lb_vhost", "shop.test")], 5),
                        ("db", &[("lb_mode", "tcp"), ("lb_port", "5432")], 7),
                    ]),
                    ..CatalogDelta::default()
                },
                RouteChange::Whole,
            ),
            // A second web instance: web's route (after db's) gains a server.
            (web2(CheckStatus::Passing), RouteChange::Servers(vec![1])),
            // Its check fails: the server goes.
            (web2(CheckStatus::Critical), RouteChange::Servers(vec![1])),
            // Still failing, its output aside: nothing moves.
            (web2(CheckStatus::Critical), RouteChange::Servers(vec![])),
            (web2(CheckStatus::Passing), RouteChange::Servers(vec![1])),
            // It leaves; web stays, as old as it was.
            (
                CatalogDelta {
                    removed_services: vec![InstanceRef {
                        node: "n-web2".into(),
                        service_id: "web-n-web2".into(),
                    }],
                    ..CatalogDelta::default()
                },
                RouteChange::Servers(vec![1]),
            ),
            // A later service asks for web's host: refused while web holds it.
            (
                CatalogDelta {
                    services: whole(&[("api", &[("lb_vhost", "shop.test,api.test")], 9)]),
                    ..CatalogDelta::default()
                },
                RouteChange::Whole,
            ),
            // web goes: api now gets shop.test too.
            (
                CatalogDelta {
                    removed_services: vec![InstanceRef {
                        node: "n-web".into(),
                        service_id: "web".into(),
                    }],
                    ..CatalogDelta::default()
                },
                RouteChange::Whole,
            ),
            // db's meta turns invalid: rejected, not routed.
            (
                CatalogDelta {
                    services: whole(&[("db", &[("lb_mode", "ftp")], 7)]),
                    ..CatalogDelta::default()
                },
                RouteChange::Whole,
            ),
        ];
        let mut mirror = CatalogMirror::default();
        let mut held = WholeCatalog::default();
        let mut table = RouteTable::new(80);
        for (n, (delta, change)) in steps.into_iter().enumerate() {
            held.apply(delta.clone());
            let touched = mirror.apply(delta);
            assert_eq!(table.update(&mirror, &touched), change, "step {n}");
            let now = (table.routes().to_vec(), table.rejected().to_vec());
            assert_eq!(now, routes(&held, 80), "step {n}");
        }
        let (now, rejected) = (table.routes(), table.rejected());
        let served: Vec<&str> = now.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(served, ["api"]);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
    }
}
