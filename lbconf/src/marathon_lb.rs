//! marathon-lb's `HAPROXY_*` app labels, read as lbconf's `lb_*` meta, and marathon-lb's
//! `--group` selection (issue 21). Pure: no I/O; the caller logs what is reported.
//!
//! taskrun registers each task of an app as a catalog instance whose meta holds the app's
//! labels plus `marathon-app-id` and `service_port` (the app's first service port), so an app
//! configured for marathon-lb carries its labels into the catalog. [`translate`] fills the
//! `lb_*` keys [`crate::model`] reads from them; [`Groups`] says which instances this lbconf
//! serves, as marathon-lb's `has_group` does for `--group`.
//!
//! Mapped (per service port labels: index 0 only, since taskrun registers one service per
//! task, for the app's first port):
//!
//! | label                          | meta                                                   |
//! |--------------------------------|--------------------------------------------------------|
//! | `HAPROXY_0_VHOST`              | `lb_vhost` (comma-separated hosts, as lbconf takes them)|
//! | `HAPROXY_0_PATH`               | `lb_path` (one prefix; marathon-lb's space-separated `path_beg` list is copied, so the model refuses it, and reported) |
//! | `HAPROXY_0_MODE`               | `lb_mode`; for a Marathon app without it: `http` when a vhost is set, else `tcp` (marathon-lb's `config()`) |
//! | `HAPROXY_0_PORT`               | `lb_port`; for a Marathon app without it: `service_port` |
//! | `HAPROXY_0_BALANCE`            | `lb_balance`                                           |
//! | `HAPROXY_0_BIND_ADDR`          | `lb_bind_addr`                                         |
//! | `HAPROXY_0_REDIRECT_TO_HTTPS`  | `lb_redirect_https = "true"` when truthy                |
//! | `HAPROXY_0_STICKY`             | `lb_sticky = "true"` when truthy                        |
//! | `HAPROXY_0_USE_HSTS`           | `lb_hsts = "15768000"` when truthy (marathon-lb's `max-age`) |
//! | `HAPROXY_0_SSL_CERT`           | `lb_tls = "true"`; the path itself is ignored (reported) |
//! | `HAPROXY_0_ENABLED`            | not truthy: no `lb_*` key is taken from the labels (the app is disabled, as in marathon-lb) |
//! | `HAPROXY_GROUP`, `HAPROXY_0_GROUP` | read by [`Groups::selects`]                        |
//!
//! Truthy is marathon-lb's `string_to_bool`: the lowercased value is one of `true`, `t`,
//! `yes`, `y` (no trimming). An empty value counts as not given (marathon-lb tests most of
//! these values for truth). Values are copied as given: [`crate::model`] validates them; only
//! a value holding control characters is dropped here.
//!
//! Not mapped, each reported in [`Translation::unsupported`]: labels of other port indexes
//! (`HAPROXY_{n}_*`, n >= 1); raw template overrides (`HAPROXY_0_BACKEND_HEAD`,
//! `_FRONTEND_HEAD`, `_HTTP_FRONTEND_ACL*`, `_BACKEND_HTTP_OPTIONS`, ... — every label
//! marathon-lb reads with `set_label`); `_BIND_OPTIONS`, `_BACKEND_WEIGHT`,
//! `_HTTP_BACKEND_PROXYPASS_PATH`, `_HTTP_BACKEND_REVPROXY_PATH`, `_HTTP_BACKEND_REDIR`,
//! `_BACKEND_HEALTHCHECK_PORT_INDEX`; zdd's blue/green labels (`HAPROXY_DEPLOYMENT_*`,
//! `HAPROXY_APP_ID`: lbconf routes each app as its own service and never merges the pair);
//! names marathon-lb does not know (it ignores them; they are reported to catch typos).
//!
//! Fail closed: a label that restricts who may reach the app (`HAPROXY_0_AUTH`,
//! `HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL`), or a routing label whose value had to be dropped
//! for control characters, means no `lb_*` key is taken from the labels at all: serving the
//! app without the restriction, or wider than asked (a whole host instead of a path, every
//! address instead of one), would expose more than its owner configured.
//!
//! Also not followed: marathon-lb's switch to `http` mode when the port's Marathon health
//! check is HTTP (the health checks are not in the meta); `--strict-mode`. `lb_port` is set
//! for an http app too: marathon-lb opens a frontend on every app's service port, a vhost
//! app's included, besides the shared one.

use std::collections::{BTreeMap, BTreeSet};

/// Meta key taskrun sets on a task's service: the Marathon app id (e.g. `/shop/web`).
const APP_ID_META: &str = "marathon-app-id";
/// Meta key taskrun sets on a task's service: the app's first service port.
const SERVICE_PORT_META: &str = "service_port";
/// Every marathon-lb label starts with it.
const PREFIX: &str = "HAPROXY_";
/// The app-wide group label (comma-separated groups).
const GROUP: &str = "HAPROXY_GROUP";
/// The first port's group label: when present it replaces [`GROUP`] for that port.
const GROUP_0: &str = "HAPROXY_0_GROUP";

/// Why `HAPROXY_0_SSL_CERT` is only partly followed.
const CERT_IGNORED: &str =
    "the certificate path is ignored: lbconf serves the certificates in --tls-certs";

/// Per service port labels marathon-lb reads as raw HAProxy template text (`set_label` in its
/// `config.py`).
const TEMPLATES: &[&str] = &[
    "BACKEND_HEAD",
    "BACKEND_HSTS_OPTIONS",
    "BACKEND_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_HTTP_OPTIONS",
    "BACKEND_REDIRECT_HTTP_TO_HTTPS",
    "BACKEND_REDIRECT_HTTP_TO_HTTPS_WITH_PATH",
    "BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
    "BACKEND_SERVER_OPTIONS",
    "BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
    "BACKEND_STICKY_OPTIONS",
    "BACKEND_TCP_HEALTHCHECK_OPTIONS",
    "FRONTEND_BACKEND_GLUE",
    "FRONTEND_HEAD",
    "HTTPS_FRONTEND_ACL",
    "HTTPS_FRONTEND_ACL_ONLY_WITH_PATH",
    "HTTPS_FRONTEND_ACL_WITH_AUTH",
    "HTTPS_FRONTEND_ACL_WITH_AUTH_AND_PATH",
    "HTTPS_FRONTEND_ACL_WITH_PATH",
    "HTTP_BACKEND_NETWORK_ALLOWED_ACL",
    "HTTP_BACKEND_PROXYPASS_GLUE",
    "HTTP_BACKEND_REVPROXY_GLUE",
    "HTTP_FRONTEND_ACL",
    "HTTP_FRONTEND_ACL_ONLY",
    "HTTP_FRONTEND_ACL_ONLY_WITH_PATH",
    "HTTP_FRONTEND_ACL_ONLY_WITH_PATH_AND_AUTH",
    "HTTP_FRONTEND_ACL_WITH_AUTH",
    "HTTP_FRONTEND_ACL_WITH_AUTH_AND_PATH",
    "HTTP_FRONTEND_ACL_WITH_PATH",
    "HTTP_FRONTEND_APPID_ACL",
    "HTTP_FRONTEND_ROUTING_ONLY",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_AUTH",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH",
    "HTTP_FRONTEND_ROUTING_ONLY_WITH_PATH_AND_AUTH",
    "MAP_HTTPS_FRONTEND_ACL",
    "MAP_HTTP_FRONTEND_ACL",
    "MAP_HTTP_FRONTEND_ACL_ONLY",
    "MAP_HTTP_FRONTEND_APPID_ACL",
    "TCP_BACKEND_NETWORK_ALLOWED_ACL",
    "USERLIST_HEAD",
];

/// `lbconf --group`: which marathon-lb groups this lbconf serves (marathon-lb's --group).
///
/// marathon-lb's rule (`has_group` and its caller `config()` in `marathon_lb.py`): a load
/// balancer with the group `*` serves every app, with or without a group; otherwise an app is
/// served when one of its groups is one of the load balancer's. An app's groups are its
/// `HAPROXY_0_GROUP` label when present (the per port label takes precedence, even when
/// empty), else its `HAPROXY_GROUP` label, each split on `,` with nothing trimmed; an app
/// with neither has no group and is served only by `*`. A `*` in an app's label is not a
/// wildcard (it matches only a load balancer's group named `*`, which serves all anyway).
/// `HAPROXY_DEPLOYMENT_GROUP` is not a HAProxy group: it names a blue/green pair and plays no
/// part in the selection.
///
/// Where lbconf differs, and why:
/// - marathon-lb requires `--group`; lbconf's is optional and, absent, serves everything, as
///   lbconf did before it knew groups.
/// - marathon-lb's `--group` is repeated, one group per flag (`action="append"`, never
///   split); lbconf also splits each value on `,`. A group name holding `,` could never
///   match in marathon-lb (an app's label is split on `,`), so splitting only gives meaning
///   to values marathon-lb could not use.
/// - The same rule applies to every catalog service, Marathon app or not: with a `--group`
///   (other than `*`), a service that names no group (no `HAPROXY_GROUP` / `HAPROXY_0_GROUP`
///   meta) is not served. A `--group` partitions services among load balancers (say internal
///   and external); a service nobody assigned to a group must not turn up on every one of
///   them, the external one included. An operator puts such a service in a group with
///   `HAPROXY_GROUP` meta, or runs a `--group '*'` load balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    /// The groups served; empty when no `--group` was given.
    names: BTreeSet<String>,
}

impl Groups {
    /// From the flag values (each may hold a comma-separated list); empty: no --group given.
    pub fn new(values: &[String]) -> Groups {
        Groups {
            names: values
                .iter()
                .flat_map(|v| v.split(','))
                .map(String::from)
                .collect(),
        }
    }

    /// Whether an instance whose meta is `meta` is served here: marathon-lb's rule for apps
    /// (HAPROXY_GROUP label vs the groups; `*`); a service that is not a Marathon app and has
    /// no HAPROXY_GROUP: served when no --group was given, and when one was, only if it
    /// includes `*` (see [`Groups`] for why).
    pub fn selects(&self, meta: &BTreeMap<String, String>) -> bool {
        if self.names.is_empty() || self.names.contains("*") {
            return true;
        }
        meta.get(GROUP_0)
            .or_else(|| meta.get(GROUP))
            .is_some_and(|groups| groups.split(',').any(|g| self.names.contains(g)))
    }
}

/// What an instance's meta means once marathon-lb's labels are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    /// The meta with lbconf's keys filled from the labels: lb_vhost, lb_path, lb_mode,
    /// lb_balance, lb_port, lb_bind_addr, lb_redirect_https ("true"), lb_sticky ("true"),
    /// lb_tls ("true" for HAPROXY_0_SSL_CERT), lb_hsts ("15768000" for HAPROXY_0_USE_HSTS). An lb_* key already present wins over a label
    /// (an operator's explicit meta is never overridden).
    pub meta: BTreeMap<String, String>,
    /// Labels seen that lbconf does not support (template overrides, port indexes >= 1, ...),
    /// each with a short reason, e.g. ("HAPROXY_0_BACKEND_HEAD", "raw HAProxy template
    /// overrides are not supported"). In key order.
    pub unsupported: Vec<(String, String)>,
}

/// Where a `HAPROXY_` key stands.
enum Key<'a> {
    /// `HAPROXY_GROUP` or `HAPROXY_0_GROUP`: read by [`Groups`].
    Group,
    /// `HAPROXY_0_<name>`.
    First(&'a str),
    /// `HAPROXY_<n>_<name>`, n >= 1.
    OtherPort,
    /// zdd's blue/green bookkeeping.
    Deployment,
    /// Not a name marathon-lb reads.
    Unknown,
}

/// Classifies a meta key; `None` when it is not marathon-lb's.
fn key(k: &str) -> Option<Key<'_>> {
    let rest = k.strip_prefix(PREFIX)?;
    if k == GROUP || k == GROUP_0 {
        return Some(Key::Group);
    }
    if rest.starts_with("DEPLOYMENT_") || rest == "APP_ID" {
        return Some(Key::Deployment);
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (index, name) = rest.split_at(digits);
    let Some(name) = name.strip_prefix('_') else {
        return Some(Key::Unknown);
    };
    // marathon-lb formats the index with str(i): no leading zeros.
    Some(match index {
        "" => Key::Unknown,
        "0" => Key::First(name),
        i if i.starts_with('0') => Key::Unknown,
        _ => Key::OtherPort,
    })
}

/// How a `HAPROXY_0_<name>` label is read.
enum Rule {
    /// Copied into this `lb_*` key.
    Copy(&'static str),
    /// This value into this `lb_*` key when truthy.
    Flag(&'static str, &'static str),
    /// `lb_tls`; the certificate path is reported as ignored.
    Tls,
    /// `HAPROXY_0_ENABLED`.
    Enabled,
    /// Restricts access in a way lbconf cannot: the labels are not used at all.
    Restricts(&'static str),
    /// Not supported, for this reason.
    Unsupported(&'static str),
}

fn rule(name: &str) -> Rule {
    match name {
        "VHOST" => Rule::Copy("lb_vhost"),
        "PATH" => Rule::Copy("lb_path"),
        "MODE" => Rule::Copy("lb_mode"),
        "PORT" => Rule::Copy("lb_port"),
        "BALANCE" => Rule::Copy("lb_balance"),
        "BIND_ADDR" => Rule::Copy("lb_bind_addr"),
        "REDIRECT_TO_HTTPS" => Rule::Flag("lb_redirect_https", "true"),
        "STICKY" => Rule::Flag("lb_sticky", "true"),
        // marathon-lb's BACKEND_HSTS_OPTIONS: `Strict-Transport-Security: max-age=15768000`.
        "USE_HSTS" => Rule::Flag("lb_hsts", "15768000"),
        "SSL_CERT" => Rule::Tls,
        "ENABLED" => Rule::Enabled,
        "AUTH" => Rule::Restricts(
            "HTTP basic auth is not supported: the app is not routed from its labels",
        ),
        "BACKEND_NETWORK_ALLOWED_ACL" => Rule::Restricts(
            "source address restrictions are not supported: the app is not routed from its labels",
        ),
        "BIND_OPTIONS" => Rule::Unsupported("raw bind options are not supported"),
        "BACKEND_WEIGHT" => Rule::Unsupported(
            "ACL weights are not supported: a host (and path) goes to the service registered first",
        ),
        "HTTP_BACKEND_PROXYPASS_PATH" | "HTTP_BACKEND_REVPROXY_PATH" | "HTTP_BACKEND_REDIR" => {
            Rule::Unsupported("path rewriting and redirects are not supported")
        }
        "BACKEND_HEALTHCHECK_PORT_INDEX" => {
            Rule::Unsupported("HAProxy health checks on another port are not supported")
        }
        t if TEMPLATES.contains(&t) => {
            Rule::Unsupported("raw HAProxy template overrides are not supported")
        }
        _ => Rule::Unsupported("not a marathon-lb label; ignored"),
    }
}

/// marathon-lb's `string_to_bool`.
fn truthy(v: &str) -> bool {
    matches!(v.to_lowercase().as_str(), "true" | "t" | "yes" | "y")
}

fn has_control(v: &str) -> bool {
    v.chars().any(char::is_control)
}

/// Reads marathon-lb's labels in `meta`; meta without any HAPROXY_ key comes back unchanged
/// with nothing unsupported.
pub fn translate(meta: &BTreeMap<String, String>) -> Translation {
    let mut unsupported = Vec::new();
    let mut report = |k: &str, why: &str| unsupported.push((k.to_string(), why.to_string()));
    let mut from_labels: BTreeMap<&'static str, String> = BTreeMap::new();
    let (mut any, mut enabled, mut withheld, mut vhost_given) = (false, true, false, false);
    for (k, v) in meta {
        let Some(class) = key(k) else { continue };
        any = true;
        let name = match class {
            Key::Group => continue,
            Key::First(name) => name,
            Key::OtherPort => {
                report(k, "only the first service port (HAPROXY_0_*) is routed");
                continue;
            }
            Key::Deployment => {
                report(
                    k,
                    "blue/green (zdd) deployment labels are not supported: each app is routed as its own service",
                );
                continue;
            }
            Key::Unknown => {
                report(k, "not a marathon-lb label; ignored");
                continue;
            }
        };
        match rule(name) {
            Rule::Copy(lb) => {
                if v.is_empty() {
                    continue;
                }
                vhost_given |= lb == "lb_vhost";
                if has_control(v) {
                    report(
                        k,
                        "the value holds control characters: the app is not routed from its labels",
                    );
                    withheld = true;
                    continue;
                }
                if lb == "lb_path" && v.trim().contains(char::is_whitespace) {
                    report(
                        k,
                        "several paths or path_beg flags are not supported: lbconf takes one path prefix",
                    );
                }
                from_labels.insert(lb, v.clone());
            }
            Rule::Flag(lb, value) => {
                if truthy(v) {
                    from_labels.insert(lb, value.into());
                }
            }
            Rule::Tls => {
                if !v.is_empty() {
                    from_labels.insert("lb_tls", "true".into());
                    report(k, CERT_IGNORED);
                }
            }
            Rule::Enabled => enabled = truthy(v),
            Rule::Restricts(why) => {
                report(k, why);
                withheld = true;
            }
            Rule::Unsupported(why) => report(k, why),
        }
    }
    let mut out = meta.clone();
    if any && enabled && !withheld {
        for (k, v) in from_labels {
            out.entry(k.to_string()).or_insert(v);
        }
        if meta.contains_key(APP_ID_META) {
            // marathon-lb binds every app's service port, unless HAPROXY_0_PORT moves it.
            if !out.contains_key("lb_port")
                && let Some(p) = meta
                    .get(SERVICE_PORT_META)
                    .filter(|p| !p.is_empty() && !has_control(p))
            {
                out.insert("lb_port".into(), p.clone());
            }
            // marathon-lb's config(): "http" if a vhost is set, "tcp" if not.
            if !out.contains_key("lb_mode") {
                let http = vhost_given || out.contains_key("lb_vhost");
                out.insert("lb_mode".into(), if http { "http" } else { "tcp" }.into());
            }
        }
    }
    Translation {
        meta: out,
        unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A Marathon app's task as taskrun registers it, with these labels.
    fn app(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m = meta(&[("marathon-app-id", "/shop/web"), ("service_port", "10001")]);
        m.extend(meta(labels));
        m
    }

    /// Labels (on a Marathon app unless `app` is false), the `lb_*` meta expected, the labels
    /// expected reported unsupported.
    type Case<'a> = (
        bool,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
    );

    #[test]
    fn labels_become_lb_meta() {
        let tcp: &[(&str, &str)] = &[("lb_mode", "tcp"), ("lb_port", "10001")];
        let cases: &[Case] = &[
            // No marathon-lb label: nothing to do, even for an app.
            (true, &[], &[], &[]),
            (true, &[("SERVICE_TAGS", "v1")], &[], &[]),
            // A group alone: marathon-lb binds the service port in tcp mode.
            (true, &[("HAPROXY_GROUP", "external")], tcp, &[]),
            (true, &[("HAPROXY_0_GROUP", "external")], tcp, &[]),
            (
                true,
                &[("HAPROXY_0_VHOST", "Shop.test,www.shop.test")],
                &[
                    ("lb_mode", "http"),
                    ("lb_port", "10001"),
                    ("lb_vhost", "Shop.test,www.shop.test"),
                ],
                &[],
            ),
            (
                true,
                &[
                    ("HAPROXY_0_VHOST", "shop.test"),
                    ("HAPROXY_0_PATH", "/api"),
                    ("HAPROXY_0_BALANCE", "leastconn"),
                    ("HAPROXY_0_STICKY", "T"),
                    ("HAPROXY_0_REDIRECT_TO_HTTPS", "yes"),
                    ("HAPROXY_0_BIND_ADDR", "10.0.0.42"),
                ],
                &[
                    ("lb_balance", "leastconn"),
                    ("lb_bind_addr", "10.0.0.42"),
                    ("lb_mode", "http"),
                    ("lb_path", "/api"),
                    ("lb_port", "10001"),
                    ("lb_redirect_https", "true"),
                    ("lb_sticky", "true"),
                    ("lb_vhost", "shop.test"),
                ],
                &[],
            ),
            // Only marathon-lb's truthy spellings, untrimmed.
            (
                true,
                &[
                    ("HAPROXY_0_STICKY", " true"),
                    ("HAPROXY_0_REDIRECT_TO_HTTPS", "1"),
                ],
                tcp,
                &[],
            ),
            (
                true,
                &[
                    ("HAPROXY_0_STICKY", "false"),
                    ("HAPROXY_0_REDIRECT_TO_HTTPS", "Y"),
                ],
                &[
                    ("lb_mode", "tcp"),
                    ("lb_port", "10001"),
                    ("lb_redirect_https", "true"),
                ],
                &[],
            ),
            // HAPROXY_0_PORT moves the frontend; a mode is copied as given.
            (
                true,
                &[("HAPROXY_0_PORT", "80"), ("HAPROXY_0_MODE", "HTTP")],
                &[("lb_mode", "HTTP"), ("lb_port", "80")],
                &[],
            ),
            // An operator's lb_* meta wins over the labels.
            (
                true,
                &[
                    ("lb_port", "9000"),
                    ("lb_mode", "tcp"),
                    ("HAPROXY_0_PORT", "80"),
                    ("HAPROXY_0_VHOST", "shop.test"),
                ],
                &[
                    ("lb_mode", "tcp"),
                    ("lb_port", "9000"),
                    ("lb_vhost", "shop.test"),
                ],
                &[],
            ),
            // An explicit lb_vhost makes the default mode http.
            (
                true,
                &[("lb_vhost", "shop.test"), ("HAPROXY_GROUP", "external")],
                &[
                    ("lb_mode", "http"),
                    ("lb_port", "10001"),
                    ("lb_vhost", "shop.test"),
                ],
                &[],
            ),
            // An empty vhost is no vhost.
            (true, &[("HAPROXY_0_VHOST", "")], tcp, &[]),
            (
                true,
                &[("HAPROXY_0_SSL_CERT", "/etc/ssl/shop.pem")],
                &[("lb_mode", "tcp"), ("lb_port", "10001"), ("lb_tls", "true")],
                &["HAPROXY_0_SSL_CERT"],
            ),
            (true, &[("HAPROXY_0_SSL_CERT", "")], tcp, &[]),
            // Other ports' labels are reported; port 0 is still bound.
            (
                true,
                &[("HAPROXY_1_VHOST", "admin.test"), ("HAPROXY_12_PORT", "81")],
                tcp,
                &["HAPROXY_12_PORT", "HAPROXY_1_VHOST"],
            ),
            // Template overrides and other unsupported labels are reported, the rest mapped.
            (
                true,
                &[
                    ("HAPROXY_0_VHOST", "shop.test"),
                    ("HAPROXY_0_BACKEND_HEAD", "backend {backend}\n"),
                    ("HAPROXY_0_FRONTEND_HEAD", "x"),
                    ("HAPROXY_0_HTTP_FRONTEND_ACL_WITH_PATH", "x"),
                    ("HAPROXY_0_USERLIST_HEAD", "x"),
                    ("HAPROXY_0_USE_HSTS", "true"),
                    ("HAPROXY_0_BIND_OPTIONS", "ciphers X"),
                    ("HAPROXY_0_BACKEND_WEIGHT", "1"),
                    ("HAPROXY_0_HTTP_BACKEND_REDIR", "/x"),
                    ("HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH", "/x"),
                    ("HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX", "1"),
                ],
                &[
                    ("lb_hsts", "15768000"),
                    ("lb_mode", "http"),
                    ("lb_port", "10001"),
                    ("lb_vhost", "shop.test"),
                ],
                &[
                    "HAPROXY_0_BACKEND_HEAD",
                    "HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX",
                    "HAPROXY_0_BACKEND_WEIGHT",
                    "HAPROXY_0_BIND_OPTIONS",
                    "HAPROXY_0_FRONTEND_HEAD",
                    "HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH",
                    "HAPROXY_0_HTTP_BACKEND_REDIR",
                    "HAPROXY_0_HTTP_FRONTEND_ACL_WITH_PATH",
                    "HAPROXY_0_USERLIST_HEAD",
                ],
            ),
            // Disabled: no lb_* meta from the labels.
            (
                true,
                &[
                    ("HAPROXY_0_ENABLED", "false"),
                    ("HAPROXY_0_VHOST", "shop.test"),
                ],
                &[],
                &[],
            ),
            (true, &[("HAPROXY_0_ENABLED", "")], &[], &[]),
            (true, &[("HAPROXY_0_ENABLED", "Yes")], tcp, &[]),
            // ... but an operator's own lb_* meta stays.
            (
                true,
                &[("HAPROXY_0_ENABLED", "no"), ("lb_vhost", "shop.test")],
                &[("lb_vhost", "shop.test")],
                &[],
            ),
            // Access restrictions lbconf cannot enforce: not routed from the labels.
            (
                true,
                &[
                    ("HAPROXY_0_VHOST", "shop.test"),
                    ("HAPROXY_0_AUTH", "realm:user:hash"),
                ],
                &[],
                &["HAPROXY_0_AUTH"],
            ),
            (
                true,
                &[("HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL", "10.1.40.0/24")],
                &[],
                &["HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL"],
            ),
            // A value with control characters is dropped, and nothing is routed wider.
            (
                true,
                &[
                    ("HAPROXY_0_VHOST", "shop.test"),
                    ("HAPROXY_0_PATH", "/api\n  server x 1.2.3.4:80"),
                ],
                &[],
                &["HAPROXY_0_PATH"],
            ),
            (
                true,
                &[("HAPROXY_0_VHOST", "evil.test\nbind :22")],
                &[],
                &["HAPROXY_0_VHOST"],
            ),
            // Several paths: copied (the model refuses them) and reported.
            (
                true,
                &[
                    ("HAPROXY_0_VHOST", "shop.test"),
                    ("HAPROXY_0_PATH", "-i /a /b"),
                ],
                &[
                    ("lb_mode", "http"),
                    ("lb_path", "-i /a /b"),
                    ("lb_port", "10001"),
                    ("lb_vhost", "shop.test"),
                ],
                &["HAPROXY_0_PATH"],
            ),
            // zdd's labels are reported; each app is routed on its own.
            (
                true,
                &[
                    ("HAPROXY_DEPLOYMENT_GROUP", "shop"),
                    ("HAPROXY_DEPLOYMENT_ALT_PORT", "10002"),
                    ("HAPROXY_APP_ID", "/shop/web"),
                ],
                tcp,
                &[
                    "HAPROXY_APP_ID",
                    "HAPROXY_DEPLOYMENT_ALT_PORT",
                    "HAPROXY_DEPLOYMENT_GROUP",
                ],
            ),
            // Names marathon-lb does not read.
            (
                true,
                &[
                    ("HAPROXY_0_VHOSTS", "shop.test"),
                    ("HAPROXY_00_VHOST", "shop.test"),
                    ("HAPROXY_HEAD", "global"),
                    ("HAPROXY__VHOST", "shop.test"),
                ],
                tcp,
                &[
                    "HAPROXY_00_VHOST",
                    "HAPROXY_0_VHOSTS",
                    "HAPROXY_HEAD",
                    "HAPROXY__VHOST",
                ],
            ),
            // An app without a service port gets no lb_port (the model reports it).
            (
                true,
                &[("service_port", ""), ("HAPROXY_GROUP", "external")],
                &[("lb_mode", "tcp")],
                &[],
            ),
            // Not a Marathon app: the labels are copied, no default is added.
            (
                false,
                &[("HAPROXY_0_VHOST", "shop.test"), ("HAPROXY_GROUP", "x")],
                &[("lb_vhost", "shop.test")],
                &[],
            ),
            (
                false,
                &[("HAPROXY_0_PORT", "5432")],
                &[("lb_port", "5432")],
                &[],
            ),
        ];
        for (n, (is_app, labels, want_lb, want_unsupported)) in cases.iter().enumerate() {
            let input = if *is_app { app(labels) } else { meta(labels) };
            let got = translate(&input);
            let lb: BTreeMap<String, String> = got
                .meta
                .iter()
                .filter(|(k, _)| k.starts_with("lb_"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(lb, meta(want_lb), "case {n}: {labels:?}");
            let names: Vec<&str> = got.unsupported.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, *want_unsupported, "case {n}: {labels:?}");
            // Nothing but lb_* keys is added, and nothing is taken away.
            let rest: BTreeMap<String, String> = got
                .meta
                .into_iter()
                .filter(|(k, _)| !k.starts_with("lb_") || input.contains_key(k))
                .collect();
            assert_eq!(rest, input, "case {n}: {labels:?}");
        }
    }

    #[test]
    fn meta_without_labels_is_unchanged_and_reasons_are_given() {
        let plain = meta(&[("lb_vhost", "shop.test"), ("service_port", "10001")]);
        assert_eq!(
            translate(&plain),
            Translation {
                meta: plain.clone(),
                unsupported: Vec::new(),
            }
        );
        let got = translate(&app(&[
            ("HAPROXY_0_SSL_CERT", "/etc/ssl/shop.pem"),
            ("HAPROXY_0_BACKEND_HEAD", "backend x"),
        ]));
        assert_eq!(
            got.unsupported,
            [
                (
                    "HAPROXY_0_BACKEND_HEAD".to_string(),
                    "raw HAProxy template overrides are not supported".to_string()
                ),
                ("HAPROXY_0_SSL_CERT".into(), CERT_IGNORED.into()),
            ]
        );
        assert_eq!(
            CERT_IGNORED,
            "the certificate path is ignored: lbconf serves the certificates in --tls-certs"
        );
    }

    #[test]
    fn groups_select_as_marathon_lb() {
        // Flag values, meta (an app's unless told), selected.
        type Case<'a> = (&'a [&'a str], bool, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            // No --group: everything.
            (&[], true, &[], true),
            (&[], true, &[("HAPROXY_GROUP", "internal")], true),
            (&[], false, &[], true),
            // A group: the app's label must name it.
            (&["external"], true, &[("HAPROXY_GROUP", "external")], true),
            (&["external"], true, &[("HAPROXY_GROUP", "internal")], false),
            (
                &["external"],
                true,
                &[("HAPROXY_GROUP", "internal,external")],
                true,
            ),
            // Not trimmed, as in marathon-lb.
            (
                &["external"],
                true,
                &[("HAPROXY_GROUP", "internal, external")],
                false,
            ),
            (&["external"], true, &[], false),
            (&["external"], false, &[], false),
            (&["external"], false, &[("HAPROXY_GROUP", "external")], true),
            // Several groups, by repeating the flag or with commas.
            (
                &["internal", "external"],
                true,
                &[("HAPROXY_GROUP", "external")],
                true,
            ),
            (
                &["internal,external"],
                true,
                &[("HAPROXY_GROUP", "external")],
                true,
            ),
            (
                &["internal,external"],
                true,
                &[("HAPROXY_GROUP", "other")],
                false,
            ),
            // `*` on the load balancer serves all, with or without a group.
            (&["*"], true, &[], true),
            (&["*"], false, &[], true),
            (
                &["external,*"],
                true,
                &[("HAPROXY_GROUP", "internal")],
                true,
            ),
            // `*` on an app is no wildcard.
            (&["external"], true, &[("HAPROXY_GROUP", "*")], false),
            // The first port's group replaces the app's, even when empty.
            (
                &["external"],
                true,
                &[
                    ("HAPROXY_GROUP", "internal"),
                    ("HAPROXY_0_GROUP", "external"),
                ],
                true,
            ),
            (
                &["internal"],
                true,
                &[
                    ("HAPROXY_GROUP", "internal"),
                    ("HAPROXY_0_GROUP", "external"),
                ],
                false,
            ),
            (
                &["external"],
                true,
                &[("HAPROXY_GROUP", "external"), ("HAPROXY_0_GROUP", "")],
                false,
            ),
            // Other ports' groups do not matter to port 0.
            (
                &["external"],
                true,
                &[("HAPROXY_1_GROUP", "external")],
                false,
            ),
            // A deployment group is not a HAProxy group.
            (
                &["external"],
                true,
                &[("HAPROXY_DEPLOYMENT_GROUP", "external")],
                false,
            ),
        ];
        for (flags, is_app, labels, want) in cases {
            let values: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            let m = if *is_app { app(labels) } else { meta(labels) };
            assert_eq!(
                Groups::new(&values).selects(&m),
                *want,
                "--group {flags:?}, app {is_app}, {labels:?}"
            );
        }
    }
}
