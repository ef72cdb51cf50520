//! The whole agent protocol in one function: compare offerd's desired set with what the agent
//! knows and decide what to start and what to kill. Level-triggered — no command is replayed,
//! so an agent or offerd that restarts converges by running this on the next answer.
//!
//! Rules: start every desired task whose id was never seen here; kill every live task that is
//! not desired; a task id runs at most once (a finished task still in the set stays finished).

use std::collections::{BTreeMap, HashSet};

use cairn_marathon::{TaskSpec, TaskState};

/// What to do about one desired set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// New tasks, in the order offerd listed them.
    pub start: Vec<TaskSpec>,
    /// Ids of live tasks to kill.
    pub kill: Vec<String>,
}

/// Decides the [`Plan`] for `desired` given the state of every task the agent knows (live,
/// terminal, and ids it must never run again).
pub fn plan(desired: &[TaskSpec], known: &BTreeMap<String, TaskState>) -> Plan {
    let mut wanted: HashSet<&str> = HashSet::new();
    let mut start = Vec::new();
    for spec in desired {
        if !wanted.insert(spec.id.as_str()) {
            continue; // listed twice
        }
        if !known.contains_key(&spec.id) {
            start.push(spec.clone());
        }
    }
    let kill = known
        .iter()
        .filter(|(id, state)| {
            !wanted.contains(id.as_str())
                && matches!(
                    state,
                    TaskState::Staging | TaskState::Starting | TaskState::Running
                )
        })
        .map(|(id, _)| id.clone())
        .collect();
    Plan { start, kill }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> TaskSpec {
        serde_json::from_value(serde_json::json!({
            "id": id, "app_id": "/a", "version": "v", "cmd": "sleep 1",
            "cpus": 0.1, "mem": 32.0, "disk": 0.0,
            "kill_grace_seconds": 3.0, "service_name": "a"
        }))
        .unwrap()
    }

    fn known(items: &[(&str, TaskState)]) -> BTreeMap<String, TaskState> {
        items.iter().map(|(i, s)| (i.to_string(), *s)).collect()
    }

    fn ids(specs: &[TaskSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn starts_the_new_and_kills_the_undesired() {
        let k = known(&[
            ("a.1", TaskState::Running),
            ("a.2", TaskState::Running),
            ("a.3", TaskState::Staging),
        ]);
        let p = plan(&[spec("a.1"), spec("a.4"), spec("a.5")], &k);
        assert_eq!(ids(&p.start), ["a.4", "a.5"]);
        assert_eq!(p.kill, ["a.2", "a.3"]);
    }

    #[test]
    fn never_reruns_an_id() {
        let k = known(&[
            ("a.1", TaskState::Finished),
            ("a.2", TaskState::Failed),
            ("a.3", TaskState::Killed),
        ]);
        let p = plan(&[spec("a.1"), spec("a.2"), spec("a.3")], &k);
        assert!(p.start.is_empty());
        assert!(p.kill.is_empty(), "terminal tasks are never killed again");
    }

    #[test]
    fn empty_set_kills_everything_live_once() {
        let k = known(&[
            ("a.1", TaskState::Running),
            ("a.2", TaskState::Killing),
            ("a.3", TaskState::Finished),
        ]);
        let p = plan(&[], &k);
        assert!(p.start.is_empty());
        assert_eq!(p.kill, ["a.1"], "a kill in progress is not started again");
    }

    #[test]
    fn duplicates_start_once_and_same_set_is_a_no_op() {
        let p = plan(&[spec("a.1"), spec("a.1")], &BTreeMap::new());
        assert_eq!(ids(&p.start), ["a.1"]);
        let k = known(&[("a.1", TaskState::Running)]);
        assert_eq!(plan(&[spec("a.1")], &k), Plan::default());
    }
}
