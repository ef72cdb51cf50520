//! Consul's prepared queries, shared by catalogd (`/v1/query/*`) and dnsbridge
//! (`<query>.query.<domain>`), so both resolve and execute a query the same way.
//!
//! A query names a service and how to pick its instances (tags, metadata, health, a node to
//! sort near, a limit). It is found by ID, by exact name, or by the longest name prefix among
//! templates, whose service fields are rendered from the name asked for (`${name.suffix}`,
//! `${match(1)}`, ...). Execution filters and orders instances the way Consul does; there is one
//! datacenter, so a query never fails over.

use std::collections::BTreeMap;

use cairn_wire::{CheckStatus, ServiceEntry, StringMap, parse_go_duration};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only template type Consul has.
pub const NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// `Template` of a query.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryTemplate {
    #[serde(rename = "Type")]
    pub kind: String,
    pub regexp: String,
    pub remove_empty_tags: bool,
}

/// `Service.Failover` of a query.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryFailover {
    #[serde(rename = "NearestN")]
    pub nearest_n: i64,
    pub datacenters: Option<Vec<String>>,
    pub targets: Option<Vec<Value>>,
}

/// `Service` of a query: what to look up and how to filter it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceQuery {
    pub service: String,
    pub sameness_group: String,
    pub failover: QueryFailover,
    pub only_passing: bool,
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: Option<Vec<String>>,
    pub near: String,
    pub tags: Option<Vec<String>>,
    pub node_meta: Option<StringMap>,
    pub service_meta: Option<StringMap>,
    pub connect: bool,
    pub peer: String,
}

/// `DNS` of a query.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryDns {
    #[serde(rename = "TTL")]
    pub ttl: String,
}

/// A prepared query as Consul stores and returns it (every field, none omitted).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PreparedQuery {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub session: String,
    pub token: String,
    pub template: QueryTemplate,
    pub service: ServiceQuery,
    #[serde(rename = "DNS")]
    pub dns: QueryDns,
    pub create_index: u64,
    pub modify_index: u64,
}

impl PreparedQuery {
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }

    /// The DNS TTL the query asks for (0 when none or unparsable, as Consul logs and ignores).
    pub fn dns_ttl(&self) -> std::time::Duration {
        parse_go_duration(&self.dns.ttl).unwrap_or_default()
    }
}

/// Consul's `parseQuery` checks (the texts, after `Invalid prepared query: `).
pub fn validate(q: &PreparedQuery) -> Result<(), String> {
    let bad = |why: String| Err(format!("Invalid prepared query: {why}"));
    if q.name.is_empty() && q.template.kind.is_empty() && q.session.is_empty() {
        return bad("Must be bound to a session".into());
    }
    if q.token == "<hidden>" {
        return bad(
            "Bad Token '<hidden>', it looks like a query definition with a redacted token was submitted"
                .into(),
        );
    }
    if q.service.service.is_empty() {
        return bad("Must provide a Service name to query".into());
    }
    let f = &q.service.failover;
    if f.nearest_n < 0 {
        return bad(format!("Bad NearestN '{}', must be >= 0", f.nearest_n));
    }
    if f.targets.as_ref().is_some_and(|t| !t.is_empty())
        && (f.nearest_n != 0 || f.datacenters.as_ref().is_some_and(|d| !d.is_empty()))
    {
        return bad("Targets cannot be populated with NearestN or Datacenters".into());
    }
    if !q.dns.ttl.is_empty() {
        let ttl = q.dns.ttl.trim();
        if ttl.starts_with('-') {
            return bad(format!("DNS TTL '{ttl}', must be >=0"));
        }
        if parse_go_duration(ttl).is_err() {
            return bad(format!(
                "Bad DNS TTL '{ttl}': time: invalid duration {ttl:?}"
            ));
        }
    }
    Ok(())
}

/// Checks a template compiles, and that it renders for its own name (Consul's test render).
pub fn compile_template(q: &PreparedQuery) -> Result<(), String> {
    if !q.is_template() {
        return Ok(());
    }
    if q.template.kind != NAME_PREFIX_MATCH {
        return Err(format!(
            "failed compiling template: Bad Template.Type '{}'",
            q.template.kind
        ));
    }
    if !q.template.regexp.is_empty() {
        regex::Regex::new(&q.template.regexp)
            .map_err(|e| format!("failed compiling template: Bad Regexp: {e}"))?;
    }
    render(q, &q.name)
        .map(drop)
        .map_err(|e| format!("failed compiling template: {e}"))
}

/// Fills a template's service fields for the name asked for.
pub fn render(q: &PreparedQuery, full: &str) -> Result<PreparedQuery, String> {
    if !q.is_template() {
        return Ok(q.clone());
    }
    let suffix = full
        .get(q.name.len()..)
        .filter(|_| full.to_lowercase().starts_with(&q.name.to_lowercase()))
        .unwrap_or_default()
        .to_string();
    let captures: Vec<String> = if q.template.regexp.is_empty() {
        Vec::new()
    } else {
        let re = regex::Regex::new(&q.template.regexp).map_err(|e| format!("Bad Regexp: {e}"))?;
        re.captures(full)
            .map(|c| {
                c.iter()
                    .map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    };
    let vars = Vars {
        full,
        prefix: &q.name,
        suffix: &suffix,
        captures: &captures,
    };
    let mut out = q.clone();
    let s = &mut out.service;
    s.service = vars.interpolate(&s.service, ".Service")?;
    s.near = vars.interpolate(&s.near, ".Near")?;
    s.peer = vars.interpolate(&s.peer, ".Peer")?;
    if let Some(tags) = &mut s.tags {
        for (i, t) in tags.iter_mut().enumerate() {
            *t = vars.interpolate(t, &format!(".Tags[{i}]"))?;
        }
        if q.template.remove_empty_tags {
            tags.retain(|t| !t.is_empty());
        }
    }
    for (map, field) in [
        (&mut s.node_meta, "NodeMeta"),
        (&mut s.service_meta, "ServiceMeta"),
    ] {
        if let Some(m) = map {
            for (k, v) in m.iter_mut() {
                *v = vars.interpolate(v, &format!(".{field}[{k}]"))?;
            }
        }
    }
    Ok(out)
}

/// The variables a template's fields may use.
struct Vars<'a> {
    full: &'a str,
    prefix: &'a str,
    suffix: &'a str,
    captures: &'a [String],
}

impl Vars<'_> {
    /// Replaces `${...}` expressions (Consul's HIL subset for queries: `name.full`,
    /// `name.prefix`, `name.suffix`, `agent.segment`, `match(N)`).
    fn interpolate(&self, text: &str, path: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("Bad format '{text}' in Service{path}: unclosed ${{"))?;
            let expr = after[..end].trim();
            out.push_str(&self.value(expr).ok_or_else(|| {
                format!("Bad evaluation for '{text}' in Service{path}: unknown variable {expr:?}")
            })?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn value(&self, expr: &str) -> Option<String> {
        match expr {
            "name.full" => Some(self.full.to_string()),
            "name.prefix" => Some(self.prefix.to_string()),
            "name.suffix" => Some(self.suffix.to_string()),
            "agent.segment" => Some(String::new()),
            _ => {
                let n: usize = expr
                    .strip_prefix("match(")?
                    .strip_suffix(')')?
                    .trim()
                    .parse()
                    .ok()?;
                Some(self.captures.get(n).cloned().unwrap_or_default())
            }
        }
    }
}

/// Why a query could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResolveError {
    #[error("Query not found")]
    NotFound,
    #[error("prepared query templates can only be resolved up by name, not by ID")]
    TemplateById,
    #[error("{0}")]
    Render(String),
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Finds the query `id_or_name` names, as Consul does: by ID, then by exact name (any case),
/// then by the longest template name that prefixes it; a template comes back rendered.
pub fn resolve<'a>(
    queries: impl IntoIterator<Item = &'a PreparedQuery> + Clone,
    id_or_name: &str,
) -> Result<PreparedQuery, ResolveError> {
    if id_or_name.is_empty() {
        return Err(ResolveError::NotFound);
    }
    if looks_like_uuid(id_or_name)
        && let Some(q) = queries.clone().into_iter().find(|q| q.id == id_or_name)
    {
        if q.is_template() {
            return Err(ResolveError::TemplateById);
        }
        return Ok(q.clone());
    }
    let wanted = id_or_name.to_lowercase();
    if let Some(q) = queries
        .clone()
        .into_iter()
        .find(|q| !q.name.is_empty() && q.name.to_lowercase() == wanted)
    {
        return render(q, id_or_name).map_err(ResolveError::Render);
    }
    let best = queries
        .into_iter()
        .filter(|q| q.is_template() && wanted.starts_with(&q.name.to_lowercase()))
        .max_by_key(|q| q.name.len())
        .ok_or(ResolveError::NotFound)?;
    render(best, id_or_name).map_err(ResolveError::Render)
}

/// Where results are sorted towards: a node name, this agent's node (`_agent`), or the node
/// whose address is the caller's (`_ip`).
pub struct Near<'a> {
    pub name: &'a str,
    pub agent_node: &'a str,
    pub source_ip: Option<&'a str>,
}

/// Whether an instance survives the query's health rule: any critical check drops it; with
/// `OnlyPassing`, anything but passing does. Ignored check IDs do not count.
fn healthy(q: &ServiceQuery, e: &ServiceEntry) -> bool {
    let ignored = q.ignore_check_ids.as_deref().unwrap_or_default();
    e.checks
        .iter()
        .filter(|c| !ignored.contains(&c.check_id))
        .all(|c| match c.status {
            CheckStatus::Passing => true,
            CheckStatus::Warning => !q.only_passing,
            _ => false,
        })
}

/// Tags of the query: all required (any case); `!tag` forbids one.
fn tags_match(wanted: &[String], have: &[String]) -> bool {
    wanted.iter().all(|t| {
        let (negate, t) = match t.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, t.as_str()),
        };
        let present = have.iter().any(|h| h.eq_ignore_ascii_case(t));
        present != negate
    })
}

fn meta_match(wanted: &Option<StringMap>, have: &BTreeMap<String, String>) -> bool {
    wanted.iter().flatten().all(|(k, v)| have.get(k) == Some(v))
}

/// Picks and orders a rendered query's instances among `instances` (the service's, or its
/// mesh-capable ones for a connect query): filtered by health, tags and metadata, shuffled,
/// the `near` node moved to the front, cut at `limit`.
pub fn execute(
    q: &PreparedQuery,
    instances: Vec<ServiceEntry>,
    near: &Near<'_>,
    limit: Option<usize>,
) -> Vec<ServiceEntry> {
    let s = &q.service;
    let mut out: Vec<ServiceEntry> = instances
        .into_iter()
        .filter(|e| healthy(s, e))
        .filter(|e| meta_match(&s.node_meta, &e.node.meta))
        .filter(|e| meta_match(&s.service_meta, &e.service.meta))
        .filter(|e| tags_match(s.tags.as_deref().unwrap_or_default(), &e.service.tags))
        .collect();
    out.shuffle(&mut rand::rng());
    let target = match near.name {
        "" => None,
        "_agent" => Some(near.agent_node.to_string()),
        "_ip" => near.source_ip.and_then(|ip| {
            out.iter()
                .find(|e| e.node.address == ip)
                .map(|e| e.node.node.clone())
        }),
        name => Some(name.to_string()),
    };
    // Consul looks for the near node among the first ten results only.
    if let Some(t) = target
        && let Some(pos) = out
            .iter()
            .take(10)
            .position(|e| e.node.node.eq_ignore_ascii_case(&t))
    {
        out.swap(0, pos);
    }
    if let Some(n) = limit.filter(|n| *n > 0) {
        out.truncate(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wire::{HealthCheck, Node, NodeService};

    fn query(name: &str, service: &str) -> PreparedQuery {
        PreparedQuery {
            id: format!("{:0>8}-0000-0000-0000-000000000000", name.len()),
            name: name.into(),
            service: ServiceQuery {
                service: service.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn entry(node: &str, addr: &str, tags: &[&str], status: CheckStatus) -> ServiceEntry {
        ServiceEntry {
            node: Node {
                node: node.into(),
                address: addr.into(),
                ..Default::default()
            },
            service: NodeService {
                id: format!("web-{node}"),
                service: "web".into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            },
            checks: vec![HealthCheck {
                check_id: "c".into(),
                status,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn validation_uses_consuls_texts() {
        let cases = [
            (PreparedQuery::default(), "Must be bound to a session"),
            (query("q", ""), "Must provide a Service name to query"),
        ];
        for (q, want) in cases {
            assert_eq!(validate(&q), Err(format!("Invalid prepared query: {want}")));
        }
        let mut ttl = query("q", "web");
        ttl.dns.ttl = "soon".into();
        assert_eq!(
            validate(&ttl),
            Err(
                "Invalid prepared query: Bad DNS TTL 'soon': time: invalid duration \"soon\""
                    .into()
            )
        );
        assert_eq!(validate(&query("q", "web")), Ok(()));
    }

    #[test]
    fn resolution_by_id_name_and_longest_template_prefix() {
        let exact = query("web-prod", "web");
        let mut geo = query("geo-", "${name.suffix}");
        geo.template.kind = NAME_PREFIX_MATCH.into();
        let mut geo_db = query("geo-db-", "db-${match(1)}");
        geo_db.template = QueryTemplate {
            kind: NAME_PREFIX_MATCH.into(),
            regexp: "^geo-db-(.*)$".into(),
            remove_empty_tags: false,
        };
        let all = [exact.clone(), geo.clone(), geo_db.clone()];
        assert_eq!(resolve(&all, &exact.id).unwrap().name, "web-prod");
        assert_eq!(resolve(&all, "WEB-PROD").unwrap().service.service, "web");
        assert_eq!(resolve(&all, "geo-cache").unwrap().service.service, "cache");
        assert_eq!(
            resolve(&all, "geo-db-east").unwrap().service.service,
            "db-east"
        );
        assert_eq!(resolve(&all, "other"), Err(ResolveError::NotFound));
        assert_eq!(resolve(&all, &geo.id), Err(ResolveError::TemplateById));
    }

    #[test]
    fn execution_filters_health_tags_and_moves_the_near_node_first() {
        let mut q = query("q", "web");
        let instances = vec![
            entry("a", "10.0.0.1", &["prod"], CheckStatus::Passing),
            entry("b", "10.0.0.2", &["prod"], CheckStatus::Warning),
            entry("c", "10.0.0.3", &["prod", "canary"], CheckStatus::Critical),
            entry("d", "10.0.0.4", &["dev"], CheckStatus::Passing),
        ];
        let near = |name| Near {
            name,
            agent_node: "b",
            source_ip: Some("10.0.0.4"),
        };
        let nodes = |v: Vec<ServiceEntry>| {
            let mut n: Vec<String> = v.into_iter().map(|e| e.node.node).collect();
            n.sort();
            n
        };
        assert_eq!(
            nodes(execute(&q, instances.clone(), &near(""), None)),
            ["a", "b", "d"]
        );
        q.service.only_passing = true;
        assert_eq!(
            nodes(execute(&q, instances.clone(), &near(""), None)),
            ["a", "d"]
        );
        q.service.only_passing = false;
        q.service.tags = Some(vec!["PROD".into(), "!canary".into()]);
        assert_eq!(
            nodes(execute(&q, instances.clone(), &near(""), None)),
            ["a", "b"]
        );
        q.service.tags = None;
        for _ in 0..10 {
            assert_eq!(
                execute(&q, instances.clone(), &near("_agent"), None)[0]
                    .node
                    .node,
                "b"
            );
            assert_eq!(
                execute(&q, instances.clone(), &near("_ip"), None)[0]
                    .node
                    .node,
                "d"
            );
            assert_eq!(execute(&q, instances.clone(), &near("a"), Some(1)).len(), 1);
        }
    }
}
