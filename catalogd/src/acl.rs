//! Who is asking: a request's token resolved to the rights its policies, roles and identities
//! grant (a [`Caller`]), and the refusal texts Consul's clients recognise.
//!
//! Resolution must cost next to nothing per request (it runs on every one), so every token is
//! compiled once into a [`cairn_acl::Authorizer`] when the ACL tables change: a [`View`] holds
//! them by secret, stamped with the ACL index it was built from, and is rebuilt the first time a
//! request sees a newer index: by one request under a lock, while the others that see the new
//! index wait for it, so nobody is answered from rights that were just revoked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use cairn_acl::{Authorizer, DefaultPolicy, Rules};

use crate::http::HttpError;
use crate::state::{
    ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, GLOBAL_MANAGEMENT_ID, NodeIdentity, Role,
    ServiceIdentity, State, Table, TemplatedPolicy, Token,
};

/// `--acl-*` settings (Consul's `acl` agent configuration block).
#[derive(Clone)]
pub struct AclConfig {
    pub enabled: bool,
    pub default_policy: DefaultPolicy,
    /// Consul's `acl.tokens.initial_management`: a management token created at start.
    pub initial_management: Option<String>,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            enabled: false,
            default_policy: DefaultPolicy::Allow,
            initial_management: None,
        }
    }
}

impl std::fmt::Debug for AclConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclConfig")
            .field("enabled", &self.enabled)
            .field("default_policy", &self.default_policy)
            .field(
                "initial_management",
                &self.initial_management.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// The rights of whoever made a request.
#[derive(Debug)]
pub struct Caller {
    /// AccessorID of its token (empty with ACLs off).
    pub accessor: String,
    pub authz: Authorizer,
    /// Whether ACLs are on at all (off: everything is allowed, `/v1/acl/*` answers 401).
    pub enforced: bool,
    /// Auth method the token was logged in through (logout is only for those).
    pub auth_method: String,
    /// When the token stops working (Unix seconds), if it expires.
    expires: Option<i64>,
}

impl Caller {
    /// Consul's refusal for a missing right: `Permission denied: token with AccessorID 'x'
    /// lacks permission 'key:read' on "a/b"`.
    pub fn denied(&self, resource: &str, level: &str, name: Option<&str>) -> HttpError {
        let who = if self.accessor == ANONYMOUS_ACCESSOR {
            "anonymous token".to_string()
        } else {
            format!("token with AccessorID '{}'", self.accessor)
        };
        let mut message = format!("Permission denied: {who} lacks permission '{resource}:{level}'");
        if let Some(name) = name {
            message.push_str(&format!(" on {name:?}"));
        }
        if self.accessor == ANONYMOUS_ACCESSOR {
            message.push_str(
                ". The anonymous token is used implicitly when a request does not specify a token.",
            );
        }
        HttpError {
            status: axum::http::StatusCode::FORBIDDEN,
            message,
        }
    }

    /// `Ok` when `allowed`, else the refusal naming the right.
    pub fn require(
        &self,
        allowed: bool,
        resource: &str,
        level: &str,
        name: Option<&str>,
    ) -> Result<(), HttpError> {
        if allowed {
            Ok(())
        } else {
            Err(self.denied(resource, level, name))
        }
    }
}

impl Caller {
    /// Whether a service instance on a node shows in a read (Consul filters on both).
    pub fn sees_instance(&self, node: &str, service: &str) -> bool {
        self.authz.service_read(service) && self.authz.node_read(node)
    }

    /// Whether a check shows: its node readable, and its service if it has one.
    pub fn sees_check(&self, check: &cairn_wire::HealthCheck) -> bool {
        self.authz.node_read(&check.node)
            && (check.service_name.is_empty() || self.authz.service_read(&check.service_name))
    }

    /// A check may be written by whoever may write its service, or its node for a node check.
    pub fn may_write_check(&self, node: &str, service: Option<&str>) -> Result<(), HttpError> {
        match service {
            Some(name) => self.require(
                self.authz.service_write(name),
                "service",
                "write",
                Some(name),
            ),
            None => self.require(self.authz.node_write(node), "node", "write", Some(node)),
        }
    }
}

/// Consul's vetting of `PUT /v1/catalog/register`: node:write when the registration changes
/// the node, service:write for its service, and each check's owner's right.
pub fn vet_registration(
    caller: &Caller,
    st: &State,
    reg: &cairn_wire::CatalogRegistration,
) -> Result<(), HttpError> {
    if !caller.enforced {
        return Ok(());
    }
    let changes_node = match st.nodes.get(&reg.node) {
        None => true,
        Some(existing) => {
            !reg.skip_node_update
                && (existing.address != reg.address
                    || (!reg.node_meta.is_empty() && existing.meta != reg.node_meta)
                    || (!reg.tagged_addresses.is_empty()
                        && existing.tagged_addresses != reg.tagged_addresses))
        }
    };
    if changes_node {
        caller.require(
            caller.authz.node_write(&reg.node),
            "node",
            "write",
            Some(&reg.node),
        )?;
    }
    if let Some(svc) = &reg.service {
        caller.require(
            caller.authz.service_write(&svc.service),
            "service",
            "write",
            Some(&svc.service),
        )?;
        // Re-registering an ID under another name also needs write on the name it had.
        let id = if svc.id.is_empty() {
            &svc.service
        } else {
            &svc.id
        };
        if let Some(old) = st.services.get(&(reg.node.clone(), id.clone())) {
            caller.require(
                caller.authz.service_write(&old.service),
                "service",
                "write",
                Some(&old.service),
            )?;
        }
    }
    for check in reg.check.iter().chain(reg.checks.iter()) {
        // Consul refuses checks for another node than the registration's under ACLs.
        if !check.node.is_empty() && check.node != reg.node {
            return Err(caller.denied("node", "write", Some(&check.node)));
        }
        let service = check_service(st, reg, &check.service_id);
        caller.may_write_check(&reg.node, service.as_deref())?;
    }
    Ok(())
}

/// The service a check belongs to, by its service ID: the one registered with it, or the one
/// already in the catalog. `None` for a node check.
fn check_service(
    st: &State,
    reg: &cairn_wire::CatalogRegistration,
    service_id: &str,
) -> Option<String> {
    if service_id.is_empty() {
        return None;
    }
    if let Some(svc) = reg
        .service
        .as_ref()
        .filter(|s| s.id == service_id || (s.id.is_empty() && s.service == service_id))
    {
        return Some(svc.service.clone());
    }
    Some(
        st.services
            .get(&(reg.node.clone(), service_id.to_string()))
            .map_or_else(|| service_id.to_string(), |s| s.service.clone()),
    )
}

/// Consul's vetting of `PUT /v1/catalog/deregister`: the whole node needs node:write, a
/// service its service:write, a check its owner's right.
pub fn vet_deregistration(
    caller: &Caller,
    st: &State,
    d: &cairn_wire::CatalogDeregistration,
) -> Result<(), HttpError> {
    if !caller.enforced {
        return Ok(());
    }
    let service_of = |id: &str| {
        st.services
            .get(&(d.node.clone(), id.to_string()))
            .map(|s| s.service.clone())
    };
    if !d.service_id.is_empty() {
        let name = service_of(&d.service_id).unwrap_or_else(|| d.service_id.clone());
        return caller.require(
            caller.authz.service_write(&name),
            "service",
            "write",
            Some(&name),
        );
    }
    if !d.check_id.is_empty() {
        let service = st
            .checks
            .get(&(d.node.clone(), d.check_id.clone()))
            .filter(|c| !c.service_id.is_empty())
            .map(|c| service_of(&c.service_id).unwrap_or_else(|| c.service_name.clone()));
        return caller.may_write_check(&d.node, service.as_deref());
    }
    caller.require(
        caller.authz.node_write(&d.node),
        "node",
        "write",
        Some(&d.node),
    )
}

/// Consul's answer for a token it does not know (or that expired).
pub fn not_found() -> HttpError {
    HttpError {
        status: axum::http::StatusCode::FORBIDDEN,
        message: "ACL not found".into(),
    }
}

/// Every token compiled, at one ACL index.
struct View {
    index: u64,
    by_secret: HashMap<String, Arc<Caller>>,
}

/// Token resolution for the HTTP layer.
pub struct Acl {
    pub config: AclConfig,
    datacenter: String,
    view: ArcSwap<View>,
    rebuild: Mutex<()>,
    /// The agent's `default` token (`PUT /v1/agent/token/default`): used by a request that
    /// presents none.
    default_token: arc_swap::ArcSwapOption<String>,
    /// What every request is when ACLs are off.
    unrestricted: Arc<Caller>,
}

impl Acl {
    pub fn new(config: AclConfig, datacenter: String) -> Acl {
        Acl {
            config,
            datacenter,
            view: ArcSwap::from_pointee(View {
                index: u64::MAX,
                by_secret: HashMap::new(),
            }),
            rebuild: Mutex::new(()),
            default_token: arc_swap::ArcSwapOption::empty(),
            unrestricted: Arc::new(Caller {
                accessor: String::new(),
                authz: Authorizer::management(),
                enforced: false,
                auth_method: String::new(),
                expires: None,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Sets the agent's `default` token (empty: none).
    pub fn set_default_token(&self, token: String) {
        self.default_token
            .store((!token.is_empty()).then(|| Arc::new(token)));
    }

    /// The caller presenting `secret` (none: the anonymous token), or Consul's "ACL not
    /// found" for a secret no live token has.
    pub fn resolve(&self, st: &State, secret: Option<&str>) -> Result<Arc<Caller>, HttpError> {
        if !self.config.enabled {
            return Ok(self.unrestricted.clone());
        }
        let index = st.tables.docs.acl;
        let mut view = self.view.load_full();
        if view.index != index {
            view = self.rebuilt(st, index);
        }
        let default = self.default_token.load();
        let secret = secret
            .filter(|s| !s.is_empty())
            .or(default.as_deref().map(String::as_str))
            .unwrap_or(ANONYMOUS_SECRET);
        let caller = view.by_secret.get(secret).ok_or_else(not_found)?;
        if let Some(at) = caller.expires
            && jiff::Timestamp::now().as_second() >= at
        {
            return Err(not_found());
        }
        Ok(caller.clone())
    }

    fn rebuilt(&self, st: &State, index: u64) -> Arc<View> {
        // A poisoned lock only means another rebuild panicked; the view it guards is swapped
        // whole, so building again is safe.
        let _guard = self
            .rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.view.load_full();
        if current.index == index {
            return current;
        }
        let view = Arc::new(self.build(st, index));
        self.view.store(view.clone());
        view
    }

    fn build(&self, st: &State, index: u64) -> View {
        let mut compiler = Compiler {
            st,
            datacenter: &self.datacenter,
            parsed: HashMap::new(),
        };
        let mut by_secret = HashMap::new();
        for (_, doc) in st.docs_with_prefix(Table::AclTokens, "") {
            let token: Token = match serde_json::from_value((*doc.value).clone()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "an ACL token record does not decode; ignored");
                    continue;
                }
            };
            let authz = compiler.authorizer(&token, self.config.default_policy);
            let expires = token
                .expiration_time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_second());
            by_secret.insert(
                token.secret_id.clone(),
                Arc::new(Caller {
                    accessor: token.accessor_id.clone(),
                    authz,
                    enforced: true,
                    auth_method: token.auth_method.clone(),
                    expires,
                }),
            );
        }
        View { index, by_secret }
    }
}

/// Turns tokens into authorizers, parsing each policy once per view.
struct Compiler<'a> {
    st: &'a State,
    datacenter: &'a str,
    parsed: HashMap<String, Option<Arc<Rules>>>,
}

impl Compiler<'_> {
    fn policy(&mut self, id: &str) -> Option<Arc<Rules>> {
        if let Some(p) = self.parsed.get(id) {
            return p.clone();
        }
        let rules = self.st.acl_policy(id).and_then(|(p, _)| {
            Rules::parse(&p.rules)
                .map_err(|e| tracing::error!(policy = %p.name, error = %e, "stored ACL policy does not parse; ignored"))
                .ok()
        });
        let rules = rules.map(Arc::new);
        self.parsed.insert(id.to_string(), rules.clone());
        rules
    }

    fn synthetic(&self, text: &str, out: &mut Vec<Arc<Rules>>) {
        match Rules::parse(text) {
            Ok(r) => out.push(Arc::new(r)),
            Err(e) => tracing::error!(error = %e, "a synthetic ACL policy does not parse"),
        }
    }

    fn identities(
        &self,
        services: &[ServiceIdentity],
        nodes: &[NodeIdentity],
        templated: &[TemplatedPolicy],
        out: &mut Vec<Arc<Rules>>,
    ) {
        for s in services {
            if s.datacenters.is_empty() || s.datacenters.iter().any(|d| d == self.datacenter) {
                self.synthetic(&cairn_acl::service_identity_rules(&s.service_name), out);
            }
        }
        for n in nodes {
            if n.datacenter == self.datacenter {
                self.synthetic(&cairn_acl::node_identity_rules(&n.node_name), out);
            }
        }
        for t in templated {
            if !t.datacenters.is_empty() && !t.datacenters.iter().any(|d| d == self.datacenter) {
                continue;
            }
            let name = t
                .template_variables
                .as_ref()
                .map(|v| v.name.as_str())
                .filter(|n| !n.is_empty());
            if let Ok(text) = cairn_acl::templated::render(&t.template_name, name) {
                self.synthetic(&text, out);
            }
        }
    }

    fn authorizer(&mut self, token: &Token, default: DefaultPolicy) -> Authorizer {
        let mut rules: Vec<Arc<Rules>> = Vec::new();
        let mut policy_ids: Vec<String> = token.policies.iter().map(|l| l.id.clone()).collect();
        let roles: Vec<Role> = token
            .roles
            .iter()
            .filter_map(|l| self.st.acl_role(&l.id).map(|(r, _)| r))
            .collect();
        for role in &roles {
            policy_ids.extend(role.policies.iter().map(|l| l.id.clone()));
        }
        if policy_ids
            .iter()
            .any(|id| id.eq_ignore_ascii_case(GLOBAL_MANAGEMENT_ID))
        {
            return Authorizer::management();
        }
        for id in &policy_ids {
            if let Some(r) = self.policy(id) {
                rules.push(r);
            }
        }
        self.identities(
            &token.service_identities,
            &token.node_identities,
            &token.templated_policies,
            &mut rules,
        );
        for role in &roles {
            self.identities(
                &role.service_identities,
                &role.node_identities,
                &role.templated_policies,
                &mut rules,
            );
        }
        Authorizer::new(rules.iter().map(|r| r.as_ref()), default)
    }
}

/// Reads the `acl` block of a Consul agent configuration file (JSON), so an operator can point
/// catalogd at the file their Consul agents use: `acl.enabled`, `acl.default_policy`,
/// `acl.tokens.initial_management` (and its pre-1.11 name `acl.tokens.master`). Other keys are
/// Consul's own business and are left alone.
pub fn from_consul_config(path: &std::path::Path) -> anyhow::Result<AclConfig> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    parse_consul_config(&text).with_context(|| format!("in {}", path.display()))
}

fn parse_consul_config(text: &str) -> anyhow::Result<AclConfig> {
    use anyhow::{Context as _, bail};
    let doc: serde_json::Value =
        serde_json::from_str(text).context("not a JSON Consul configuration")?;
    let mut config = AclConfig::default();
    let Some(acl) = doc.get("acl") else {
        return Ok(config);
    };
    if !acl.is_object() {
        bail!("acl: expected an object, got {acl}");
    }
    match acl.get("enabled") {
        None => {}
        Some(serde_json::Value::Bool(b)) => config.enabled = *b,
        Some(other) => bail!("acl.enabled: expected true or false, got {other}"),
    }
    match acl.get("default_policy") {
        None => {}
        Some(serde_json::Value::String(s)) => {
            config.default_policy = s
                .parse()
                .map_err(|e| anyhow::anyhow!("acl.default_policy: {e}"))?;
        }
        Some(other) => bail!("acl.default_policy: expected \"allow\" or \"deny\", got {other}"),
    }
    let tokens = acl.get("tokens");
    for name in ["initial_management", "master"] {
        match tokens.and_then(|t| t.get(name)) {
            None => {}
            Some(serde_json::Value::String(s)) if !s.is_empty() => {
                config.initial_management.get_or_insert_with(|| s.clone());
            }
            Some(serde_json::Value::String(_)) => {}
            Some(_) => bail!("acl.tokens.{name}: expected a string"),
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a configuration file reads as: (enabled, default policy, initial management
    /// token), or a fragment of the error.
    type Expected = Result<(bool, DefaultPolicy, Option<&'static str>), &'static str>;

    #[test]
    fn consul_config_files() {
        let cases: &[(&str, Expected)] = &[
            ("{}", Ok((false, DefaultPolicy::Allow, None))),
            (
                r#"{"primary_datacenter": "dc1", "acl": {"enabled": true, "tokens": {"initial_management": "root"}}}"#,
                Ok((true, DefaultPolicy::Allow, Some("root"))),
            ),
            (
                r#"{"acl": {"enabled": true, "default_policy": "deny", "tokens": {"master": "old"}}}"#,
                Ok((true, DefaultPolicy::Deny, Some("old"))),
            ),
            (r#"{"acl": {"enabled": "yes"}}"#, Err("acl.enabled")),
            (
                r#"{"acl": {"default_policy": "maybe"}}"#,
                Err("acl.default_policy"),
            ),
            (r#"{"acl": []}"#, Err("acl: expected an object")),
            (
                "acl { enabled = true }",
                Err("not a JSON Consul configuration"),
            ),
        ];
        for (text, want) in cases {
            let got = parse_consul_config(text);
            match (got, want) {
                (Ok(c), Ok((enabled, policy, token))) => {
                    assert_eq!(c.enabled, *enabled, "{text}");
                    assert_eq!(c.default_policy, *policy, "{text}");
                    assert_eq!(c.initial_management.as_deref(), *token, "{text}");
                }
                (Err(e), Err(fragment)) => {
                    assert!(format!("{e:#}").contains(fragment), "{text}: {e:#}")
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }
}
