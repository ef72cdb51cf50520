//! Fixtures for the scheduler's unit tests: agents, apps and tasks in a [`State`].

use cairn_marathon::{App, PortRange, Resources, TaskState, parse_app};
use serde_json::Value;

use super::{launch, next_version};
use crate::model::{Agent, State};
use crate::tx::Tx;

pub const NOW: u64 = 1_000_000;

pub fn agent(node: &str, cpus: f64, mem: f64) -> Agent {
    Agent {
        node: node.into(),
        address: "127.0.0.1".into(),
        http_addr: String::new(),
        resources: Resources {
            cpus,
            mem,
            disk: 1000.0,
            ports: vec![PortRange {
                begin: 31000,
                end: 31099,
            }],
        },
        attributes: Default::default(),
        lost: false,
        draining: false,
        last_seen_ms: NOW,
    }
}

pub fn app(def: Value) -> App {
    parse_app(def, None).unwrap_or_else(|e| panic!("invalid test app: {e}"))
}

/// A state with these agents and apps (each at its first version).
pub fn state(agents: &[Agent], apps: &[App]) -> State {
    let mut s = State::default();
    for a in agents {
        s.agents.insert(a.node.clone(), a.clone());
    }
    for (i, a) in apps.iter().enumerate() {
        let e = next_version(None, a.clone(), NOW - 10_000 + i as u64, false, None);
        s.apps.insert(a.id.clone(), e);
    }
    s
}

/// Installs a changed definition of an app: its tasks become old.
pub fn new_config(s: &mut State, def: Value, version_ms: u64) {
    let a = app(def);
    let prev = s.apps.get(&a.id).cloned();
    let e = next_version(prev.as_ref(), a.clone(), version_ms, false, None);
    s.apps.insert(a.id.clone(), e);
}

/// A task of the app's current config on `node`, launched at `staged_at`, in `state`, with
/// `healthy` as its checks say.
pub fn task(
    s: &mut State,
    app_id: &str,
    node: &str,
    staged_at: u64,
    state: TaskState,
    healthy: Option<bool>,
) -> String {
    let entry = s.apps.get(app_id).cloned().expect("app exists");
    let mut tx = Tx::new(staged_at);
    let id = launch(
        s,
        &mut tx,
        &entry.app,
        entry.config_version(),
        node,
        Vec::new(),
        None,
    );
    if let Some(mut t) = s.tasks.get_mut(&id) {
        t.state = state;
        t.healthy = healthy;
        if state == TaskState::Running {
            t.started_at = Some(staged_at);
        }
    }
    id
}
