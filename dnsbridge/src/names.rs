//! Consul's DNS name grammar, relative to the bridge's domain: what a query name asks for.
//!
//! `[tag.]<svc>.service[.<dc>]`, RFC 2782 `_<svc>._<tag|tcp|udp>.service[.<dc>]`,
//! `<node>.node[.<dc>]`, prepared queries `<query>.query[.<dc>]` (RFC 2782
//! `_<query>._tcp.query[.<dc>]`), and the domain apex itself. Names are compared in lowercase.

/// What a name under the domain asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The domain itself (SOA, NS).
    Apex,
    /// `ns.<domain>`, the name server the SOA and NS records name.
    NameServer,
    Service {
        name: String,
        tag: Option<String>,
    },
    Node {
        name: String,
    },
    /// A prepared query by name or ID (labels before `query`, joined by dots).
    Query {
        name: String,
    },
    /// Under the domain but no such form (or another datacenter): NXDOMAIN.
    Unknown,
}

/// Parses `labels` (lowercase, leftmost first) that are known to end with `domain` (lowercase
/// labels). Returns None when the name is not under the domain at all.
pub fn parse(labels: &[String], domain: &[String], datacenter: &str) -> Option<Lookup> {
    if labels.len() < domain.len() || labels[labels.len() - domain.len()..] != *domain {
        return None;
    }
    let rest = &labels[..labels.len() - domain.len()];
    if rest.is_empty() {
        return Some(Lookup::Apex);
    }
    if rest.len() == 1 && rest[0] == "ns" {
        return Some(Lookup::NameServer);
    }
    // Optional datacenter label after `service` / `node`.
    let (kind_at, dc) = match rest.last().map(String::as_str) {
        Some("service" | "node" | "query") => (rest.len() - 1, None),
        _ if rest.len() >= 2
            && matches!(rest[rest.len() - 2].as_str(), "service" | "node" | "query") =>
        {
            (rest.len() - 2, rest.last())
        }
        _ => return Some(Lookup::Unknown),
    };
    if dc.is_some_and(|dc| dc != datacenter) {
        return Some(Lookup::Unknown);
    }
    let head = &rest[..kind_at];
    if rest[kind_at] == "query" {
        return Some(match head {
            [] => Lookup::Unknown,
            // RFC 2782: _<query>._tcp
            [first, .., last] if first.starts_with('_') && last.starts_with('_') => Lookup::Query {
                name: head[..head.len() - 1].join(".")[1..].to_string(),
            },
            _ => Lookup::Query {
                name: head.join("."),
            },
        });
    }
    Some(match (rest[kind_at].as_str(), head) {
        ("node", [node]) => Lookup::Node { name: node.clone() },
        ("service", [svc]) => Lookup::Service {
            name: svc.clone(),
            tag: None,
        },
        ("service", [first, second]) => match (first.strip_prefix('_'), second.strip_prefix('_')) {
            // RFC 2782: _<service>._<protocol or tag>
            (Some(svc), Some(proto)) => Lookup::Service {
                name: svc.to_string(),
                tag: (!matches!(proto, "tcp" | "udp")).then(|| proto.to_string()),
            },
            _ => Lookup::Service {
                name: second.clone(),
                tag: Some(first.clone()),
            },
        },
        _ => Lookup::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> Vec<String> {
        s.trim_end_matches('.')
            .split('.')
            .map(str::to_string)
            .collect()
    }

    fn p(s: &str) -> Option<Lookup> {
        parse(&labels(s), &labels("consul."), "dc1")
    }

    fn svc(name: &str, tag: Option<&str>) -> Option<Lookup> {
        Some(Lookup::Service {
            name: name.into(),
            tag: tag.map(str::to_string),
        })
    }

    #[test]
    fn every_name_form() {
        assert_eq!(p("web.service.consul."), svc("web", None));
        assert_eq!(p("web.service.dc1.consul."), svc("web", None));
        assert_eq!(p("prod.web.service.consul."), svc("web", Some("prod")));
        assert_eq!(p("_web._tcp.service.consul."), svc("web", None));
        assert_eq!(p("_web._udp.service.dc1.consul."), svc("web", None));
        assert_eq!(p("_web._prod.service.consul."), svc("web", Some("prod")));
        assert_eq!(
            p("n1.node.consul."),
            Some(Lookup::Node { name: "n1".into() })
        );
        assert_eq!(
            p("n1.node.dc1.consul."),
            Some(Lookup::Node { name: "n1".into() })
        );
        assert_eq!(p("consul."), Some(Lookup::Apex));
        assert_eq!(
            p("NS.consul.".to_ascii_lowercase().as_str()),
            Some(Lookup::NameServer)
        );
        let query = |name: &str| Some(Lookup::Query { name: name.into() });
        assert_eq!(p("webq.query.consul."), query("webq"));
        assert_eq!(p("geo-db.east.query.dc1.consul."), query("geo-db.east"));
        assert_eq!(p("_webq._tcp.query.consul."), query("webq"));
        assert_eq!(p("query.consul."), Some(Lookup::Unknown));
        assert_eq!(p("webq.query.dc2.consul."), Some(Lookup::Unknown));
        assert_eq!(p("web.service.dc2.consul."), Some(Lookup::Unknown));
        assert_eq!(p("a.b.web.service.consul."), Some(Lookup::Unknown));
        assert_eq!(p("web.consul."), Some(Lookup::Unknown));
        assert_eq!(p("example.com."), None);
        assert_eq!(p("notconsul."), None);
    }
}
