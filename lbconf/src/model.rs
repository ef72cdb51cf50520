//! The routing model: which services HAProxy serves and how, derived from the whole catalog.
//! Everything that comes from `ServiceMeta` is validated here, so the renderer only ever sees
//! safe identifiers, host names, paths and keywords: a hostile value is dropped (and logged),
//! never copied into the config.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use cairn_wire::{CatalogMirror, CheckStatus, ServiceEntry, Touched, WholeCatalog};

pub use crate::marathon_lb::Groups;

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
    /// TLS passed through untouched to the instances, chosen by the name the client asks for
    /// (SNI) on the HTTPS port (`lb_tls_passthrough`): the instances hold the certificates.
    TlsPassthrough { hosts: Vec<String> },
}

/// What a route asks of HAProxy beyond where it is reached, from its ServiceMeta.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteOptions {
    /// Served on the HTTPS frontend too (`lb_tls`), with `--tls-certs`' certificates.
    pub tls: bool,
    /// Plain HTTP requests answered with a 301 to https (`lb_redirect_https`; implies `tls`).
    pub redirect_https: bool,
    /// `Strict-Transport-Security: max-age=` on HTTPS answers, in seconds (`lb_hsts`: `true`
    /// for a year, or the seconds).
    pub hsts: Option<u64>,
    /// Cookie affinity (`lb_sticky`): a client keeps its instance while it is up.
    pub sticky: bool,
    /// How long an instance may take to answer, in milliseconds (`lb_timeout`, a Go duration).
    pub timeout_ms: Option<u64>,
    /// Most connections one instance gets at once (`lb_maxconn`); the rest wait in HAProxy's
    /// queue.
    pub maxconn: Option<u32>,
    /// A frontend of its own on this port for an HTTP route (`lb_port` with `lb_mode http`:
    /// marathon-lb's service port frontend), besides the shared one.
    pub own_port: Option<u16>,
    /// The address the route's own frontend (TCP, or `own_port`) binds (`lb_bind_addr`).
    pub bind_addr: Option<IpAddr>,
}

/// The most an `lb_timeout` may be (one day): longer is a typo, not a timeout.
const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// The most `lb_maxconn` may be.
const MAX_MAXCONN: u32 = 1_000_000;
/// What `lb_hsts = true` sets: a year.
pub const HSTS_DEFAULT_SECS: u64 = 365 * 24 * 3600;

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
    pub options: RouteOptions,
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
    routes_of_groups(catalog, http_port, &Groups::new(&[]))
}

/// [`routes`] of the services `groups` selects (marathon-lb's `--group`).
pub fn routes_of_groups(
    catalog: &WholeCatalog,
    http_port: u16,
    groups: &Groups,
) -> (Vec<Route>, Vec<Rejected>) {
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
        .map(|(name, entries)| (name.to_string(), wanted(name, &entries, groups)))
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
    groups: Groups,
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
        RouteTable::of_groups(http_port, Groups::new(&[]))
    }

    /// [`RouteTable::new`] routing only the services `groups` selects.
    pub fn of_groups(http_port: u16, groups: Groups) -> RouteTable {
        RouteTable {
            http_port,
            groups,
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
                let w = wanted(name, &entries, &self.groups);
                self.wanted.insert(name.to_string(), w);
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
            let w = wanted(name, &entries, &self.groups);
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
                    && x.options == y.options
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
            Exposure::TlsPassthrough { hosts: wanted } => {
                wanted.retain(|h| {
                    let key = (h.clone(), None);
                    match hosts.get(&key) {
                        Some(first) => {
                            rejected.push(reject(format!(
                                "lb_vhost {h} is already routed to service {first:?}, \
                                 registered first; ignored"
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
        // An HTTP route's own port is claimed like a TCP port; losing it keeps the route on
        // the shared frontend.
        if keep[i]
            && let Some(port) = route.options.own_port
        {
            if port == http_port {
                rejected.push(reject(format!(
                    "lb_port {port} is the HTTP frontend's port; no frontend of its own"
                )));
                route.options.own_port = None;
            } else if let Some(first) = ports.get(&port) {
                rejected.push(reject(format!(
                    "lb_port {port} is already routed to service {first:?}, registered first; \
                     no frontend of its own"
                )));
                route.options.own_port = None;
            } else {
                ports.insert(port, service.clone());
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
fn wanted(name: &str, entries: &[&ServiceEntry], groups: &Groups) -> Wanted {
    let mut rejected = Vec::new();
    let none = |rejected| Wanted {
        candidate: None,
        rejected,
    };
    let reject = |reason: String| Rejected {
        service: name.to_string(),
        reason,
    };
    let labelled = &entries[0].service.meta;
    if !groups.selects(labelled) {
        return none(rejected);
    }
    // marathon-lb's HAPROXY_* labels read as lbconf's meta; what lbconf cannot do is said.
    let translation = crate::marathon_lb::translate(labelled);
    for (label, why) in &translation.unsupported {
        rejected.push(reject(format!("label {label}: {why}")));
    }
    let mut meta = translation.meta;
    if labelled.contains_key("HAPROXY_0_VHOST") {
        // marathon-lb serves every virtual host on its HTTPS frontend too.
        meta.entry("lb_tls".into()).or_insert_with(|| "true".into());
    }
    let meta = &meta;
    let mode = meta.get("lb_mode").map(|m| m.trim().to_ascii_lowercase());
    let passthrough = flag(meta, "lb_tls_passthrough", &mut |r| {
        rejected.push(reject(r))
    });
    let exposure = match mode.as_deref() {
        _ if passthrough => {
            let hosts = vhosts(meta, &mut |r| rejected.push(reject(r)));
            if hosts.is_empty() {
                rejected.push(reject("lb_tls_passthrough needs lb_vhost".into()));
                return none(rejected);
            }
            Exposure::TlsPassthrough { hosts }
        }
        Some("tcp") => match tcp_port(meta) {
            Ok(port) => Exposure::Tcp { port },
            Err(why) => {
                rejected.push(reject(why));
                return none(rejected);
            }
        },
        Some("http") | None => {
            if !meta.contains_key("lb_vhost") {
                if mode.is_some() {
                    rejected.push(reject("lb_mode http needs lb_vhost".into()));
                }
                return none(rejected);
            }
            let hosts = vhosts(meta, &mut |r| rejected.push(reject(r)));
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
    let options = options(meta, &exposure, &mut |r| rejected.push(reject(r)));
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
                options,
                meta,
            },
            since,
        }),
        rejected,
    }
}

/// The hosts of `lb_vhost` (comma-separated), each checked; a bad one is reported and left out.
fn vhosts(meta: &BTreeMap<String, String>, report: &mut impl FnMut(String)) -> Vec<String> {
    let mut hosts = Vec::new();
    let Some(raw) = meta.get("lb_vhost") else {
        return hosts;
    };
    for one in raw.split(',').filter(|h| !h.trim().is_empty()) {
        match host(one) {
            Some(h) => hosts.push(h),
            None => report(format!("lb_vhost {one:?} is not a host name; ignored")),
        }
    }
    hosts
}

/// A yes/no meta value: `true`, `1`, `yes`, `on` or their opposites (any case); absent is no; anything
/// else is reported and read as no.
fn flag(meta: &BTreeMap<String, String>, key: &str, report: &mut impl FnMut(String)) -> bool {
    let Some(raw) = meta.get(key) else {
        return false;
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => true,
        "false" | "0" | "no" | "off" | "" => false,
        _ => {
            report(format!("{key} {raw:?} is neither true nor false; ignored"));
            false
        }
    }
}

/// The route's options from its meta; a value that cannot be used is reported and left out.
fn options(
    meta: &BTreeMap<String, String>,
    exposure: &Exposure,
    report: &mut impl FnMut(String),
) -> RouteOptions {
    let mut o = RouteOptions {
        tls: flag(meta, "lb_tls", report),
        redirect_https: flag(meta, "lb_redirect_https", report),
        sticky: flag(meta, "lb_sticky", report),
        ..RouteOptions::default()
    };
    // A redirect to https leads to the HTTPS frontend: the route must be there.
    o.tls |= o.redirect_https;
    if let Some(raw) = meta.get("lb_hsts") {
        let v = raw.trim().to_ascii_lowercase();
        match v.as_str() {
            "true" | "yes" | "on" => o.hsts = Some(HSTS_DEFAULT_SECS),
            "false" | "no" | "off" | "" => {}
            digits
                if !digits.is_empty()
                    && digits.len() <= 10
                    && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                o.hsts = digits.parse().ok();
            }
            _ => report(format!(
                "lb_hsts {raw:?} is neither true, false nor a max-age in seconds; ignored"
            )),
        }
    }
    if let Some(raw) = meta.get("lb_timeout") {
        match cairn_wire::parse_go_duration(raw.trim()) {
            Ok(d) if !d.is_zero() && d.as_millis() <= u128::from(MAX_TIMEOUT_MS) => {
                o.timeout_ms = Some(d.as_millis() as u64);
            }
            _ => report(format!(
                "lb_timeout {raw:?} is not a duration between 1ms and 24h (30s, 2m); ignored"
            )),
        }
    }
    if let Some(raw) = meta.get("lb_maxconn") {
        match raw.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_MAXCONN).contains(&n) => o.maxconn = Some(n),
            _ => report(format!(
                "lb_maxconn {raw:?} is not a number from 1 to {MAX_MAXCONN}; ignored"
            )),
        }
    }
    if let Some(raw) = meta.get("lb_bind_addr") {
        match raw.trim().parse::<IpAddr>() {
            Ok(ip) => o.bind_addr = Some(ip),
            Err(_) => report(format!(
                "lb_bind_addr {raw:?} is not an IP address; ignored"
            )),
        }
    }
    if let Exposure::Http { .. } = exposure
        && let Some(raw) = meta.get("lb_port")
    {
        match port(raw) {
            Some(p) => o.own_port = Some(p),
            None => report(format!("lb_port {raw:?} is not a port (1-65535); ignored")),
        }
    }
    if let Exposure::TlsPassthrough { .. } = exposure {
        // The connection is not decrypted: nothing HTTP applies.
        o.tls = false;
        o.redirect_https = false;
        o.hsts = None;
        o.sticky = false;
    }
    o
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

    #[test]
    fn route_options_from_meta() {
        // (meta, the options wanted, fragments of what is reported)
        type Case<'a> = (&'a [(&'a str, &'a str)], RouteOptions, &'a [&'a str]);
        let http = Exposure::Http {
            hosts: vec!["a.test".into()],
            path: None,
        };
        let cases: &[Case] = &[
            (&[], RouteOptions::default(), &[]),
            (
                &[
                    ("lb_tls", "true"),
                    ("lb_sticky", "YES"),
                    ("lb_maxconn", "50"),
                ],
                RouteOptions {
                    tls: true,
                    sticky: true,
                    maxconn: Some(50),
                    ..Default::default()
                },
                &[],
            ),
            (
                &[("lb_redirect_https", "1"), ("lb_hsts", "true")],
                RouteOptions {
                    tls: true,
                    redirect_https: true,
                    hsts: Some(HSTS_DEFAULT_SECS),
                    ..Default::default()
                },
                &[],
            ),
            (
                &[
                    ("lb_hsts", "600"),
                    ("lb_timeout", "1m30s"),
                    ("lb_bind_addr", "10.0.0.7"),
                ],
                RouteOptions {
                    hsts: Some(600),
                    timeout_ms: Some(90_000),
                    bind_addr: Some("10.0.0.7".parse().unwrap()),
                    ..Default::default()
                },
                &[],
            ),
            (
                &[("lb_port", "10001")],
                RouteOptions {
                    own_port: Some(10001),
                    ..Default::default()
                },
                &[],
            ),
            (
                &[
                    ("lb_tls", "maybe"),
                    ("lb_hsts", "max-age=5\n"),
                    ("lb_timeout", "forever"),
                    ("lb_timeout", "0s"),
                    ("lb_maxconn", "0"),
                    ("lb_bind_addr", "0.0.0.0 ssl"),
                    ("lb_port", "80 ssl"),
                ],
                RouteOptions::default(),
                &[
                    "lb_tls \"maybe\"",
                    "lb_hsts",
                    "lb_timeout",
                    "lb_maxconn",
                    "lb_bind_addr",
                    "lb_port",
                ],
            ),
            (
                &[("lb_timeout", "25h"), ("lb_maxconn", "2000000")],
                RouteOptions::default(),
                &["lb_timeout \"25h\"", "lb_maxconn \"2000000\""],
            ),
        ];
        for (pairs, want, reported) in cases {
            let meta: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut said = Vec::new();
            let got = options(&meta, &http, &mut |r| said.push(r));
            assert_eq!(&got, want, "{pairs:?}");
            for fragment in *reported {
                assert!(
                    said.iter().any(|r| r.contains(fragment)),
                    "{pairs:?}: {said:?}"
                );
            }
            if reported.is_empty() {
                assert!(said.is_empty(), "{pairs:?}: {said:?}");
            }
        }
        // Passed-through TLS is never decrypted: nothing HTTP applies to it.
        let passthrough = Exposure::TlsPassthrough {
            hosts: vec!["p.test".into()],
        };
        let meta: BTreeMap<String, String> = [
            ("lb_sticky", "true"),
            ("lb_hsts", "true"),
            ("lb_maxconn", "9"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let got = options(&meta, &passthrough, &mut |_| {});
        assert_eq!(
            got,
            RouteOptions {
                maxconn: Some(9),
                ..Default::default()
            }
        );
    }

    #[test]
    fn passthrough_and_own_ports_are_claimed_once() {
        let (routes, rejected) = routes(
            &catalog(&[
                (
                    "p1",
                    &[("lb_vhost", "p.test"), ("lb_tls_passthrough", "true")],
                    1,
                ),
                (
                    "p2",
                    &[("lb_vhost", "p.test"), ("lb_tls_passthrough", "true")],
                    2,
                ),
                ("nohost", &[("lb_tls_passthrough", "true")], 3),
                ("web", &[("lb_vhost", "w.test"), ("lb_port", "9000")], 4),
                ("db", &[("lb_mode", "tcp"), ("lb_port", "9000")], 5),
            ]),
            80,
        );
        let names: Vec<&str> = routes.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(names, ["p1", "web"], "{rejected:?}");
        assert!(
            matches!(&routes[0].exposure, Exposure::TlsPassthrough { hosts } if hosts == &["p.test"])
        );
        assert_eq!(routes[1].options.own_port, Some(9000));
        let said: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            said.iter().any(|r| r.contains("p.test is already routed")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|r| r.contains("lb_tls_passthrough needs lb_vhost")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|r| r.contains("TCP port 9000 is already routed")),
            "{said:?}"
        );
    }

    #[test]
    fn marathon_lb_labels_route_and_groups_select() {
        let labelled: &[(&str, &str)] = &[
            ("marathon-app-id", "/shop/web"),
            ("service_port", "10005"),
            ("HAPROXY_GROUP", "external"),
            ("HAPROXY_0_VHOST", "shop.test"),
            ("HAPROXY_0_STICKY", "true"),
            ("HAPROXY_0_FRONTEND_HEAD", "frontend x"),
        ];
        let internal: &[(&str, &str)] = &[
            ("marathon-app-id", "/db"),
            ("service_port", "10006"),
            ("HAPROXY_GROUP", "internal"),
        ];
        let cat = catalog(&[("web-shop", labelled, 1), ("db", internal, 2)]);
        let external = Groups::new(&["external".to_string()]);
        let (routes, rejected) = routes_of_groups(&cat, 80, &external);
        assert_eq!(routes.len(), 1, "{routes:?}");
        let web = &routes[0];
        assert!(matches!(&web.exposure, Exposure::Http { hosts, .. } if hosts == &["shop.test"]));
        // marathon-lb: the service port too, and the vhost on HTTPS.
        assert_eq!(web.options.own_port, Some(10005));
        assert!(web.options.tls && web.options.sticky, "{:?}", web.options);
        assert!(
            rejected
                .iter()
                .any(|r| r.reason.contains("HAPROXY_0_FRONTEND_HEAD")),
            "{rejected:?}"
        );
        let (all, _) = routes_of_groups(&cat, 80, &Groups::new(&["*".to_string()]));
        assert_eq!(all.len(), 2);
        assert!(
            matches!(all[0].exposure, Exposure::Tcp { port: 10006 }),
            "{:?}",
            all[0]
        );
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
