//! haproxy.cfg from the routing model: global and defaults, one shared HTTP frontend routing by
//! Host (and path prefix, longest first), a TCP frontend per TCP service, and a backend per
//! service with spare server slots so instance changes can later go through the runtime API
//! without a reload. Output is deterministic: the same catalog gives the same bytes.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use crate::model::{Exposure, Route, Server};

/// Where a spare server slot is parked (in maintenance): no instance is ever there, so the
/// address alone tells a spare slot from a server (lbconf's metrics count servers so).
pub const PARKED_IP: &str = "127.0.0.1";
pub const PARKED_PORT: u16 = 1;

/// Which instance sits in which server slot of each backend (None = a parked spare slot).
pub type Assignment = BTreeMap<String, Vec<Option<Server>>>;

/// A fresh assignment: instances in order, then spare slots.
pub fn fresh_assignment(routes: &[Route], spare: usize) -> Assignment {
    routes
        .iter()
        .map(|r| {
            let mut slots: Vec<Option<Server>> = r.servers.iter().cloned().map(Some).collect();
            slots.resize(self::slots(r.servers.len(), spare), None);
            (r.backend.clone(), slots)
        })
        .collect()
}

/// Fits `routes`' instances into the slots of `current`, moving as little as possible: kept
/// instances stay in their slots, gone ones free theirs, new ones take free slots. None when a
/// backend is missing or has too few slots (a reload is needed).
pub fn reassign(current: &Assignment, routes: &[Route]) -> Option<Assignment> {
    routes
        .iter()
        .map(|r| {
            let slots = reassign_backend(current.get(&r.backend)?, &r.servers)?;
            Some((r.backend.clone(), slots))
        })
        .collect()
}

/// One backend's slots holding `servers`, as [`reassign`] fits them; None when they do not fit.
pub fn reassign_backend(
    current: &[Option<Server>],
    servers: &[Server],
) -> Option<Vec<Option<Server>>> {
    let wanted: HashSet<&Server> = servers.iter().collect();
    let mut slots = current.to_vec();
    let mut seated: HashSet<Server> = HashSet::with_capacity(servers.len());
    for slot in slots.iter_mut() {
        match slot {
            Some(s) if wanted.contains(s) => {
                seated.insert(s.clone());
            }
            Some(_) => *slot = None,
            None => {}
        }
    }
    let mut free = slots.iter_mut().filter(|x| x.is_none());
    for s in servers {
        if !seated.contains(s) {
            *free.next()? = Some(s.clone());
        }
    }
    Some(slots)
}

/// The runtime API commands that turn `from` into `to` (same backends and slot counts).
pub fn runtime_commands(from: &Assignment, to: &Assignment) -> Vec<String> {
    let mut cmds = Vec::new();
    for (backend, slots) in to {
        if let Some(old) = from.get(backend) {
            backend_commands(backend, old, slots, &mut cmds);
        }
    }
    cmds
}

/// The runtime API commands that turn `backend`'s slots `from` into `to`, added to `cmds`.
pub fn backend_commands(
    backend: &str,
    from: &[Option<Server>],
    to: &[Option<Server>],
    cmds: &mut Vec<String>,
) {
    for (i, (was, now)) in from.iter().zip(to).enumerate() {
        if was == now {
            continue;
        }
        let server = format!("{backend}/s{}", i + 1);
        match now {
            Some(s) => {
                cmds.push(format!(
                    "set server {server} addr {} port {}",
                    s.addr, s.port
                ));
                cmds.push(format!("set server {server} state ready"));
            }
            None => {
                cmds.push(format!("set server {server} state maint"));
                cmds.push(format!(
                    "set server {server} addr {PARKED_IP} port {PARKED_PORT}"
                ));
            }
        }
    }
}

/// Rendering settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address the frontends bind to.
    pub bind: IpAddr,
    pub http_port: u16,
    /// Free server slots kept in every backend beyond its current instances.
    pub spare_slots: usize,
    /// Runtime API socket (`stats socket`), when HAProxy is driven at runtime.
    pub stats_socket: Option<String>,
    /// Operators' Tera template for the global/defaults sections (`section == "global"`) and
    /// extra per-backend lines (`section == "backend"`).
    pub template: Option<std::sync::Arc<tera::Tera>>,
    /// HTTPS at the edge (`--tls-certs`); `None`: plain HTTP and TCP only.
    pub tls: Option<TlsSettings>,
    /// Where HAProxy's own Prometheus exporter (`/metrics`) and stats page (`/stats`) answer
    /// (`--haproxy-metrics`).
    pub exporter: Option<std::net::SocketAddr>,
}

/// The HTTPS frontend.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub https_port: u16,
    /// The certificates served (chosen by SNI).
    pub certs: Certs,
}

/// Where HAProxy reads its certificates (paths without spaces or quotes: the CLI checks).
#[derive(Debug, Clone)]
pub enum Certs {
    /// Every PEM in a directory (`lbconf render --tls-certs DIR`).
    Directory(String),
    /// A crt-list file that `lbconf watch` keeps, naming its validated copies.
    List(String),
}

/// The socket between the TLS router and the terminating frontend when some routes pass TLS
/// through: an abstract socket, reachable only by HAProxy itself.
const TERMINATION_SOCKET: &str = "abns@lbconf-https";
/// The cookie of `lb_sticky` routes.
pub const STICKY_COOKIE: &str = "LBCONF_SRV";

/// Name the operator's template is registered under.
pub const TEMPLATE: &str = "lbconf";

fn custom(t: &tera::Tera, vars: serde_json::Value) -> Result<String, String> {
    let ctx = tera::Context::from_value(vars).map_err(|e| e.to_string())?;
    t.render(TEMPLATE, &ctx).map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        format!("--template: {msg}")
    })
}

/// `addr:port` as HAProxy reads it (IPv6 in brackets).
fn endpoint(s: &Server) -> String {
    match s.addr {
        IpAddr::V4(a) => format!("{a}:{}", s.port),
        IpAddr::V6(a) => format!("[{a}]:{}", s.port),
    }
}

fn bind(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Slots a backend with `n` instances gets: room to grow without a reload.
pub fn slots(n: usize, spare: usize) -> usize {
    (n + spare).max(1)
}

/// Renders the whole configuration with a fresh slot assignment.
pub fn config(routes: &[Route], settings: &Settings) -> Result<String, String> {
    config_with(
        routes,
        settings,
        &fresh_assignment(routes, settings.spare_slots),
    )
}

/// The shared frontend's `use_backend` lines, in the order HAProxy must try them (it takes the
/// first that matches):
/// 1. exact hosts before wildcards, and a longer wildcard suffix (`*.a.example.com`) before a
///    shorter one (`*.example.com`): the most specific host wins, whatever the names;
/// 2. within one host, the longest path first, so /api/v2 wins over /api and both over no path;
/// 3. an exact host that a wildcard also covers, and that has no route without a path, gets a
///    final 503 line: a host named exactly belongs to its own routes alone.
///
/// Claims were settled by the model: each (host, path) appears once.
fn host_rules(http: &[&Route]) -> Vec<String> {
    let mut rules: Vec<(&str, Option<&str>, &str)> = Vec::new();
    for r in http {
        if let Exposure::Http { hosts, path } = &r.exposure {
            for h in hosts {
                rules.push((h, path.as_deref(), &r.backend));
            }
        }
    }
    let wildcards: Vec<&str> = rules
        .iter()
        .filter_map(|(h, _, _)| h.strip_prefix('*'))
        .collect();
    let specificity = |host: &str| match host.strip_prefix('*') {
        // Exact hosts first (0), then wildcards by suffix, longest first.
        Some(suffix) => (1, usize::MAX - suffix.len()),
        None => (0, 0),
    };
    rules.sort_by(|a, b| {
        specificity(a.0)
            .cmp(&specificity(b.0))
            .then(a.0.cmp(b.0))
            .then(b.1.map_or(0, str::len).cmp(&a.1.map_or(0, str::len)))
    });
    let mut lines = Vec::new();
    let mut i = 0;
    while i < rules.len() {
        let host = rules[i].0;
        let mut has_pathless = false;
        while i < rules.len() && rules[i].0 == host {
            let (_, path, backend) = rules[i];
            let host_match = host_match(host);
            match path {
                Some(p) => lines.push(format!(
                    "use_backend {backend} if {host_match} {{ path_beg {p} }}"
                )),
                None => {
                    has_pathless = true;
                    lines.push(format!("use_backend {backend} if {host_match}"));
                }
            }
            i += 1;
        }
        let exact = !host.starts_with('*');
        if exact && !has_pathless && wildcards.iter().any(|suffix| host.ends_with(suffix)) {
            lines.push(format!(
                "use_backend no_route if {{ var(txn.host) -m str {host} }}"
            ));
        }
    }
    lines
}

/// Renders the whole configuration with the given slot assignment.
pub fn config_with(
    routes: &[Route],
    settings: &Settings,
    assignment: &Assignment,
) -> Result<String, String> {
    let mut out = Lines::default();
    let w = &mut out;
    w.line("# Generated by lbconf from the catalog. Edits are overwritten.");
    match &settings.template {
        Some(t) => {
            let head = custom(
                t,
                serde_json::json!({
                    "section": "global",
                    "stats_socket": settings.stats_socket,
                    "bind": settings.bind.to_string(),
                    "http_port": settings.http_port,
                }),
            )?;
            w.line(head.trim_end());
        }
        None => {
            w.line("global");
            // Within a default 20k-descriptor limit (HAProxy needs about 2 per connection).
            w.line("    maxconn 4096");
            if let Some(sock) = &settings.stats_socket {
                w.line(format!(
                    "    stats socket {sock} mode 600 level admin expose-fd listeners"
                ));
            }
            w.line("\ndefaults");
            w.line("    mode http");
            w.line("    timeout connect 5s");
            w.line("    timeout client 60s");
            w.line("    timeout server 60s");
            w.line("    option redispatch");
            w.line("    retries 3");
        }
    }

    let http: Vec<&Route> = routes
        .iter()
        .filter(|r| matches!(r.exposure, Exposure::Http { .. }))
        .collect();
    w.line("\nfrontend http_in");
    w.line(format!(
        "    bind {}",
        bind(settings.bind, settings.http_port)
    ));
    w.line("    mode http");
    w.line("    http-request set-var(txn.host) req.hdr(host),field(1,:),lower");
    if settings.tls.is_some() {
        for rule in redirect_rules(&http) {
            w.line(format!("    {rule}"));
        }
    }
    for rule in host_rules(&http) {
        w.line(format!("    {rule}"));
    }
    w.line("    default_backend no_route");
    if let Some(tls) = &settings.tls {
        https_frontends(w, routes, settings.bind, tls);
    }
    w.line("\nbackend no_route");
    w.line("    mode http");
    w.line("    http-request deny deny_status 503");
    if let Some(addr) = settings.exporter {
        w.line("\nfrontend haproxy_metrics");
        w.line(format!("    bind {}", bind(addr.ip(), addr.port())));
        w.line("    mode http");
        w.line("    http-request use-service prometheus-exporter if { path /metrics }");
        w.line("    stats enable");
        w.line("    stats uri /stats");
        w.line("    stats refresh 10s");
        w.line("    no log");
    }

    for r in routes {
        let own = match r.exposure {
            Exposure::Tcp { port } => Some(("tcp", port)),
            Exposure::Http { .. } => r.options.own_port.map(|p| ("http", p)),
            Exposure::TlsPassthrough { .. } => None,
        };
        if let Some((mode, port)) = own {
            w.line(format!(
                "\nfrontend {mode}_{}_{port}",
                r.backend.trim_start_matches("be_")
            ));
            let ip = r.options.bind_addr.unwrap_or(settings.bind);
            w.line(format!("    bind {}", bind(ip, port)));
            w.line(format!("    mode {mode}"));
            w.line(format!("    default_backend {}", r.backend));
        }
    }
    for r in routes {
        let mode = if matches!(r.exposure, Exposure::Http { .. }) {
            "http"
        } else {
            "tcp"
        };
        w.line(format!("\nbackend {}", r.backend));
        w.line(format!(
            "    # service {}",
            crate::model::identifier(&r.service)
        ));
        w.line(format!("    mode {mode}"));
        w.line(format!("    balance {}", r.balance));
        backend_options(w, r, settings.tls.is_some());
        if let Some(t) = &settings.template {
            let extra = custom(
                t,
                serde_json::json!({
                    "section": "backend",
                    "backend": r.backend,
                    "service": crate::model::identifier(&r.service),
                    "mode": mode,
                    "meta": r.meta,
                }),
            )?;
            for line in extra.lines().filter(|l| !l.trim().is_empty()) {
                w.line(format!("    {}", line.trim()));
            }
        }
        let fallback = Vec::new();
        for (i, slot) in assignment
            .get(&r.backend)
            .unwrap_or(&fallback)
            .iter()
            .enumerate()
        {
            match slot {
                Some(s) => {
                    w.line(format!(
                        "    server s{} {}{}",
                        i + 1,
                        endpoint(s),
                        server_options(r, i)
                    ));
                }
                // A spare slot: parked, filled at runtime by address, port and state.
                None => {
                    w.line(format!(
                        "    server s{} {PARKED_IP}:{PARKED_PORT} disabled{}",
                        i + 1,
                        server_options(r, i)
                    ));
                }
            }
        }
    }
    Ok(out.0)
}

/// Text built a line at a time (pushing onto a `String` cannot fail, so there is no
/// `fmt::Result` to ignore).
/// The shared frontend's 301s to https for `lb_redirect_https` routes, before any routing
/// (a path-scoped route redirects only under its path).
fn redirect_rules(http: &[&Route]) -> Vec<String> {
    let mut rules = Vec::new();
    for r in http.iter().filter(|r| r.options.redirect_https) {
        if let Exposure::Http { hosts, path } = &r.exposure {
            for h in hosts {
                let path_match = path
                    .as_ref()
                    .map(|p| format!(" {{ path_beg {p} }}"))
                    .unwrap_or_default();
                rules.push(format!(
                    "http-request redirect scheme https code 301 if {}{path_match}",
                    host_match(h)
                ));
            }
        }
    }
    rules
}

/// The condition that the request's host is `host` (`*.suffix`: ends with `.suffix`).
fn host_match(host: &str) -> String {
    match host.strip_prefix("*.") {
        Some(suffix) => format!("{{ var(txn.host) -m end .{suffix} }}"),
        None => format!("{{ var(txn.host) -m str {host} }}"),
    }
}

/// The HTTPS side: a frontend terminating TLS with the crt-list's certificates (chosen by SNI;
/// HTTP/2 or HTTP/1.1 by ALPN) and routing `lb_tls` routes by Host as the shared one does.
/// When some routes pass TLS through, a TCP frontend on the port reads the SNI first: those
/// names go to their backends untouched, the rest on to the terminating frontend over an
/// abstract socket (with the client's address in a PROXY header).
fn https_frontends(w: &mut Lines, routes: &[Route], ip: IpAddr, tls: &TlsSettings) {
    let passthrough: Vec<&Route> = routes
        .iter()
        .filter(|r| matches!(r.exposure, Exposure::TlsPassthrough { .. }))
        .collect();
    let terminated: Vec<&Route> = routes
        .iter()
        .filter(|r| matches!(r.exposure, Exposure::Http { .. }) && r.options.tls)
        .collect();
    let crt = match &tls.certs {
        Certs::Directory(dir) => format!("crt {dir}"),
        Certs::List(file) => format!("crt-list {file}"),
    };
    // strict-sni: a name no certificate covers is refused rather than given another name's
    // certificate, and every certificate (the first too) can be removed at runtime.
    let ssl = format!("ssl {crt} strict-sni alpn h2,http/1.1");
    if passthrough.is_empty() {
        w.line("\nfrontend https_in");
        w.line(format!("    bind {} {ssl}", bind(ip, tls.https_port)));
    } else {
        w.line("\nfrontend tls_router");
        w.line(format!("    bind {}", bind(ip, tls.https_port)));
        w.line("    mode tcp");
        w.line("    tcp-request inspect-delay 5s");
        w.line("    tcp-request content accept if { req_ssl_hello_type 1 }");
        for r in &passthrough {
            if let Exposure::TlsPassthrough { hosts } = &r.exposure {
                for h in hosts {
                    let sni = match h.strip_prefix("*.") {
                        Some(suffix) => format!("{{ req_ssl_sni -m end .{suffix} }}"),
                        None => format!("{{ req_ssl_sni -i {h} }}"),
                    };
                    w.line(format!("    use_backend {} if {sni}", r.backend));
                }
            }
        }
        w.line("    default_backend tls_termination");
        w.line("\nbackend tls_termination");
        w.line("    mode tcp");
        w.line(format!(
            "    server https_in {TERMINATION_SOCKET} send-proxy-v2"
        ));
        w.line("\nfrontend https_in");
        w.line(format!("    bind {TERMINATION_SOCKET} accept-proxy {ssl}"));
    }
    w.line("    mode http");
    w.line("    http-request set-var(txn.host) req.hdr(host),field(1,:),lower");
    for rule in host_rules(&terminated) {
        w.line(format!("    {rule}"));
    }
    w.line("    default_backend no_route");
}

/// A backend's lines from its route's options (before its servers); `https`: whether there is
/// an HTTPS frontend (HSTS is only sent over HTTPS).
fn backend_options(w: &mut Lines, r: &Route, https: bool) {
    let o = &r.options;
    if let Some(ms) = o.timeout_ms {
        w.line(format!("    timeout server {ms}ms"));
    }
    if let Some(age) = o.hsts.filter(|_| https) {
        w.line(format!(
            "    http-response set-header Strict-Transport-Security \"max-age={age}\" if {{ ssl_fc }}"
        ));
    }
    if o.sticky {
        w.line(format!(
            "    cookie {STICKY_COOKIE} insert indirect nocache httponly"
        ));
    }
}

/// What follows a server's address: its cookie (sticky routes: by slot, so a slot keeps its
/// cookie when the runtime API moves an instance in) and its connection limit.
fn server_options(r: &Route, slot: usize) -> String {
    let mut out = String::new();
    if r.options.sticky {
        out.push_str(&format!(" cookie s{}", slot + 1));
    }
    if let Some(n) = r.options.maxconn {
        out.push_str(&format!(" maxconn {n}"));
    }
    out
}

#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, text: impl AsRef<str>) {
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RouteOptions;

    fn route(backend: &str, ports: &[u16]) -> Route {
        Route {
            service: backend.into(),
            backend: backend.into(),
            exposure: Exposure::Http {
                hosts: vec!["a.test".into()],
                path: None,
            },
            balance: "roundrobin".into(),
            options: Default::default(),
            meta: Default::default(),
            servers: ports
                .iter()
                .map(|p| Server {
                    addr: "127.0.0.1".parse().unwrap(),
                    port: *p,
                })
                .collect(),
        }
    }

    fn settings(tls: Option<TlsSettings>) -> Settings {
        Settings {
            bind: "127.0.0.1".parse().unwrap(),
            http_port: 80,
            spare_slots: 1,
            stats_socket: None,
            template: None,
            tls,
            exporter: Some("127.0.0.1:8405".parse().unwrap()),
        }
    }

    #[test]
    fn https_termination_redirects_stickiness_and_limits() {
        let mut web = route("be_web", &[1, 2]);
        web.options = RouteOptions {
            tls: true,
            redirect_https: true,
            hsts: Some(600),
            sticky: true,
            timeout_ms: Some(2500),
            maxconn: Some(20),
            ..Default::default()
        };
        let mut plain = route("be_plain", &[3]);
        plain.exposure = Exposure::Http {
            hosts: vec!["plain.test".into()],
            path: None,
        };
        let tls = TlsSettings {
            https_port: 443,
            certs: Certs::List("/s/crt-list.txt".into()),
        };
        let text = config(&[web.clone(), plain.clone()], &settings(Some(tls))).unwrap();
        for line in [
            "http-request redirect scheme https code 301 if { var(txn.host) -m str a.test }",
            "frontend https_in\n    bind 127.0.0.1:443 ssl crt-list /s/crt-list.txt strict-sni alpn h2,http/1.1",
            "timeout server 2500ms",
            "http-response set-header Strict-Transport-Security \"max-age=600\" if { ssl_fc }",
            "cookie LBCONF_SRV insert indirect nocache httponly",
            "server s1 127.0.0.1:1 cookie s1 maxconn 20",
            "server s3 127.0.0.1:1 disabled cookie s3 maxconn 20",
            "http-request use-service prometheus-exporter if { path /metrics }",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // Only lb_tls routes are on HTTPS; the plain one is not, and is not redirected.
        let https = &text[text.find("frontend https_in").unwrap()..];
        let https = &https[..https.find("\nbackend").unwrap()];
        assert!(
            https.contains("be_web") && !https.contains("be_plain"),
            "{https}"
        );
        assert!(
            !text.contains("plain.test }\n    http-request redirect"),
            "{text}"
        );
        // Without --tls-certs nothing of HTTPS is written, redirects included.
        let text = config(&[web, plain], &settings(None)).unwrap();
        assert!(!text.contains("https") && !text.contains("ssl"), "{text}");
    }

    #[test]
    fn passthrough_routes_by_sni_before_terminating_the_rest() {
        let mut pass = route("be_pass", &[7]);
        pass.exposure = Exposure::TlsPassthrough {
            hosts: vec!["p.test".into(), "*.q.test".into()],
        };
        let mut web = route("be_web", &[1]);
        web.options.tls = true;
        let tls = TlsSettings {
            https_port: 8443,
            certs: Certs::Directory("/etc/certs".into()),
        };
        let text = config(&[pass, web], &settings(Some(tls))).unwrap();
        for line in [
            "frontend tls_router\n    bind 127.0.0.1:8443\n    mode tcp",
            "tcp-request content accept if { req_ssl_hello_type 1 }",
            "use_backend be_pass if { req_ssl_sni -i p.test }",
            "use_backend be_pass if { req_ssl_sni -m end .q.test }",
            "server https_in abns@lbconf-https send-proxy-v2",
            "bind abns@lbconf-https accept-proxy ssl crt /etc/certs strict-sni alpn h2,http/1.1",
            "backend be_pass\n    # service be_pass\n    mode tcp",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }

    #[test]
    fn instance_churn_reuses_slots_and_needs_no_reload_until_they_run_out() {
        let a = fresh_assignment(&[route("be", &[1, 2])], 2);
        assert_eq!(a["be"].len(), 4);
        let b = reassign(&a, &[route("be", &[2, 3])]).unwrap();
        assert_eq!(
            b["be"][1].as_ref().unwrap().port,
            2,
            "a kept instance keeps its slot"
        );
        assert_eq!(
            b["be"][0].as_ref().unwrap().port,
            3,
            "the freed slot is reused"
        );
        let cmds = runtime_commands(&a, &b);
        assert_eq!(
            cmds,
            vec![
                "set server be/s1 addr 127.0.0.1 port 3",
                "set server be/s1 state ready"
            ]
        );
        assert!(
            reassign(&b, &[route("be", &[1, 2, 3, 4, 5])]).is_none(),
            "five instances do not fit four slots"
        );
        assert!(
            reassign(&b, &[route("other", &[1])]).is_none(),
            "a new backend needs a reload"
        );
        let text = config_with(
            &[route("be", &[2, 3])],
            &Settings {
                bind: "127.0.0.1".parse().unwrap(),
                http_port: 80,
                spare_slots: 2,
                stats_socket: None,
                template: None,
                tls: None,
                exporter: None,
            },
            &b,
        )
        .unwrap();
        assert!(text.contains("server s1 127.0.0.1:3\n    server s2 127.0.0.1:2\n    server s3 127.0.0.1:1 disabled"), "{text}");
    }

    fn http(backend: &str, hosts: &[&str], path: Option<&str>) -> Route {
        Route {
            exposure: Exposure::Http {
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                path: path.map(str::to_string),
            },
            ..route(backend, &[1])
        }
    }

    /// Exact hosts before wildcards, longer wildcards before shorter ones, longer paths first
    /// within a host; an exact host covered by a wildcard but without a path-less route of its
    /// own ends in a 503 rather than falling through to the wildcard.
    #[test]
    fn the_most_specific_host_wins() {
        let routes = [
            http("be_any", &["*.example.com"], None),
            http("be_deep", &["*.eu.example.com"], None),
            http("be_a", &["a.example.com"], None),
            http("be_api", &["b.example.com"], Some("/api")),
            http("be_api2", &["b.example.com"], Some("/api/v2")),
            http("be_other", &["other.test"], None),
        ];
        let refs: Vec<&Route> = routes.iter().collect();
        assert_eq!(
            host_rules(&refs),
            [
                "use_backend be_a if { var(txn.host) -m str a.example.com }",
                "use_backend be_api2 if { var(txn.host) -m str b.example.com } { path_beg /api/v2 }",
                "use_backend be_api if { var(txn.host) -m str b.example.com } { path_beg /api }",
                "use_backend no_route if { var(txn.host) -m str b.example.com }",
                "use_backend be_other if { var(txn.host) -m str other.test }",
                "use_backend be_deep if { var(txn.host) -m end .eu.example.com }",
                "use_backend be_any if { var(txn.host) -m end .example.com }",
            ]
        );
    }
}
