//! Turning request JSON into a valid [`App`], or Marathon's 422 body:
//! `{"message":"Object is not valid","details":[{"path":"/cpus","errors":["..."]}]}`. Type errors
//! stop at the first (serde decodes one path at a time); rule violations are all collected, so an
//! operator fixes a file in one round.

mod networking;

use serde_json::Value;

use crate::app::{App, PortDefinition};
use crate::constraint::Operator;
use crate::violation::{ValidationError, Violation, marathon_path};

/// Parses and validates an app from a JSON body. `id_from_path`, when given (PUT
/// `/v2/apps/{id}`), is used when the body has no id and must match one it has.
pub fn parse_app(value: Value, id_from_path: Option<&str>) -> Result<App, ValidationError> {
    if !value.is_object() {
        return Err(ValidationError::Invalid(vec![Violation {
            path: "/".into(),
            errors: vec!["an app definition must be a JSON object".into()],
        }]));
    }
    let mut app: App = serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.inner().to_string();
        let path = marathon_path(e.path());
        ValidationError::Invalid(vec![Violation {
            path,
            errors: vec![inner],
        }])
    })?;
    let mut v = Vec::new();
    let mut bad =
        |path: &str, msg: String| match v.iter_mut().find(|x: &&mut Violation| x.path == path) {
            Some(x) => x.errors.push(msg),
            None => v.push(Violation {
                path: path.to_string(),
                errors: vec![msg],
            }),
        };

    if let Some(path_id) = id_from_path {
        let path_id = normalize_id(path_id);
        if app.id.is_empty() {
            app.id = path_id;
        } else if normalize_id(&app.id) != path_id {
            bad(
                "/id",
                format!(
                    "id {:?} does not match the URL's app id {path_id:?}",
                    app.id
                ),
            );
        }
    }
    app.id = normalize_id(&app.id);
    if let Err(e) = check_id(&app.id) {
        bad("/id", e);
    }

    match (&app.cmd, &app.args, &app.container) {
        (Some(_), Some(_), _) => bad("/", "cmd and args are mutually exclusive".into()),
        (None, None, None) => bad("/", "an app needs cmd, args or container".into()),
        _ => {}
    }
    // Networking first: both of Marathon's forms become the 1.5+ one, so every rule below
    // (and every reader of the stored app) sees one shape.
    for x in networking::normalize(&mut app) {
        for e in x.errors {
            bad(&x.path, e);
        }
    }
    let mut mapped = false;
    if let Some(c) = &app.container {
        match c.get("type").and_then(Value::as_str) {
            None | Some("DOCKER") | Some("MESOS") => {
                match crate::container::docker_spec(c, app.networks.as_deref()) {
                    Ok(d) => mapped = d.is_some_and(|d| d.maps_ports()),
                    Err(vs) => {
                        for x in vs {
                            for e in x.errors {
                                bad(&x.path, e);
                            }
                        }
                    }
                }
            }
            Some(t) => bad(
                "/container/type",
                format!("unknown container type {t:?} (DOCKER or MESOS)"),
            ),
        }
    }
    for (path, x) in [
        ("/cpus", app.cpus),
        ("/mem", app.mem),
        ("/disk", app.disk),
        ("/gpus", app.gpus),
        ("/backoffSeconds", app.backoff_seconds),
        ("/maxLaunchDelaySeconds", app.max_launch_delay_seconds),
    ] {
        if !x.is_finite() || x < 0.0 {
            bad(path, format!("must be a non-negative number, got {x}"));
        }
    }
    if app.instances < 0 {
        bad("/instances", format!("must be >= 0, got {}", app.instances));
    } else if app.instances > MAX_INSTANCES {
        bad(
            "/instances",
            format!("must be <= {MAX_INSTANCES}, got {}", app.instances),
        );
    }
    if !app.backoff_factor.is_finite() || app.backoff_factor < 1.0 {
        bad(
            "/backoffFactor",
            format!("must be >= 1.0, got {}", app.backoff_factor),
        );
    }
    if let Some(g) = app.task_kill_grace_period_seconds
        && (!g.is_finite() || g < 0.0)
    {
        bad(
            "/taskKillGracePeriodSeconds",
            format!("must be >= 0, got {g}"),
        );
    }
    let us = &app.upgrade_strategy;
    if !(0.0..=1.0).contains(&us.minimum_health_capacity) {
        bad(
            "/upgradeStrategy/minimumHealthCapacity",
            "must be between 0 and 1".into(),
        );
    }
    if !(0.0..=1.0).contains(&us.maximum_over_capacity) {
        bad(
            "/upgradeStrategy/maximumOverCapacity",
            "must be between 0 and 1".into(),
        );
    }
    if !matches!(
        app.kill_selection.as_str(),
        "YOUNGEST_FIRST" | "OLDEST_FIRST"
    ) {
        bad(
            "/killSelection",
            "must be YOUNGEST_FIRST or OLDEST_FIRST".into(),
        );
    }
    for k in app.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            bad(
                &format!("/env/{k}"),
                "not a valid environment variable name".into(),
            );
        }
    }

    for (i, c) in app.constraints.iter().enumerate() {
        let path = format!("/constraints({i})");
        let value = c.value.as_deref();
        match c.operator {
            Operator::Unique => {
                if value.is_some_and(|v| !v.is_empty()) {
                    bad(&path, "UNIQUE takes no value".into());
                }
            }
            Operator::Cluster => {}
            Operator::GroupBy => {
                if let Some(n) = value.filter(|v| !v.is_empty())
                    && n.parse::<u32>().map_or(true, |n| n == 0)
                {
                    bad(
                        &path,
                        format!("GROUP_BY value must be a positive integer, got {n:?}"),
                    );
                }
            }
            Operator::MaxPer => match value.map(str::parse::<u32>) {
                Some(Ok(n)) if n > 0 => {}
                _ => bad(&path, "MAX_PER needs a positive integer value".into()),
            },
            Operator::Like | Operator::Unlike => match value {
                None => bad(&path, format!("{} needs a regular expression", c.operator)),
                Some(re) => {
                    if let Err(e) = regex::Regex::new(&format!("^(?:{re})$")) {
                        bad(&path, format!("invalid regular expression {re:?}: {e}"));
                    }
                }
            },
            Operator::Is => {
                if value.is_none() {
                    bad(&path, "IS needs a value".into());
                }
            }
        }
    }

    // `ports` (older form) becomes portDefinitions; none at all means one assigned port.
    match (app.port_definitions.is_some(), app.ports.take()) {
        // Off the host network the ports are the port mappings; `networking::normalize` refused
        // any port definitions already.
        _ if mapped => app.port_definitions = None,
        (true, Some(_)) => bad("/ports", "give ports or portDefinitions, not both".into()),
        (false, Some(ports)) => {
            app.port_definitions = Some(
                ports
                    .into_iter()
                    .map(|port| PortDefinition {
                        port,
                        protocol: "tcp".into(),
                        name: None,
                        labels: Default::default(),
                    })
                    .collect(),
            )
        }
        (false, None) => {
            app.port_definitions = Some(vec![PortDefinition {
                port: 0,
                protocol: "tcp".into(),
                name: None,
                labels: Default::default(),
            }])
        }
        _ => {}
    }
    let defs = app.port_definitions.clone().unwrap_or_default();
    let mut names = std::collections::HashSet::new();
    for (i, p) in defs.iter().enumerate() {
        let path = format!("/portDefinitions({i})");
        if !(0..=65535).contains(&p.port) {
            bad(
                &format!("{path}/port"),
                format!("must be 0-65535, got {}", p.port),
            );
        }
        if app.require_ports && p.port == 0 {
            bad(
                &format!("{path}/port"),
                "requirePorts needs explicit port numbers".into(),
            );
        }
        if !p
            .protocol
            .split(',')
            .all(|x| matches!(x, "tcp" | "udp" | "udp,tcp"))
        {
            bad(
                &format!("{path}/protocol"),
                "must be tcp, udp or udp,tcp".into(),
            );
        }
        if let Some(n) = &p.name
            && !names.insert(n.clone())
        {
            bad(
                &format!("{path}/name"),
                format!("port name {n:?} is used twice"),
            );
        }
    }
    if app.require_ports {
        let mut seen = std::collections::HashSet::new();
        for p in &defs {
            if !seen.insert(p.port) {
                bad(
                    "/portDefinitions",
                    format!("port {} is required twice", p.port),
                );
            }
        }
    }

    for (i, hc) in app.health_checks.iter().enumerate() {
        let path = format!("/healthChecks({i})");
        match hc.kind() {
            "HTTP" | "HTTPS" | "TCP" => {
                if hc.port.is_none() {
                    let idx = hc.port_index.unwrap_or(0);
                    // BRIDGE containers count their port mappings, others their definitions.
                    let ports = app.port_count();
                    if idx < 0 || idx as usize >= ports {
                        bad(
                            &format!("{path}/portIndex"),
                            format!("port index {idx} but the app has {ports} ports"),
                        );
                    }
                }
                if let Some(p) = hc.port
                    && !(1..=65535).contains(&p)
                {
                    bad(&format!("{path}/port"), format!("must be 1-65535, got {p}"));
                }
            }
            "COMMAND" => {
                if hc
                    .command
                    .as_ref()
                    .is_none_or(|c| c.value.trim().is_empty())
                {
                    bad(
                        &format!("{path}/command"),
                        "COMMAND checks need command.value".into(),
                    );
                }
            }
            other => bad(
                &format!("{path}/protocol"),
                format!("unknown protocol {other:?} (HTTP, HTTPS, TCP, COMMAND)"),
            ),
        }
        if hc.interval_seconds == 0 {
            bad(&format!("{path}/intervalSeconds"), "must be > 0".into());
        }
        if hc.timeout_seconds == 0 {
            bad(&format!("{path}/timeoutSeconds"), "must be > 0".into());
        }
        if let Some(p) = &hc.path
            && !p.starts_with('/')
        {
            bad(&format!("{path}/path"), "must start with /".into());
        }
    }
    if let Err(violations) = crate::autoscale::Policy::from_labels(&app.labels, MAX_INSTANCES) {
        for x in violations {
            for e in x.errors {
                bad(&x.path, e);
            }
        }
    }

    if v.is_empty() {
        Ok(app)
    } else {
        Err(ValidationError::Invalid(v))
    }
}

/// A stored app in the current canonical form (Marathon 1.5+ networking, see
/// [`networking`]): apps stored by an offerd from before it are converted when loaded, so an
/// update compares like with like. One the rules now refuse stays as it was.
pub fn canonical(app: App) -> App {
    let mut converted = app.clone();
    if networking::normalize(&mut converted).is_empty() {
        converted
    } else {
        app
    }
}

/// `web` → `/web`; trailing slashes dropped.
pub fn normalize_id(id: &str) -> String {
    let trimmed = id.trim().trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// Most instances an app may ask for. Marathon has no bound; cairn keeps every task in memory
/// and in one store, so an app of a billion instances (a typo) must not be accepted: 10,000 is
/// more than any one app of a fleet this size runs.
pub const MAX_INSTANCES: i64 = 10_000;

/// Longest app id (with its leading `/`). A task id is the app id (its `/` turned into `_`,
/// without the leading one) plus `.` and a 36-character UUID, and it names the task's sandbox
/// directory, which file systems limit to 255 bytes: 200 leaves room to spare.
pub const MAX_ID_LEN: usize = 200;

fn check_id(id: &str) -> Result<(), String> {
    if id == "/" {
        return Err("app id must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "app id is {} characters long; at most {MAX_ID_LEN} (it names the tasks' sandbox directories)",
            id.len()
        ));
    }
    for seg in id.trim_start_matches('/').split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !seg.starts_with('-')
            && !seg.ends_with('-');
        if !ok {
            return Err(format!(
                "path segment {seg:?} of {id:?} is invalid: use lowercase letters, digits, '-' and '.', not starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(v: Value) -> Vec<String> {
        parse_app(v, None)
            .unwrap_err()
            .violations()
            .iter()
            .map(|x| x.path.clone())
            .collect()
    }

    #[test]
    fn fills_marathon_defaults() {
        let app = parse_app(json!({"id": "web", "cmd": "sleep 100"}), None).unwrap();
        assert_eq!(app.id, "/web");
        assert_eq!((app.cpus, app.mem, app.instances), (1.0, 128.0, 1));
        assert_eq!(app.backoff_factor, 1.15);
        assert_eq!(app.max_launch_delay_seconds, 300.0);
        assert_eq!(app.port_count(), 1);
        assert_eq!(app.upgrade_strategy.minimum_health_capacity, 1.0);
        let out = serde_json::to_value(&app).unwrap();
        assert_eq!(out["portDefinitions"][0]["port"], 0);
        assert!(out.get("ports").is_none());
    }

    #[test]
    fn type_errors_name_the_path() {
        assert_eq!(
            paths(json!({"id": "/a", "cmd": "x", "cpus": "lots"})),
            ["/cpus"]
        );
        assert_eq!(
            paths(
                json!({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "TCP", "bogus": 1}]})
            ),
            ["/healthChecks(0)/bogus"]
        );
        assert_eq!(
            paths(json!({"id": "/a", "cmd": "x", "instance": 3})),
            ["/instance"]
        );
        assert_eq!(
            paths(json!({"id": "/a", "cmd": "x", "constraints": [["hostname", "NEAR"]]})),
            ["/constraints(0)"]
        );
    }

    #[test]
    fn rule_violations_are_all_reported() {
        let p = paths(json!({
            "id": "/Bad_Id", "cmd": "x", "cpus": -1, "mem": -5, "instances": -2,
            "constraints": [["rack", "MAX_PER"], ["zone", "LIKE", "("]],
            "healthChecks": [{"protocol": "HTTP", "portIndex": 3}]
        }));
        for want in [
            "/id",
            "/cpus",
            "/mem",
            "/instances",
            "/constraints(0)",
            "/constraints(1)",
            "/healthChecks(0)/portIndex",
        ] {
            assert!(p.contains(&want.to_string()), "{want} missing from {p:?}");
        }
    }

    #[test]
    fn instances_and_id_length_are_bounded() {
        let app = |id: &str, n: i64| parse_app(json!({"id": id, "cmd": "x", "instances": n}), None);
        assert!(app("/a", MAX_INSTANCES).is_ok());
        let err = app("/a", MAX_INSTANCES + 1).unwrap_err();
        assert_eq!(
            paths(json!({"id": "/a", "cmd": "x", "instances": MAX_INSTANCES + 1})),
            ["/instances"]
        );
        assert!(format!("{err:?}").contains("must be <= 10000"), "{err:?}");

        let longest = format!("/{}", vec!["a".repeat(49); 4].join("/")); // 1 + 4*49 + 3 = 200
        assert_eq!(longest.len(), MAX_ID_LEN);
        let a = app(&longest, 1).expect("the longest id is valid");
        let task = crate::task_id_for(&a.id, &"0".repeat(36));
        assert!(
            task.len() <= 255,
            "a task id names a directory: {}",
            task.len()
        );
        let too_long = format!("{longest}b");
        assert_eq!(paths(json!({"id": too_long, "cmd": "x"})), ["/id"]);
    }

    #[test]
    fn needs_exactly_one_command_form() {
        assert_eq!(paths(json!({"id": "/a"})), ["/"]);
        assert_eq!(paths(json!({"id": "/a", "cmd": "x", "args": ["y"]})), ["/"]);
        assert!(parse_app(json!({"id": "/a", "args": ["sleep", "1"]}), None).is_ok());
    }

    #[test]
    fn url_id_fills_or_must_match() {
        assert_eq!(
            parse_app(json!({"cmd": "x"}), Some("/a/b")).unwrap().id,
            "/a/b"
        );
        assert_eq!(paths_with(json!({"id": "/c", "cmd": "x"}), "/a"), ["/id"]);
    }

    fn paths_with(v: Value, id: &str) -> Vec<String> {
        parse_app(v, Some(id))
            .unwrap_err()
            .violations()
            .iter()
            .map(|x| x.path.clone())
            .collect()
    }

    #[test]
    fn docker_bridge_apps_take_ports_from_mappings() {
        let app = parse_app(
            json!({"id": "/d", "container": {"type": "DOCKER", "docker": {"image": "busybox", "network": "BRIDGE"},
                "portMappings": [{"containerPort": 80}, {"containerPort": 443}]}}),
            None,
        )
        .unwrap();
        assert_eq!(app.port_count(), 2);
        assert!(app.port_definitions.is_none());
        let checked = json!({"id": "/d", "container": {"type": "DOCKER", "docker": {"image": "b", "network": "BRIDGE"},
            "portMappings": [{"containerPort": 80}]}, "healthChecks": [{"protocol": "HTTP", "portIndex": 0}]});
        assert!(parse_app(checked, None).is_ok());
        let host = parse_app(
            json!({"id": "/h", "container": {"docker": {"image": "busybox"}}}),
            None,
        )
        .unwrap();
        assert_eq!(host.port_count(), 1);
        assert_eq!(
            paths(
                json!({"id": "/d", "container": {"type": "DOCKER", "docker": {"image": "x", "network": "BRIDGE"},
                "portMappings": [{"containerPort": 0}]}})
            ),
            ["/container/portMappings(0)/containerPort"]
        );
    }

    #[test]
    fn older_ports_form_is_folded() {
        let app = parse_app(json!({"id": "/a", "cmd": "x", "ports": [0, 0]}), None).unwrap();
        assert_eq!(app.port_count(), 2);
    }
}
