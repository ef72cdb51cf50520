//! Discovery chains (`/v1/discovery-chain/:service`): how a mesh client reaches a service,
//! compiled from the service-router, service-splitter and service-resolver config entries the
//! way Consul's compiler lays them out (start node, router/splitter/resolver nodes, targets with
//! their SNI). Without any of those entries the chain is Consul's default: one resolver, one
//! target, a 5 s connect timeout.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::config_entries::{is_http_like, service_protocol};

/// What a caller may override (`POST` body).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub protocol: String,
    pub connect_timeout: Option<String>,
    pub mesh_gateway_mode: String,
}

/// Where the chain is compiled for.
pub struct Context<'a> {
    pub datacenter: &'a str,
    /// `<cluster id>.consul`.
    pub trust_domain: &'a str,
}

/// Why a chain cannot be compiled.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChainError {
    #[error("detected circular resolver redirect: [{0}]")]
    CircularRedirect(String),
    #[error("service {0:?} does not have a subset named {1:?}")]
    UnknownSubset(String, String),
    #[error("detected circular reference: [{0}]")]
    CircularSplit(String),
}

const DEFAULT_CONNECT_TIMEOUT: &str = "5s";

struct Compiler<'a, F: Fn(&str, &str) -> Option<Value>> {
    entry: &'a F,
    ctx: &'a Context<'a>,
    overrides: &'a Overrides,
    nodes: Map<String, Value>,
    targets: Map<String, Value>,
    /// Whether any discovery-chain entry shaped the chain.
    customized: bool,
    /// Splitters being expanded (a split back into one of them is a cycle).
    splitting: Vec<String>,
}

fn target_id(subset: &str, service: &str, dc: &str) -> String {
    if subset.is_empty() {
        format!("{service}.default.default.{dc}")
    } else {
        format!("{subset}.{service}.default.default.{dc}")
    }
}

impl<F: Fn(&str, &str) -> Option<Value>> Compiler<'_, F> {
    fn mesh_gateway(&self, service: &str) -> Value {
        if !self.overrides.mesh_gateway_mode.is_empty() {
            return json!({"Mode": self.overrides.mesh_gateway_mode});
        }
        let mode = (self.entry)("service-defaults", service)
            .and_then(|e| e["MeshGateway"]["Mode"].as_str().map(str::to_string))
            .filter(|m| !m.is_empty())
            .or_else(|| {
                (self.entry)("proxy-defaults", "global")
                    .and_then(|e| e["MeshGateway"]["Mode"].as_str().map(str::to_string))
                    .filter(|m| !m.is_empty())
            });
        match mode {
            Some(m) => json!({"Mode": m}),
            None => json!({}),
        }
    }

    /// The resolver node (and its target) for `service`/`subset`, following redirects.
    fn resolver(
        &mut self,
        service: &str,
        subset: &str,
        seen: &mut Vec<String>,
    ) -> Result<String, ChainError> {
        if seen.iter().any(|s| s == service) {
            seen.push(service.to_string());
            return Err(ChainError::CircularRedirect(seen.join(" -> ")));
        }
        seen.push(service.to_string());
        let resolver = (self.entry)("service-resolver", service);
        if let Some(r) = &resolver {
            self.customized = true;
            if let Some(to) = r["Redirect"]["Service"].as_str().filter(|s| !s.is_empty()) {
                let to_subset = r["Redirect"]["ServiceSubset"].as_str().unwrap_or_default();
                return self.resolver(to, to_subset, seen);
            }
        }
        let subset = if subset.is_empty() {
            resolver
                .as_ref()
                .and_then(|r| r["DefaultSubset"].as_str())
                .unwrap_or_default()
        } else {
            subset
        };
        let subset_def = if subset.is_empty() {
            json!({})
        } else {
            match resolver.as_ref().and_then(|r| r["Subsets"].get(subset)) {
                Some(def) => def.clone(),
                None => {
                    return Err(ChainError::UnknownSubset(
                        service.to_string(),
                        subset.to_string(),
                    ));
                }
            }
        };
        let timeout = self
            .overrides
            .connect_timeout
            .clone()
            .or_else(|| {
                resolver
                    .as_ref()
                    .and_then(|r| r["ConnectTimeout"].as_str().map(str::to_string))
            })
            .unwrap_or_else(|| DEFAULT_CONNECT_TIMEOUT.to_string());
        let dc = self.ctx.datacenter;
        let id = target_id(subset, service, dc);
        let sni = if subset.is_empty() {
            format!("{service}.default.{dc}.internal.{}", self.ctx.trust_domain)
        } else {
            format!(
                "{subset}.{service}.default.{dc}.internal.{}",
                self.ctx.trust_domain
            )
        };
        let mut target = json!({
            "ID": id,
            "Service": service,
            "Namespace": "default",
            "Partition": "default",
            "Datacenter": dc,
            "MeshGateway": self.mesh_gateway(service),
            "Subset": subset_def,
            "TransparentProxy": {},
            "ConnectTimeout": timeout,
            "SNI": sni,
            "Name": sni,
        });
        if !subset.is_empty() {
            target["ServiceSubset"] = json!(subset);
        }
        self.targets.insert(id.clone(), target);
        let node_name = format!("resolver:{id}");
        let mut resolver_node = json!({"ConnectTimeout": timeout, "Target": id});
        if resolver.is_none() {
            resolver_node["Default"] = json!(true);
        }
        self.nodes.insert(
            node_name.clone(),
            json!({"Type": "resolver", "Name": id, "Resolver": resolver_node}),
        );
        Ok(node_name)
    }

    /// The node a request for `service` (and `subset`) goes to next: its splitter if it has one
    /// (L7 only), else its resolver.
    fn next_for(&mut self, service: &str, subset: &str, l7: bool) -> Result<String, ChainError> {
        if l7
            && subset.is_empty()
            && let Some(splitter) = (self.entry)("service-splitter", service)
        {
            if self.splitting.iter().any(|s| s == service) {
                self.splitting.push(service.to_string());
                return Err(ChainError::CircularSplit(self.splitting.join(" -> ")));
            }
            self.splitting.push(service.to_string());
            self.customized = true;
            let mut splits = Vec::new();
            for s in splitter["Splits"].as_array().into_iter().flatten() {
                let svc = s["Service"]
                    .as_str()
                    .filter(|x| !x.is_empty())
                    .unwrap_or(service);
                let sub = s["ServiceSubset"].as_str().unwrap_or_default();
                // A split back to the same service goes straight to its resolver.
                let next = if svc == service {
                    self.resolver(svc, sub, &mut Vec::new())?
                } else {
                    self.next_for(svc, sub, l7)?
                };
                splits.push(json!({"Weight": s["Weight"], "NextNode": next}));
            }
            self.splitting.pop();
            let name = format!("splitter:{service}.default.default");
            self.nodes.insert(
                name.clone(),
                json!({"Type": "splitter", "Name": format!("{service}.default.default"),
                    "Splits": splits}),
            );
            return Ok(name);
        }
        self.resolver(service, subset, &mut Vec::new())
    }
}

/// Compiles the chain of `service`. `entry(kind, name)` reads a config entry.
pub fn compile(
    service: &str,
    entry: impl Fn(&str, &str) -> Option<Value>,
    ctx: &Context<'_>,
    overrides: &Overrides,
) -> Result<Value, ChainError> {
    let compiled_protocol = service_protocol(&entry, service);
    let protocol = if overrides.protocol.is_empty() {
        compiled_protocol.clone()
    } else {
        overrides.protocol.to_lowercase()
    };
    let l7 = is_http_like(&protocol);
    let mut c = Compiler {
        entry: &entry,
        ctx,
        overrides,
        nodes: Map::new(),
        targets: Map::new(),
        customized: false,
        splitting: Vec::new(),
    };
    let start = match (l7, entry("service-router", service)) {
        (true, Some(router)) => {
            c.customized = true;
            let mut routes = Vec::new();
            for r in router["Routes"].as_array().into_iter().flatten() {
                let dest = &r["Destination"];
                let svc = dest["Service"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or(service);
                let sub = dest["ServiceSubset"].as_str().unwrap_or_default();
                let next = c.next_for(svc, sub, l7)?;
                routes.push(json!({"Definition": r, "NextNode": next}));
            }
            // Every router ends in a catch-all route to the service itself.
            let fallback = c.next_for(service, "", l7)?;
            routes.push(json!({
                "Definition": {"Match": {"HTTP": {"PathPrefix": "/"}},
                    "Destination": {"Service": service}},
                "NextNode": fallback,
            }));
            let name = format!("router:{service}.default.default");
            c.nodes.insert(
                name.clone(),
                json!({"Type": "router", "Name": format!("{service}.default.default"),
                    "Routes": routes}),
            );
            name
        }
        _ => c.next_for(service, "", l7)?,
    };
    let mut chain = json!({
        "ServiceName": service,
        "Namespace": "default",
        "Partition": "default",
        "Datacenter": ctx.datacenter,
    });
    let overridden = (!overrides.protocol.is_empty() && protocol != compiled_protocol)
        || overrides.connect_timeout.is_some()
        || !overrides.mesh_gateway_mode.is_empty();
    if overridden {
        chain["CustomizationHash"] = json!(customization_hash(overrides));
    }
    if !c.customized {
        chain["Default"] = json!(true);
    }
    chain["Protocol"] = json!(protocol);
    if let Some(meta) = entry("service-defaults", service).and_then(|e| e.get("Meta").cloned()) {
        chain["ServiceMeta"] = meta;
    }
    chain["StartNode"] = json!(start);
    chain["Nodes"] = Value::Object(c.nodes);
    chain["Targets"] = Value::Object(c.targets);
    chain["AutoVirtualIPs"] = Value::Null;
    chain["ManualVirtualIPs"] = Value::Null;
    Ok(json!({ "Chain": chain }))
}

/// A short stable hash of the overrides, so clients can tell customized chains apart.
fn customization_hash(o: &Overrides) -> String {
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!(
        "{}|{}|{}",
        o.protocol,
        o.connect_timeout.as_deref().unwrap_or_default(),
        o.mesh_gateway_mode
    );
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")[..8].to_string()
}

/// The services a compiled chain can route to (for tests and callers that only need names).
pub fn target_services(chain: &Value) -> BTreeSet<String> {
    chain["Chain"]["Targets"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, t)| t["Service"].as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context<'static> = Context {
        datacenter: "dc1",
        trust_domain: "11111111-2222-3333-4444-555555555555.consul",
    };

    #[test]
    fn without_entries_the_chain_is_consuls_default() {
        let chain = compile("web", |_, _| None, &CTX, &Overrides::default()).unwrap();
        let c = &chain["Chain"];
        assert_eq!(c["Default"], true);
        assert_eq!(c["Protocol"], "tcp");
        assert_eq!(c["StartNode"], "resolver:web.default.default.dc1");
        let t = &c["Targets"]["web.default.default.dc1"];
        assert_eq!(t["ConnectTimeout"], "5s");
        assert_eq!(
            t["SNI"],
            "web.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul"
        );
        assert!(c.get("CustomizationHash").is_none());
        let http = Overrides {
            protocol: "http".into(),
            ..Default::default()
        };
        let over = compile("web", |_, _| None, &CTX, &http).unwrap();
        assert_eq!(over["Chain"]["Protocol"], "http");
        assert_eq!(over["Chain"]["Default"], true);
        assert_eq!(
            over["Chain"]["CustomizationHash"].as_str().unwrap().len(),
            8
        );
    }

    #[test]
    fn routers_splitters_and_resolvers_shape_the_chain() {
        let entries = |kind: &str, name: &str| -> Option<Value> {
            match (kind, name) {
                ("service-defaults", _) => Some(json!({"Protocol": "http"})),
                ("service-router", "web") => Some(json!({"Routes": [
                    {"Match": {"HTTP": {"PathPrefix": "/admin"}},
                     "Destination": {"Service": "admin"}}]})),
                ("service-splitter", "web") => Some(json!({"Splits": [
                    {"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]})),
                ("service-resolver", "web") => Some(json!({"ConnectTimeout": "2s",
                    "Subsets": {"v1": {"Filter": "Service.Meta.v == 1"},
                                "v2": {"Filter": "Service.Meta.v == 2"}}})),
                ("service-resolver", "admin") => Some(json!({"Redirect": {"Service": "ops"}})),
                _ => None,
            }
        };
        let chain = compile("web", entries, &CTX, &Overrides::default()).unwrap();
        let c = &chain["Chain"];
        assert!(c.get("Default").is_none());
        assert_eq!(c["StartNode"], "router:web.default.default");
        let routes = c["Nodes"]["router:web.default.default"]["Routes"]
            .as_array()
            .unwrap();
        assert_eq!(routes[0]["NextNode"], "resolver:ops.default.default.dc1");
        assert_eq!(routes[1]["NextNode"], "splitter:web.default.default");
        assert_eq!(
            c["Targets"]["v1.web.default.default.dc1"]["ConnectTimeout"],
            "2s"
        );
        assert_eq!(
            target_services(&chain),
            ["ops", "web"].map(String::from).into_iter().collect()
        );
        let looped = |kind: &str, name: &str| -> Option<Value> {
            match (kind, name) {
                ("service-resolver", "a") => Some(json!({"Redirect": {"Service": "b"}})),
                ("service-resolver", "b") => Some(json!({"Redirect": {"Service": "a"}})),
                _ => None,
            }
        };
        assert_eq!(
            compile("a", looped, &CTX, &Overrides::default()),
            Err(ChainError::CircularRedirect("a -> b -> a".into()))
        );
        let split_loop = |kind: &str, name: &str| -> Option<Value> {
            match (kind, name) {
                ("service-defaults", _) => Some(json!({"Protocol": "http"})),
                ("service-splitter", "a") => {
                    Some(json!({"Splits": [{"Weight": 100, "Service": "b"}]}))
                }
                ("service-splitter", "b") => {
                    Some(json!({"Splits": [{"Weight": 100, "Service": "a"}]}))
                }
                _ => None,
            }
        };
        assert_eq!(
            compile("a", split_loop, &CTX, &Overrides::default()),
            Err(ChainError::CircularSplit("a -> b -> a".into()))
        );
    }
}
