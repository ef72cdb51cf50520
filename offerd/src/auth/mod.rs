//! Who may call offerd: principals from `--auth-file` (a bearer token or HTTP Basic user and
//! password, each with a role) and agents (the shared `--agent-token`, or a token bound to one
//! node from the same file).
//!
//! - No auth file: the API is open to anyone, as before ([`Caller::Anyone`]).
//! - An auth file: every route but `/ping` and the agents' needs a principal. `admin` may do
//!   everything; `viewer` reads (GET, HEAD); `deployer` reads everything and changes apps whose
//!   id lies under one of its `paths` (see `crate::http` for each route's right).
//! - App definitions are rendered with their `env` values replaced by [`HIDDEN_ENV_VALUE`] for
//!   a caller who may not change that app ([`Caller::hide_env`]): anywhere an app appears
//!   (apps, versions, the queue, deployment plans and `api_post_event` on the event stream).
//! - The file is re-read on SIGHUP ([`Access::reload`]): a file that does not parse leaves the
//!   principals as they were.
//!
//! Secrets are compared in constant time and have no `Debug` form but `<hidden>`.

mod file;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, Method};
use cairn_http::{FailureLimiter, Secret, SharedSecret};
use serde_json::Value;
use subtle::ConstantTimeEq as _;

pub use file::{load, parse};

/// What a caller who may not change an app sees instead of each of its `env` values.
pub const HIDDEN_ENV_VALUE: &str = "<hidden>";

/// A principal's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads everything; changes apps under its paths.
    Deployer,
    /// Reads only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
        }
    }
}

/// How a principal proves who it is.
#[derive(Clone, Debug)]
pub enum Credential {
    Token(Secret),
    Basic { user: String, password: Secret },
}

/// One `[[principal]]`.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// App id prefixes a deployer may change, each ending in `/` (`/` is every app).
    pub paths: Vec<String>,
    pub credential: Credential,
}

impl Principal {
    /// Whether this principal may change the app `app_id` (or, for `/fw/`, every app under it).
    pub fn may_change(&self, app_id: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Viewer => false,
            Role::Deployer => self.paths.iter().any(|p| app_id.starts_with(p.as_str())),
        }
    }

    /// The same principal as `other`: name, role, paths and credential (constant time).
    fn same_as(&self, other: &Principal) -> bool {
        let credential = match (&self.credential, &other.credential) {
            (Credential::Token(a), Credential::Token(b)) => a.same_as(b),
            (
                Credential::Basic { user, password },
                Credential::Basic {
                    user: u2,
                    password: p2,
                },
            ) => user == u2 && password.same_as(p2),
            _ => false,
        };
        credential
            && self.name == other.name
            && self.role == other.role
            && self.paths == other.paths
    }
}

/// One `[[agent]]`: a token that acts as agent `node` only.
#[derive(Clone, Debug)]
pub struct AgentEntry {
    pub node: String,
    pub token: Secret,
}

/// What an auth file says.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    pub principals: Vec<Arc<Principal>>,
    pub agents: Vec<AgentEntry>,
}

impl AuthConfig {
    /// The principal the headers authenticate, if any. Every principal's secret is compared,
    /// so the time taken does not tell which one (or how many) were close.
    pub fn principal_for(&self, headers: &HeaderMap) -> Option<Arc<Principal>> {
        let token = cairn_http::presented_token(headers);
        let basic = cairn_http::basic_credentials(headers);
        let mut found = None;
        for p in &self.principals {
            let ok = match (&p.credential, token, &basic) {
                (Credential::Token(secret), Some(t), _) => secret.matches(t),
                (Credential::Basic { user, password }, _, Some(b)) => {
                    let user_ok = bool::from(b.user.as_bytes().ct_eq(user.as_bytes()));
                    let password_ok = password.matches(b.password.as_bytes());
                    user_ok & password_ok
                }
                _ => false,
            };
            if ok && found.is_none() {
                found = Some(p.clone());
            }
        }
        found
    }

    /// The node an agent token of the file is bound to, if the headers present one.
    pub fn agent_for(&self, headers: &HeaderMap) -> Option<String> {
        let token = cairn_http::presented_token(headers)?;
        let mut found = None;
        for a in &self.agents {
            if a.token.matches(token) && found.is_none() {
                found = Some(a.node.clone());
            }
        }
        found
    }
}

/// Who a request comes from, on the principals' routes.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No auth file: everyone may do everything.
    Anyone,
    Principal(Arc<Principal>),
}

impl Caller {
    /// The name shown in logs.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anyone => "anonymous",
            Caller::Principal(p) => &p.name,
        }
    }

    /// Whether the caller may change app `app_id` (create, update, scale, restart, delete,
    /// kill its tasks, reset its delay, cancel its deployment).
    pub fn may_change(&self, app_id: &str) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Principal(p) => p.may_change(app_id),
        }
    }

    /// Whether the caller may launch tasks as framework `name` on the offers API (its tasks
    /// are the apps `/<name>/<task>`).
    pub fn may_act_as_framework(&self, name: &str) -> bool {
        self.may_change(&format!("/{name}/"))
    }

    /// Whether the caller may change the cluster itself (agents: drain, remove).
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Principal(p) => p.role == Role::Admin,
        }
    }

    /// Whether the caller may only read.
    pub fn reads_only(&self) -> bool {
        matches!(self, Caller::Principal(p) if p.role == Role::Viewer)
    }

    /// Replaces the `env` values of every app definition in `v` that the caller may not change
    /// with [`HIDDEN_ENV_VALUE`] (keys stay). An app definition is an object with a string `id`
    /// and an object `env`; anything else is searched for them.
    pub fn hide_env(&self, v: &mut Value) {
        if self.is_admin() {
            return;
        }
        hide_env_in(v, &|id| self.may_change(id));
    }
}

fn hide_env_in(v: &mut Value, shown: &dyn Fn(&str) -> bool) {
    match v {
        Value::Object(m) => {
            let app = match (m.get("id"), m.get("env")) {
                (Some(Value::String(id)), Some(Value::Object(_))) => Some(shown(id)),
                _ => None,
            };
            match app {
                Some(true) => {}
                Some(false) => {
                    if let Some(Value::Object(env)) = m.get_mut("env") {
                        for value in env.values_mut() {
                            *value = Value::String(HIDDEN_ENV_VALUE.into());
                        }
                    }
                }
                None => {
                    for child in m.values_mut() {
                        hide_env_in(child, shown);
                    }
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                hide_env_in(child, shown);
            }
        }
        _ => {}
    }
}

/// Who a request comes from, on the agents' routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentIdentity {
    /// The shared `--agent-token`, or no agent token configured at all: any node.
    AnyNode,
    /// A token of the auth file bound to this node.
    Node(String),
}

impl AgentIdentity {
    /// Whether it may act as agent `node`.
    pub fn may_act_as(&self, node: &str) -> bool {
        match self {
            AgentIdentity::AnyNode => true,
            AgentIdentity::Node(n) => n == node,
        }
    }
}

/// What authenticating a request gave.
pub enum Authenticated<T> {
    /// Who it is.
    Yes(T),
    /// No valid credentials.
    No,
}

/// The live access rules: the auth file's principals and agents (swapped whole on reload), the
/// shared agent token, and the failure limiter every refusal counts in.
pub struct Access {
    file: Option<AuthFile>,
    agent_token: Option<SharedSecret>,
    limiter: Arc<FailureLimiter>,
}

struct AuthFile {
    path: PathBuf,
    current: ArcSwap<AuthConfig>,
}

/// What a reload read.
#[derive(Debug)]
pub struct Reloaded {
    pub principals: usize,
    pub agents: usize,
    /// Warnings about the file (its mode).
    pub warnings: Vec<String>,
}

impl Access {
    /// Access with no auth file (and, when `agent_token` is `None`, open agent routes).
    pub fn open(agent_token: Option<SharedSecret>, limiter: Arc<FailureLimiter>) -> Access {
        Access {
            file: None,
            agent_token,
            limiter,
        }
    }

    /// Access by the auth file at `path`, already read as `cfg`.
    pub fn with_file(
        path: &Path,
        cfg: AuthConfig,
        agent_token: Option<SharedSecret>,
        limiter: Arc<FailureLimiter>,
    ) -> Access {
        Access {
            file: Some(AuthFile {
                path: path.to_path_buf(),
                current: ArcSwap::from_pointee(cfg),
            }),
            agent_token,
            limiter,
        }
    }

    /// Where failed authentications are counted.
    pub fn limiter(&self) -> &FailureLimiter {
        &self.limiter
    }

    /// Whether principals are required (an auth file is set).
    pub fn has_auth_file(&self) -> bool {
        self.file.is_some()
    }

    /// The auth file's path, if any.
    pub fn auth_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// Re-reads the auth file; on error the current rules stay.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let Some(f) = &self.file else {
            return Err("no --auth-file to reload".into());
        };
        let (cfg, warnings) = load(&f.path)?;
        let out = Reloaded {
            principals: cfg.principals.len(),
            agents: cfg.agents.len(),
            warnings,
        };
        f.current.store(Arc::new(cfg));
        Ok(out)
    }

    /// Who the headers authenticate on the principals' routes.
    pub fn caller(&self, headers: &HeaderMap) -> Authenticated<Caller> {
        let Some(f) = &self.file else {
            return Authenticated::Yes(Caller::Anyone);
        };
        match f.current.load().principal_for(headers) {
            Some(p) => Authenticated::Yes(Caller::Principal(p)),
            None => Authenticated::No,
        }
    }

    /// Whether `caller` is still as the current file says (a reload may have removed or changed
    /// it): long-lived answers (the event stream) end when it is not.
    pub fn still_valid(&self, caller: &Caller) -> bool {
        match (caller, &self.file) {
            (Caller::Anyone, None) => true,
            (Caller::Principal(p), Some(f)) => {
                f.current.load().principals.iter().any(|q| q.same_as(p))
            }
            _ => false,
        }
    }

    /// Whether anything guards the agents' routes (the shared token or node tokens).
    pub fn agents_guarded(&self) -> bool {
        self.agent_token.is_some()
            || self
                .file
                .as_ref()
                .is_some_and(|f| !f.current.load().agents.is_empty())
    }

    /// The token agent `node` requires on its own API (taskrun's API takes the token it
    /// presents to offerd): its node-bound token from the auth file, else the shared one;
    /// `None` when neither is set (its API is open).
    pub fn agent_token_of(&self, node: &str) -> Option<Secret> {
        let bound = self.file.as_ref().and_then(|f| {
            f.current
                .load()
                .agents
                .iter()
                .find(|a| a.node == node)
                .map(|a| a.token.clone())
        });
        bound.or_else(|| self.agent_token.as_ref().map(|s| s.secret().clone()))
    }

    /// Who the headers authenticate on the agents' routes.
    pub fn agent(&self, headers: &HeaderMap) -> Authenticated<AgentIdentity> {
        if !self.agents_guarded() {
            return Authenticated::Yes(AgentIdentity::AnyNode);
        }
        let shared = self
            .agent_token
            .as_ref()
            .is_some_and(|s| s.presented_in(headers));
        let node = self
            .file
            .as_ref()
            .and_then(|f| f.current.load().agent_for(headers));
        match (shared, node) {
            (true, _) => Authenticated::Yes(AgentIdentity::AnyNode),
            (false, Some(n)) => Authenticated::Yes(AgentIdentity::Node(n)),
            (false, None) => Authenticated::No,
        }
    }
}

/// Whether a method only reads.
pub fn is_read(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployer(paths: &[&str]) -> Caller {
        Caller::Principal(Arc::new(Principal {
            name: "d".into(),
            role: Role::Deployer,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            credential: Credential::Token(Secret::new("t")),
        }))
    }

    #[test]
    fn deployers_change_only_under_their_paths() {
        let d = deployer(&["/team-a/", "/shop/web/"]);
        for (id, want) in [
            ("/team-a/x", true),
            ("/team-a/b/c", true),
            ("/team-a", false),
            ("/team-ab/x", false),
            ("/team-b/y", false),
            ("/shop/web/api", true),
            ("/shop/db", false),
        ] {
            assert_eq!(d.may_change(id), want, "{id}");
        }
        assert!(d.may_act_as_framework("team-a"));
        assert!(!deployer(&["/team-a/sub/"]).may_act_as_framework("team-a"));
        assert!(deployer(&["/team-a/"]).may_act_as_framework("team-a"));
        assert!(deployer(&["/"]).may_change("/anything/at/all"));
        assert!(!d.is_admin() && !d.reads_only());
    }

    #[test]
    fn env_values_hidden_where_the_caller_may_not_change() {
        let d = deployer(&["/team-a/"]);
        let mut v = json!({
            "apps": [
                {"id": "/team-a/x", "env": {"DB_PASSWORD": "a-secret"}},
                {"id": "/team-b/y", "env": {"DB_PASSWORD": "b-secret", "MODE": "prod"}},
            ],
            "plan": {"original": {"groups": [{"id": "/team-b", "apps": [
                {"id": "/team-b/y", "env": {"K": "old-b-secret"}}
            ]}]}},
            "appDefinition": {"id": "/team-b/z", "env": {}},
            "queue": [{"app": {"id": "/team-b/q", "env": {"K": "q-secret"}}}]
        });
        d.hide_env(&mut v);
        assert_eq!(v["apps"][0]["env"]["DB_PASSWORD"], "a-secret");
        assert_eq!(
            v["apps"][1]["env"],
            json!({"DB_PASSWORD": HIDDEN_ENV_VALUE, "MODE": HIDDEN_ENV_VALUE})
        );
        assert_eq!(
            v["plan"]["original"]["groups"][0]["apps"][0]["env"]["K"],
            HIDDEN_ENV_VALUE
        );
        assert_eq!(v["queue"][0]["app"]["env"]["K"], HIDDEN_ENV_VALUE);
        // A viewer sees no value; an admin and anyone (no auth file) every value.
        let viewer = Caller::Principal(Arc::new(Principal {
            role: Role::Viewer,
            paths: Vec::new(),
            ..match deployer(&[]) {
                Caller::Principal(p) => (*p).clone(),
                Caller::Anyone => unreachable!(),
            }
        }));
        let mut w = json!({"app": {"id": "/team-a/x", "env": {"K": "v"}}});
        viewer.hide_env(&mut w);
        assert_eq!(w["app"]["env"]["K"], HIDDEN_ENV_VALUE);
        let mut w = json!({"app": {"id": "/team-a/x", "env": {"K": "v"}}});
        Caller::Anyone.hide_env(&mut w);
        assert_eq!(w["app"]["env"]["K"], "v");
    }

    #[test]
    fn principals_by_token_or_basic() {
        let cfg = parse(
            r#"
            [[principal]]
            name = "ci"
            token = "tok-ci"
            role = "admin"
            [[principal]]
            name = "alice"
            user = "alice"
            password = "pw"
            role = "viewer"
            [[agent]]
            node = "n1"
            token = "tok-n1"
            "#,
        )
        .expect("valid");
        let h = |k: &str, v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
            m
        };
        let who = |m: HeaderMap| cfg.principal_for(&m).map(|p| p.name.clone());
        assert_eq!(who(h("authorization", "Bearer tok-ci")), Some("ci".into()));
        assert_eq!(who(h("x-consul-token", "tok-ci")), Some("ci".into()));
        assert_eq!(who(h("authorization", "Bearer tok-c")), None);
        // "alice:pw" and "alice:px".
        assert_eq!(
            who(h("authorization", "Basic YWxpY2U6cHc=")),
            Some("alice".into())
        );
        assert_eq!(who(h("authorization", "Basic YWxpY2U6cHg=")), None);
        // An agent token is not a principal, nor a principal's token an agent's.
        assert_eq!(who(h("authorization", "Bearer tok-n1")), None);
        assert_eq!(
            cfg.agent_for(&h("authorization", "Bearer tok-n1")),
            Some("n1".into())
        );
        assert_eq!(cfg.agent_for(&h("authorization", "Bearer tok-ci")), None);
    }
}
