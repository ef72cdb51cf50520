//! The pure steps of scheduling one app, each a function of what is (no state is changed):
//! [`classify`] its tasks, [`scale_down`] extra ones by the kill selection, [`replace_old`]
//! tasks of an old config within the upgrade strategy, [`launch_room`] for new ones within
//! `maximumOverCapacity`, and [`place`] them on agents. [`plan`] chains the first four;
//! `reconcile_app` applies the result.

use cairn_marathon::{App, TaskState, UpgradeStrategy};
use cairn_placement::{Demand, Offer, Placer};

use super::is_healthy;
use crate::model::{State, Task};

/// An app's desired tasks, split by what the app asks for now.
#[derive(Debug, Default)]
pub struct Classified<'a> {
    /// Of the current config, on an agent that keeps them.
    pub current: Vec<&'a Task>,
    /// Of an older config, or on a draining agent: to be replaced.
    pub old: Vec<&'a Task>,
}

/// Splits the app's desired tasks (active, not being killed) into current and old. A task on a
/// draining agent is replaced like one of an old version: within the upgrade strategy, new
/// ones first.
pub fn classify<'a>(state: &'a State, app_id: &'a str, config_version: &str) -> Classified<'a> {
    // Agents are looked up only while one drains (a lookup per task is most of a round).
    let any_draining = state.agents.values().any(|a| a.draining);
    let draining = |node: &str| any_draining && state.agents.get(node).is_some_and(|a| a.draining);
    let mut out = Classified::default();
    for t in state.app_tasks(app_id).filter(|t| t.is_desired()) {
        if t.config_version == config_version && !draining(&t.node) {
            out.current.push(t);
        } else {
            out.old.push(t);
        }
    }
    out
}

/// The current tasks to kill so that `n` remain: tasks not yet running go first, then
/// Marathon's `killSelection` (`YOUNGEST_FIRST`, the default, or `OLDEST_FIRST`) by launch time.
pub fn scale_down(current: &[&Task], n: usize, kill_selection: &str) -> Vec<String> {
    if current.len() <= n {
        return Vec::new();
    }
    let mut order = current.to_vec();
    order.sort_by_key(|t| {
        let age_key = if kill_selection == "OLDEST_FIRST" {
            i128::from(t.staged_at)
        } else {
            -i128::from(t.staged_at)
        };
        (t.state == TaskState::Running, age_key)
    });
    order
        .iter()
        .take(current.len() - n)
        .map(|t| t.id.clone())
        .collect()
}

/// Which old tasks go now.
#[derive(Debug, Default, PartialEq)]
pub struct Replacement {
    /// Old tasks to kill, in the order they were judged.
    pub kills: Vec<String>,
    /// Old tasks still running after those kills.
    pub old_left: usize,
    /// The old tasks in the order they are replaced: unhealthy first, then youngest first.
    pub order: Vec<String>,
}

/// Old tasks to kill given the current ones (after scale-down). Unhealthy old tasks go first,
/// but only once the new version has proven healthy, or when no health is required (a blip in
/// an old task's checks must not shrink the app while a new version that may never become
/// healthy is on its way); healthy ones while enough healthy tasks remain
/// (`minimumHealthCapacity`) or once the new version alone is complete and healthy.
pub fn replace_old(
    old: &[&Task],
    current: &[&Task],
    n: usize,
    strategy: &UpgradeStrategy,
) -> Replacement {
    let min_healthy = (n as f64 * strategy.minimum_health_capacity).ceil() as usize;
    let healthy_new = current.iter().filter(|t| is_healthy(t)).count();
    let mut healthy_old = old.iter().filter(|t| is_healthy(t)).count();
    let mut sorted = old.to_vec();
    sorted.sort_by_key(|t| (is_healthy(t), std::cmp::Reverse(t.staged_at)));
    let mut out = Replacement {
        kills: Vec::new(),
        old_left: old.len(),
        order: sorted.iter().map(|t| t.id.clone()).collect(),
    };
    for t in &sorted {
        if !is_healthy(t) {
            if healthy_new > 0 || min_healthy == 0 {
                out.kills.push(t.id.clone());
                out.old_left -= 1;
            }
        } else if healthy_new + healthy_old > min_healthy || healthy_new >= n {
            out.kills.push(t.id.clone());
            healthy_old -= 1;
            out.old_left -= 1;
        }
    }
    out
}

/// How many new tasks to launch: what is missing, within `maximumOverCapacity` above `n`
/// counting the old tasks left. When there is no room above the target at all
/// (`maximumOverCapacity` rounds to 0), one task is replaced at a time: one more old task is
/// killed (added to `replacement`) once every new task so far is healthy, making room for one.
pub fn launch_room(
    n: usize,
    current: &[&Task],
    replacement: &mut Replacement,
    strategy: &UpgradeStrategy,
) -> usize {
    let missing = n.saturating_sub(current.len());
    let max_active = n + (n as f64 * strategy.maximum_over_capacity).floor() as usize;
    let mut room = max_active.saturating_sub(current.len() + replacement.old_left);
    let all_new_healthy = current.iter().all(|t| is_healthy(t));
    if max_active == n && room == 0 && missing > 0 && replacement.old_left > 0 && all_new_healthy {
        let next = replacement
            .order
            .iter()
            .find(|id| !replacement.kills.contains(id))
            .cloned();
        if let Some(id) = next {
            replacement.kills.push(id);
            replacement.old_left -= 1;
            room = 1;
        }
    }
    missing.min(room)
}

/// What to do with one app now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Tasks to kill: extra current ones first, then old ones.
    pub kills: Vec<String>,
    /// New tasks to launch.
    pub to_launch: usize,
}

/// Chains the steps for one app: scale down, replace old, launch room.
pub fn plan(app: &App, classified: &Classified<'_>) -> Plan {
    let n = usize::try_from(app.instances).unwrap_or(0);
    let mut kills = scale_down(&classified.current, n, &app.kill_selection);
    let current: Vec<&Task> = classified
        .current
        .iter()
        .copied()
        .filter(|t| !kills.contains(&t.id))
        .collect();
    let mut replacement = replace_old(&classified.old, &current, n, &app.upgrade_strategy);
    let to_launch = launch_room(n, &current, &mut replacement, &app.upgrade_strategy);
    kills.extend(replacement.kills);
    Plan { kills, to_launch }
}

/// Where new tasks of `app` go.
#[derive(Debug, Default, PartialEq)]
pub struct Placed {
    /// Per task: the agent and the host ports it gets.
    pub tasks: Vec<(String, Vec<u16>)>,
    /// Why the rest could not be placed (for the launch queue).
    pub short: Option<String>,
}

/// Places up to `count` tasks of `app` on `offers` (bin-packing within its constraints and
/// host ports), taking what each uses out of its offer.
pub fn place(app: &App, count: usize, offers: &mut [Offer]) -> Placed {
    let demand = Demand::of(app);
    let mut out = Placed::default();
    let mut placer = match Placer::new(offers, demand) {
        Ok(p) => p,
        Err(reason) => {
            out.short = Some(reason);
            return out;
        }
    };
    for _ in 0..count {
        match placer.place_one(offers) {
            Ok(p) => out.tasks.push((offers[p.offer].node.clone(), p.ports)),
            Err(reason) => {
                out.short = Some(reason);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::scheduler::testkit::{self, NOW, agent, new_config, task};

    const HEALTH: &str = r#"[{"protocol": "COMMAND", "command": {"value": "true"}}]"#;

    /// An app with a health check, `n` instances and this upgrade strategy.
    fn def(cmd: &str, n: i64, min_health: f64, max_over: f64) -> Value {
        json!({
            "id": "/web", "cmd": cmd, "instances": n, "cpus": 0.1, "mem": 16,
            "healthChecks": serde_json::from_str::<Value>(HEALTH).unwrap_or_default(),
            "upgradeStrategy": {"minimumHealthCapacity": min_health, "maximumOverCapacity": max_over},
        })
    }

    fn web_state(n: i64, min_health: f64, max_over: f64) -> State {
        testkit::state(
            &[agent("a1", 4.0, 4096.0), agent("a2", 4.0, 4096.0)],
            &[testkit::app(def("v1", n, min_health, max_over))],
        )
    }

    fn plan_of(s: &State) -> Plan {
        let e = &s.apps["/web"];
        plan(&e.app, &classify(s, "/web", e.config_version()))
    }

    fn ids(ts: &[&Task]) -> Vec<String> {
        let mut v: Vec<String> = ts.iter().map(|t| t.id.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn classify_splits_by_config_and_treats_a_draining_agent_as_old() {
        let mut s = web_state(3, 1.0, 1.0);
        let old = task(&mut s, "/web", "a1", NOW, TaskState::Running, Some(true));
        new_config(&mut s, def("v2", 3, 1.0, 1.0), NOW + 1);
        let new = task(
            &mut s,
            "/web",
            "a1",
            NOW + 2,
            TaskState::Running,
            Some(true),
        );
        let drained = task(
            &mut s,
            "/web",
            "a2",
            NOW + 3,
            TaskState::Running,
            Some(true),
        );
        let killed = task(
            &mut s,
            "/web",
            "a1",
            NOW + 4,
            TaskState::Running,
            Some(true),
        );
        if let Some(a) = s.agents.get_mut("a2") {
            a.draining = true;
        }
        if let Some(mut t) = s.tasks.get_mut(&killed) {
            t.kill_requested = true;
        }
        let cv = s.apps["/web"].config_version().to_string();
        let c = classify(&s, "/web", &cv);
        assert_eq!(ids(&c.current), vec![new]);
        let mut want_old = vec![old, drained];
        want_old.sort();
        assert_eq!(ids(&c.old), want_old, "a task being killed is neither");
    }

    #[test]
    fn scale_down_takes_tasks_not_running_first_then_by_kill_selection() {
        let mut s = web_state(4, 1.0, 1.0);
        let oldest = task(&mut s, "/web", "a1", NOW, TaskState::Running, Some(true));
        let middle = task(
            &mut s,
            "/web",
            "a1",
            NOW + 1,
            TaskState::Running,
            Some(true),
        );
        let youngest = task(
            &mut s,
            "/web",
            "a1",
            NOW + 2,
            TaskState::Running,
            Some(true),
        );
        let staging = task(&mut s, "/web", "a2", NOW - 5, TaskState::Staging, None);
        let current: Vec<&Task> = s.tasks.values().collect();

        assert_eq!(
            scale_down(&current, 2, "YOUNGEST_FIRST"),
            vec![staging.clone(), youngest.clone()]
        );
        assert_eq!(
            scale_down(&current, 2, "OLDEST_FIRST"),
            vec![staging.clone(), oldest.clone()]
        );
        assert_eq!(
            scale_down(&current, 1, "OLDEST_FIRST"),
            vec![staging, oldest, middle]
        );
        assert!(scale_down(&current, 4, "YOUNGEST_FIRST").is_empty());
    }

    #[test]
    fn scaling_down_follows_the_apps_kill_selection() {
        for (selection, kept_oldest) in [("YOUNGEST_FIRST", true), ("OLDEST_FIRST", false)] {
            let with = |n: i64| json!({"id": "/web", "cmd": "v1", "instances": n, "killSelection": selection});
            let mut s = testkit::state(&[agent("a1", 4.0, 4096.0)], &[testkit::app(with(2))]);
            let oldest = task(&mut s, "/web", "a1", NOW, TaskState::Running, None);
            let youngest = task(&mut s, "/web", "a1", NOW + 1, TaskState::Running, None);
            // Fewer instances is a scaling, not a new config: both tasks stay current.
            new_config(&mut s, with(1), NOW + 2);
            let p = plan_of(&s);
            let gone = if kept_oldest { &youngest } else { &oldest };
            assert_eq!(p.kills, vec![gone.clone()], "{selection}");
            assert_eq!(p.to_launch, 0);
        }
    }

    #[test]
    fn healthy_old_tasks_stay_until_new_ones_are_healthy() {
        // minimumHealthCapacity 1: never below 2 healthy.
        let mut s = web_state(2, 1.0, 1.0);
        task(&mut s, "/web", "a1", NOW, TaskState::Running, Some(true));
        task(
            &mut s,
            "/web",
            "a2",
            NOW + 1,
            TaskState::Running,
            Some(true),
        );
        new_config(&mut s, def("v2", 2, 1.0, 1.0), NOW + 2);
        assert_eq!(
            plan_of(&s),
            Plan {
                kills: vec![],
                to_launch: 2
            },
            "new tasks first (maximumOverCapacity 1: room for all)"
        );
        let n1 = task(&mut s, "/web", "a1", NOW + 3, TaskState::Running, None);
        let n2 = task(&mut s, "/web", "a2", NOW + 4, TaskState::Running, None);
        assert_eq!(
            plan_of(&s).kills,
            Vec::<String>::new(),
            "new ones not healthy yet"
        );
        if let Some(mut t) = s.tasks.get_mut(&n1) {
            t.healthy = Some(true);
        }
        assert_eq!(
            plan_of(&s).kills.len(),
            1,
            "one healthy new task: one old goes"
        );
        if let Some(mut t) = s.tasks.get_mut(&n2) {
            t.healthy = Some(true);
        }
        assert_eq!(
            plan_of(&s).kills.len(),
            2,
            "all new healthy: every old task goes"
        );
    }

    #[test]
    fn unhealthy_old_tasks_wait_for_a_healthy_new_one_unless_no_health_is_required() {
        let mut s = web_state(2, 1.0, 1.0);
        let sick = task(&mut s, "/web", "a1", NOW, TaskState::Running, Some(false));
        task(
            &mut s,
            "/web",
            "a2",
            NOW + 1,
            TaskState::Running,
            Some(true),
        );
        new_config(&mut s, def("v2", 2, 1.0, 1.0), NOW + 2);
        assert!(plan_of(&s).kills.is_empty(), "no healthy new task yet");
        task(
            &mut s,
            "/web",
            "a1",
            NOW + 3,
            TaskState::Running,
            Some(true),
        );
        assert_eq!(plan_of(&s).kills, vec![sick]);

        // minimumHealthCapacity 0: the unhealthy one goes at once, and so does the healthy
        // one (nothing needs to stay healthy).
        let mut s = web_state(2, 0.0, 1.0);
        let sick = task(&mut s, "/web", "a1", NOW, TaskState::Running, Some(false));
        let well = task(
            &mut s,
            "/web",
            "a2",
            NOW + 1,
            TaskState::Running,
            Some(true),
        );
        new_config(&mut s, def("v2", 2, 0.0, 1.0), NOW + 2);
        assert_eq!(plan_of(&s).kills, vec![sick, well]);
    }

    #[test]
    fn no_room_above_the_target_replaces_one_task_at_a_time() {
        // maximumOverCapacity 0, minimumHealthCapacity 1 (Marathon's "one over" restart).
        let mut s = web_state(2, 1.0, 0.0);
        let o1 = task(&mut s, "/web", "a1", NOW, TaskState::Running, Some(true));
        let o2 = task(
            &mut s,
            "/web",
            "a2",
            NOW + 1,
            TaskState::Running,
            Some(true),
        );
        new_config(&mut s, def("v2", 2, 1.0, 0.0), NOW + 2);
        // The youngest old task goes first, making room for one new task.
        assert_eq!(
            plan_of(&s),
            Plan {
                kills: vec![o2.clone()],
                to_launch: 1
            }
        );
        crate::scheduler::kill_task(&mut s, &mut crate::tx::Tx::new(NOW + 3), &o2);
        let n1 = task(&mut s, "/web", "a2", NOW + 4, TaskState::Running, None);
        assert_eq!(
            plan_of(&s),
            Plan {
                kills: vec![],
                to_launch: 0
            },
            "waits for the new task to be healthy"
        );
        if let Some(mut t) = s.tasks.get_mut(&n1) {
            t.healthy = Some(true);
        }
        assert_eq!(
            plan_of(&s),
            Plan {
                kills: vec![o1],
                to_launch: 1
            }
        );
    }

    #[test]
    fn room_above_the_target_launches_every_new_task_at_once() {
        let mut s = web_state(2, 1.0, 1.0);
        task(&mut s, "/web", "a1", NOW, TaskState::Running, Some(true));
        task(
            &mut s,
            "/web",
            "a2",
            NOW + 1,
            TaskState::Running,
            Some(true),
        );
        new_config(&mut s, def("v2", 2, 1.0, 0.5), NOW + 2);
        assert_eq!(
            plan_of(&s).to_launch,
            1,
            "2 + floor(2 * 0.5) = 3 active at most"
        );
    }

    #[test]
    fn place_bin_packs_and_says_what_is_short() {
        let s = testkit::state(&[agent("a1", 1.0, 1024.0), agent("a2", 1.0, 1024.0)], &[]);
        let mut offers = crate::scheduler::build_offers(&s);
        let a = testkit::app(json!({"id": "/p", "cmd": "x", "cpus": 0.5, "mem": 64}));
        let placed = place(&a, 5, &mut offers);
        assert_eq!(placed.tasks.len(), 4);
        let on_first = placed
            .tasks
            .iter()
            .filter(|(n, _)| *n == placed.tasks[0].0)
            .count();
        assert_eq!(on_first, 2, "the busiest agent that fits is filled first");
        assert!(placed.short.is_some_and(|r| r.contains("cpus")));

        let huge = testkit::app(json!({"id": "/h", "cmd": "x", "mem": 100000}));
        let placed = place(&huge, 1, &mut offers);
        assert!(placed.tasks.is_empty());
        assert!(placed.short.is_some_and(|r| r.contains("mem 100000")));
    }
}
