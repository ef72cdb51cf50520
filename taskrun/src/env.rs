//! The environment of a task, built the way Marathon and Mesos build it so that apps written for
//! them run unchanged: the agent's own environment (as the Mesos command executor passes it on),
//! then the Marathon/Mesos variables (`PORT0..n`, `PORT`, `PORTS`, `PORT_<NAME>`, `HOST`,
//! `MARATHON_APP_*`, `MESOS_TASK_ID`, `MESOS_SANDBOX`), `HOME`, `USER` and `LOGNAME` of the task's
//! user when one is named, then the app's `env`, which wins.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_marathon::TaskSpec;

use crate::user::Account;

/// Variables of the agent's environment a task must not inherit (they address the agent's own
/// supervisor, e.g. systemd's notification socket and socket activation).
const NOT_INHERITED: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Longest environment entry Marathon passes for a label (`MARATHON_APP_LABEL_<K>=<V>`).
const MAX_ENV_LENGTH: usize = 512;
const LABEL_PREFIX: &str = "MARATHON_APP_LABEL_";

/// A label key as an environment variable name, as Marathon escapes it: every run of characters
/// other than ASCII letters, digits and `_` becomes one `_`, then upper case.
pub fn escape_label_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_run = false;
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_uppercase());
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// Marathon's label variables: `MARATHON_APP_LABELS` (the escaped names, space-separated) and one
/// `MARATHON_APP_LABEL_<NAME>` per label short enough to pass (key under 512 minus the prefix,
/// value under 512 characters).
pub fn label_env(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let max_key = MAX_ENV_LENGTH - LABEL_PREFIX.len();
    let valid: BTreeMap<String, &String> = labels
        .iter()
        .filter(|(k, v)| k.len() < max_key && v.len() < MAX_ENV_LENGTH)
        .map(|(k, v)| (escape_label_key(k), v))
        .collect();
    let mut env = BTreeMap::new();
    env.insert(
        "MARATHON_APP_LABELS".to_string(),
        valid.keys().cloned().collect::<Vec<_>>().join(" "),
    );
    for (k, v) in valid {
        env.insert(format!("{LABEL_PREFIX}{k}"), v.clone());
    }
    env
}

/// Marathon's port variables: `PORT0..n`, `PORT` and `PORTS` (when there are ports) and
/// `PORT_<NAME>` (name upper-cased) for every named port.
pub fn port_env(ports: &[u16], names: &[Option<String>]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (i, port) in ports.iter().enumerate() {
        env.insert(format!("PORT{i}"), port.to_string());
        if let Some(Some(name)) = names.get(i)
            && !name.is_empty()
        {
            env.insert(format!("PORT_{}", name.to_uppercase()), port.to_string());
        }
    }
    if let Some(first) = ports.first() {
        env.insert("PORT".into(), first.to_string());
        env.insert(
            "PORTS".into(),
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    env
}

/// A float the way Marathon (Scala's `Double.toString`) prints resources: `1.0`, `0.5`, `128.0`.
fn marathon_float(v: f64) -> String {
    format!("{v:?}")
}

/// Marathon's and Mesos' variables that do not depend on where the task runs: ports, `HOST`,
/// `MARATHON_APP_*` (labels included) and `MESOS_TASK_ID`.
fn marathon_env(spec: &TaskSpec, host: &str) -> BTreeMap<String, String> {
    let mut env = port_env(&spec.ports, &spec.port_names);
    for (k, v) in [
        ("HOST", host.to_string()),
        ("MARATHON_APP_ID", spec.app_id.clone()),
        ("MARATHON_APP_VERSION", spec.version.clone()),
        ("MARATHON_APP_RESOURCE_CPUS", marathon_float(spec.cpus)),
        ("MARATHON_APP_RESOURCE_MEM", marathon_float(spec.mem)),
        ("MARATHON_APP_RESOURCE_DISK", marathon_float(spec.disk)),
        ("MESOS_TASK_ID", spec.id.clone()),
    ] {
        env.insert(k.to_string(), v);
    }
    env.extend(label_env(&spec.labels));
    env
}

/// The whole environment of a task: `inherited` (the agent's environment), Marathon's and Mesos'
/// variables, `HOME`/`USER`/`LOGNAME` of the task's `user` when one is named, the app's `env`
/// last. `HOME` defaults to the sandbox when nobody set it.
pub fn task_env(
    spec: &TaskSpec,
    host: &str,
    sandbox: &Path,
    user: Option<&Account>,
    inherited: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = inherited
        .into_iter()
        .filter(|(k, _)| !NOT_INHERITED.contains(&k.as_str()))
        .collect();
    env.extend(marathon_env(spec, host));
    let sandbox = sandbox.display().to_string();
    env.insert("MESOS_SANDBOX".into(), sandbox.clone());
    env.insert("MESOS_DIRECTORY".into(), sandbox.clone());
    if let Some(user) = user {
        env.extend(user.env());
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.entry("HOME".into()).or_insert(sandbox);
    env
}

/// The environment of a Docker task: Marathon's and Mesos' variables and the app's `env` (last),
/// but neither the agent's own environment (the image brings its `PATH` and `HOME`) nor the
/// sandbox variables (the sandbox is not mounted into the container). `container_ports` are the
/// BRIDGE port mappings' container ports, in the order of the task's host ports: as Marathon
/// does, `PORT0..n` stay the host ports and `PORT_<containerPort>` names the host port of each.
pub fn container_env(
    spec: &TaskSpec,
    host: &str,
    container_ports: &[u16],
) -> BTreeMap<String, String> {
    let mut env = marathon_env(spec, host);
    for (cp, hp) in container_ports.iter().zip(&spec.ports) {
        env.insert(format!("PORT_{cp}"), hp.to_string());
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> TaskSpec {
        TaskSpec {
            id: "shop_web.1234".into(),
            app_id: "/shop/web".into(),
            version: "2026-01-01T00:00:00.000Z".into(),
            cmd: Some("run".into()),
            args: None,
            user: None,
            env: BTreeMap::from([("APP_MODE".into(), "prod".into())]),
            labels: BTreeMap::new(),
            cpus: 0.5,
            mem: 128.0,
            disk: 0.0,
            ports: vec![31001, 31002, 31003],
            port_names: vec![Some("http".into()), None, Some("admin-api".into())],
            health_checks: vec![],
            kill_grace_seconds: 3.0,
            container: None,
            networks: None,
            service_ports: vec![],
            service_name: "web-shop".into(),
        }
    }

    #[test]
    fn ports_by_index_name_and_list() {
        let env = task_env(&spec(), "10.0.0.5", Path::new("/sb"), None, []);
        assert_eq!(env["PORT0"], "31001");
        assert_eq!(env["PORT1"], "31002");
        assert_eq!(env["PORT2"], "31003");
        assert_eq!(env["PORT"], "31001");
        assert_eq!(env["PORTS"], "31001,31002,31003");
        assert_eq!(env["PORT_HTTP"], "31001");
        assert_eq!(env["PORT_ADMIN-API"], "31003");
        assert!(!env.contains_key("PORT3"));
        assert_eq!(env["HOST"], "10.0.0.5");
        assert_eq!(env["MESOS_TASK_ID"], "shop_web.1234");
        assert_eq!(env["MESOS_SANDBOX"], "/sb");
        assert_eq!(env["MARATHON_APP_ID"], "/shop/web");
        assert_eq!(env["MARATHON_APP_VERSION"], "2026-01-01T00:00:00.000Z");
        assert_eq!(env["MARATHON_APP_RESOURCE_CPUS"], "0.5");
        assert_eq!(env["MARATHON_APP_RESOURCE_MEM"], "128.0");
        assert_eq!(env["HOME"], "/sb");
        assert_eq!(env["APP_MODE"], "prod");
    }

    #[test]
    fn no_ports_means_no_port_variables() {
        let mut s = spec();
        s.ports.clear();
        s.port_names.clear();
        let env = task_env(&s, "h", Path::new("/sb"), None, []);
        assert!(env.keys().all(|k| !k.starts_with("PORT")), "{env:?}");
    }

    #[test]
    fn labels_as_marathon_passes_them() {
        let mut s = spec();
        s.labels = BTreeMap::from([
            ("team".into(), "payments".into()),
            ("lb.vhost/name".into(), "shop.example".into()),
            ("HAPROXY_GROUP".into(), "external".into()),
            ("huge".into(), "x".repeat(600)),
        ]);
        let env = task_env(&s, "h", Path::new("/sb"), None, []);
        assert_eq!(env["MARATHON_APP_LABEL_TEAM"], "payments");
        assert_eq!(env["MARATHON_APP_LABEL_LB_VHOST_NAME"], "shop.example");
        assert_eq!(env["MARATHON_APP_LABEL_HAPROXY_GROUP"], "external");
        assert!(!env.contains_key("MARATHON_APP_LABEL_HUGE"));
        assert_eq!(
            env["MARATHON_APP_LABELS"],
            "HAPROXY_GROUP LB_VHOST_NAME TEAM"
        );
        assert_eq!(escape_label_key("a--b..c"), "A_B_C");
    }

    #[test]
    fn containers_get_marathon_variables_but_not_the_agents_environment() {
        let mut s = spec();
        s.ports = vec![31001, 31002];
        s.port_names = vec![Some("http".into()), None];
        s.labels = BTreeMap::from([("team".into(), "payments".into())]);
        let env = container_env(&s, "10.0.0.5", &[8080, 9090]);
        assert_eq!(
            env["PORT0"], "31001",
            "host ports, as Marathon in BRIDGE mode"
        );
        assert_eq!(env["PORT1"], "31002");
        assert_eq!(env["PORT_8080"], "31001");
        assert_eq!(env["PORT_9090"], "31002");
        assert_eq!(env["PORT_HTTP"], "31001");
        assert_eq!(env["PORTS"], "31001,31002");
        assert_eq!(env["HOST"], "10.0.0.5");
        assert_eq!(env["MESOS_TASK_ID"], "shop_web.1234");
        assert_eq!(env["MARATHON_APP_ID"], "/shop/web");
        assert_eq!(env["MARATHON_APP_LABEL_TEAM"], "payments");
        assert_eq!(env["APP_MODE"], "prod");
        for absent in ["HOME", "PATH", "MESOS_SANDBOX", "MESOS_DIRECTORY"] {
            assert!(!env.contains_key(absent), "{absent} in {env:?}");
        }
        // HOST networking: no container ports, no PORT_<n>.
        let env = container_env(&s, "h", &[]);
        assert!(!env.contains_key("PORT_8080"));
    }

    #[test]
    fn a_named_user_gets_its_home_user_and_logname() {
        let nobody = Account {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            home: "/nonexistent".into(),
        };
        let inherited = [
            ("HOME".to_string(), "/root".to_string()),
            ("USER".to_string(), "root".to_string()),
        ];
        let env = task_env(
            &spec(),
            "h",
            Path::new("/sb"),
            Some(&nobody),
            inherited.clone(),
        );
        assert_eq!(env["HOME"], "/nonexistent", "not the agent's");
        assert_eq!(env["USER"], "nobody");
        assert_eq!(env["LOGNAME"], "nobody");
        let mut s = spec();
        s.env.insert("HOME".into(), "/srv/app".into());
        let env = task_env(&s, "h", Path::new("/sb"), Some(&nobody), inherited.clone());
        assert_eq!(env["HOME"], "/srv/app", "the app's env wins");
        let env = task_env(&spec(), "h", Path::new("/sb"), None, inherited);
        assert_eq!(
            env["USER"], "root",
            "no user named: the agent's environment"
        );
    }

    #[test]
    fn app_env_wins_and_agent_env_is_inherited() {
        let mut s = spec();
        s.env.insert("PORT".into(), "80".into());
        s.env.insert("HOME".into(), "/home/app".into());
        let inherited = [
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            (
                "NOTIFY_SOCKET".to_string(),
                "/run/systemd/notify".to_string(),
            ),
            ("HOST".to_string(), "agent-env".to_string()),
        ];
        let env = task_env(&s, "10.0.0.5", Path::new("/sb"), None, inherited);
        assert_eq!(env["PATH"], "/usr/bin:/bin");
        assert!(!env.contains_key("NOTIFY_SOCKET"));
        assert_eq!(env["HOST"], "10.0.0.5", "Marathon's HOST over the agent's");
        assert_eq!(env["PORT"], "80", "the app's env over Marathon's");
        assert_eq!(env["HOME"], "/home/app");
    }
}
