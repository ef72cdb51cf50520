//! A task's life as the scheduler sees it: launched into an agent's desired set, killed (taken
//! out of it), finished (a terminal state feeds the app's backoff), and status updates.

use cairn_marathon::{
    App, TaskSpec, TaskState, TaskStatusUpdate, iso8601_millis, service_name, task_id_for,
};

use crate::events::Event;
use crate::model::{State, Task, TaskFailure};
use crate::tx::Tx;

/// Creates a task of `app` on `node` (for `framework`, when launched through an offer) and puts
/// it in the node's desired set; returns its id.
pub fn launch(
    state: &mut State,
    tx: &mut Tx,
    app: &App,
    config_version: &str,
    node: &str,
    ports: Vec<u16>,
    framework: Option<&str>,
) -> String {
    let id = task_id_for(&app.id, &uuid::Uuid::new_v4().to_string());
    tx.placements += 1;
    let host = state
        .agents
        .get(node)
        .map(|a| a.address.clone())
        .unwrap_or_default();
    let version = app.version.clone().unwrap_or_default();
    let service_ports: Vec<u16> = app
        .service_ports()
        .into_iter()
        .map(|p| u16::try_from(p).unwrap_or(0))
        .collect();
    let spec = TaskSpec {
        id: id.clone(),
        app_id: app.id.clone(),
        version: version.clone(),
        cmd: app.cmd.clone(),
        args: app.args.clone(),
        user: app.user.clone(),
        env: app.env.clone(),
        labels: app.labels.clone(),
        cpus: app.cpus,
        mem: app.mem,
        disk: app.disk,
        ports: ports.clone(),
        port_names: app.host_port_names(),
        health_checks: app.health_checks.clone(),
        kill_grace_seconds: app.kill_grace_seconds(),
        container: app.container.clone(),
        networks: app.networks.clone(),
        service_ports: service_ports.clone(),
        service_name: service_name(&app.id, &app.labels),
    };
    let task = Task {
        id: id.clone(),
        app_id: app.id.clone(),
        version,
        config_version: config_version.to_string(),
        node: node.to_string(),
        host,
        ports,
        service_ports,
        state: TaskState::Staging,
        staged_at: tx.now_ms,
        started_at: None,
        message: String::new(),
        healthy: None,
        unhealthy_since: None,
        health: Default::default(),
        kill_requested: false,
        spec,
        framework: framework.map(str::to_string),
    };
    if tx.wants_events() {
        tx.event(Event::status_update(
            &task,
            TaskState::Staging,
            "",
            tx.now_ms,
        ));
    }
    tx.task(&task);
    state.tasks.insert(task);
    id
}

/// Takes a task out of its agent's desired set; the agent kills it and reports TASK_KILLED. A
/// task the agent never acknowledged is killed on the spot: it may never have started.
pub fn kill_task(state: &mut State, tx: &mut Tx, id: &str) {
    let Some(mut t) = state.tasks.get_mut(id) else {
        return;
    };
    if !t.is_desired() {
        return;
    }
    t.kill_requested = true;
    let staging = t.state == TaskState::Staging;
    tx.task(&t);
    drop(t);
    if staging {
        finish_task(state, tx, id, TaskState::Killed, "killed before it started");
    }
}

/// A task reached a terminal state: it is removed, and a failure feeds the app's backoff.
pub fn finish_task(state: &mut State, tx: &mut Tx, id: &str, end: TaskState, message: &str) {
    let Some(t) = state.tasks.remove(id) else {
        return;
    };
    if t.kill_requested {
        // Already out of its agent's desired set: the agent needs no new answer.
        tx.task_state(&t);
    } else {
        tx.task(&t);
    }
    if tx.wants_events() {
        tx.event(Event::status_update(&t, end, message, tx.now_ms));
    }
    let mut ended = t.clone();
    ended.state = end;
    ended.message = message.to_string();
    if state.finished.len() == crate::model::FINISHED_KEPT {
        state.finished.pop_front();
    }
    state.finished.push_back(ended);
    if t.framework.as_deref() == Some(super::jobs::JOBS_FRAMEWORK) {
        return super::jobs::task_ended(state, tx, &t, end, message);
    }
    if t.kill_requested || (!end.counts_as_failure() && end != TaskState::Lost) {
        return;
    }
    let Some(entry) = state.apps.get_mut(&t.app_id) else {
        return;
    };
    entry.last_failure = Some(TaskFailure {
        app_id: t.app_id.clone(),
        host: t.host.clone(),
        message: message.to_string(),
        state: end.as_str().to_string(),
        task_id: t.id.clone(),
        timestamp: iso8601_millis(tx.now_ms),
        version: t.version.clone(),
        slave_id: t.node.clone(),
    });
    if end.counts_as_failure() && t.config_version == entry.config_version() {
        entry.failures = entry.failures.saturating_add(1);
        let delay = entry.app.launch_delay_seconds(entry.failures);
        entry.delay_until_ms = tx.now_ms + (delay * 1000.0) as u64;
        tracing::info!(app = %t.app_id, task = %t.id, state = %end, failures = entry.failures, delay_s = delay, "task failed; relaunch delayed");
    }
    tx.app(&t.app_id);
}

/// Applies one status update from `node`. Updates for unknown tasks, or from an agent the task
/// is not on, are ignored: the desired set already tells that agent what to do.
pub fn apply_status(state: &mut State, tx: &mut Tx, node: &str, u: &TaskStatusUpdate) {
    // Looked at before it is taken for change: an update that changes nothing (an agent's
    // registration repeats every task it runs) copies nothing.
    let Some(t) = state.tasks.get(&u.task_id) else {
        return;
    };
    if t.node != node {
        return;
    }
    if u.state.is_terminal() {
        finish_task(state, tx, &u.task_id, u.state, &u.message);
        return;
    }
    if t.state == u.state {
        return;
    }
    let Some(mut t) = state.tasks.get_mut(&u.task_id) else {
        return;
    };
    t.state = u.state;
    t.message = u.message.clone();
    if u.state == TaskState::Running && t.started_at.is_none() {
        t.started_at = Some(if u.timestamp > 0 {
            u.timestamp
        } else {
            tx.now_ms
        });
    }
    let event = tx
        .wants_events()
        .then(|| Event::status_update(&t, u.state, &u.message, tx.now_ms));
    // The agent reported it: its desired set is unchanged.
    tx.task_state(&t);
    tx.events.extend(event);
}
