//! Job definitions: Metronome's examples parse, every rule answers with its 422 path (one row
//! per case), defaults are written as Metronome writes a created job, and what is written
//! reads back as the same job.

use cairn_metronome::{
    ConstraintOperator, JobSpec, MAX_JOB_ID_LEN, RestartPolicy, VolumeMode, parse_job,
};
use serde_json::{Value, json};

fn example(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The smallest valid job, with `patch` merged in (a `null` removes a field).
fn job(patch: Value) -> Value {
    let mut base =
        json!({"id": "nightly", "run": {"cmd": "echo hi", "cpus": 0.1, "mem": 32, "disk": 0}});
    merge(&mut base, patch);
    base
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

fn roundtrip(spec: &JobSpec) {
    let out = serde_json::to_value(spec).unwrap();
    let again = parse_job(out.clone(), None).unwrap_or_else(|e| panic!("{out}: {e}"));
    assert_eq!(&again, spec, "written and read back: {out}");
}

#[test]
fn invalid_jobs_name_the_path() {
    #[rustfmt::skip]
    let table: Vec<(&str, Value, &str, &str)> = vec![
        ("id with capitals", job(json!({"id": "Bad_Id"})), "/id", "not a valid job id"),
        ("id starting with a dash", job(json!({"id": "-a"})), "/id", "not a valid job id"),
        ("empty name in id", job(json!({"id": "a..b"})), "/id", "not a valid job id"),
        ("slash in id", job(json!({"id": "/not/valid"})), "/id", "not a valid job id"),
        ("id too long", job(json!({"id": "a".repeat(MAX_JOB_ID_LEN + 1)})), "/id", "at most 160"),
        ("no id", job(json!({"id": null})), "/id", "missing field"),
        ("no run", job(json!({"run": null})), "/run", "missing field"),
        ("not an object", json!(["nightly"]), "/", "JSON object"),
        ("unknown field", job(json!({"bogus": 1})), "/bogus", "unknown field"),
        ("unknown field in run", job(json!({"run": {"instances": 2}})), "/run/instances", "unknown field"),
        ("mem below Metronome's minimum", job(json!({"run": {"mem": 16}})), "/run/mem", "at least 32"),
        ("cpus below Metronome's minimum", job(json!({"run": {"cpus": 0.001}})), "/run/cpus", "at least 0.01"),
        ("negative disk", job(json!({"run": {"disk": -1}})), "/run/disk", "at least 0"),
        ("cpus of the wrong type", job(json!({"run": {"cpus": "1"}})), "/run/cpus", "invalid type"),
        ("cmd and args", job(json!({"run": {"args": ["-c", "x"]}})), "/run", "mutually exclusive"),
        ("nothing to run", job(json!({"run": {"cmd": null}})), "/run", "Cmd, Docker or UCR image must be specified"),
        ("args without an image", job(json!({"run": {"cmd": null, "args": ["x"]}})), "/run", "Cmd, Docker or UCR image"),
        ("empty cmd", job(json!({"run": {"cmd": ""}})), "/run/cmd", "must not be empty"),
        ("empty image", job(json!({"run": {"cmd": null, "docker": {"image": " "}}})), "/run/docker/image", "must not be empty"),
        ("unknown docker field", job(json!({"run": {"docker": {"image": "x", "network": "BRIDGE"}}})), "/run/docker/network", "unknown field"),
        ("secret env", job(json!({"run": {"env": {"DB_PASSWORD": {"secret": "pw"}}}})), "/run/env/DB_PASSWORD", "no secret store"),
        ("env not a string", job(json!({"run": {"env": {"N": 1}}})), "/run/env/N", "must be a string"),
        ("secrets", job(json!({"run": {"secrets": {"pw": {"source": "/db/pw"}}}})), "/run/secrets", "no secret store"),
        ("artifacts", job(json!({"run": {"artifacts": [{"uri": "http://x/app.tgz"}]}})), "/run/artifacts", "do not fetch artifacts"),
        ("ucr", job(json!({"run": {"ucr": {"image": {"id": "ubuntu"}}}})), "/run/ucr", "give run.docker"),
        ("bad restart policy", job(json!({"run": {"restart": {"policy": "ALWAYS"}}})), "/run/restart/policy", "unknown variant `ALWAYS`"),
        ("negative active deadline", job(json!({"run": {"restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": -5}}})), "/run/restart/activeDeadlineSeconds", "invalid value"),
        ("maxLaunchDelay 0", job(json!({"run": {"maxLaunchDelay": 0}})), "/run/maxLaunchDelay", "at least 1"),
        ("negative kill grace", job(json!({"run": {"taskKillGracePeriodSeconds": -1}})), "/run/taskKillGracePeriodSeconds", "non-negative"),
        ("bad constraint operator", job(json!({"run": {"placement": {"constraints": [{"attribute": "rack", "operator": "GROUP_BY", "value": "2"}]}}})),
            "/run/placement/constraints(0)/operator", "unknown variant `GROUP_BY`"),
        ("constraint without value", job(json!({"run": {"placement": {"constraints": [{"attribute": "rack", "operator": "IS"}]}}})),
            "/run/placement/constraints(0)/value", "IS needs a value"),
        ("bad LIKE expression", job(json!({"run": {"placement": {"constraints": [{"attribute": "rack", "operator": "LIKE", "value": "("}]}}})),
            "/run/placement/constraints(0)/value", "invalid regular expression"),
        ("constraint of the wrong type", job(json!({"run": {"placement": {"constraints": ["rack:IS:r1"]}}})),
            "/run/placement/constraints(0)", "invalid type"),
        ("container network", job(json!({"run": {"networks": [{"mode": "container", "name": "calico"}]}})),
            "/run/networks(0)/mode", "host network only"),
        ("named host network", job(json!({"run": {"networks": [{"mode": "host", "name": "x"}]}})),
            "/run/networks(0)/name", "must be empty for host network"),
        ("volumes without docker", job(json!({"run": {"volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RW"}]}})),
            "/run/volumes", "need run.docker"),
        ("secret volume", job(json!({"run": {"docker": {"image": "x"}, "volumes": [{"containerPath": "/s", "secret": "pw"}]}})),
            "/run/volumes(0)", "secret volumes are not supported"),
        ("volume without mode", job(json!({"run": {"docker": {"image": "x"}, "volumes": [{"containerPath": "/data", "hostPath": "/srv"}]}})),
            "/run/volumes(0)", "needs containerPath, hostPath and mode"),
        ("bad volume mode", job(json!({"run": {"docker": {"image": "x"}, "volumes": [{"containerPath": "/d", "hostPath": "/s", "mode": "RX"}]}})),
            "/run/volumes(0)/mode", "unknown variant"),
        ("gpus with docker", job(json!({"run": {"gpus": 1, "docker": {"image": "x"}}})), "/run/gpus", "not supported with Docker"),
        // Marathon's own rules on the run's app, mapped back to the job's paths.
        ("unsupported docker parameter", job(json!({"run": {"docker": {"image": "x", "parameters": [{"key": "privileged-mode", "value": "1"}]}}})),
            "/run/docker/parameters(0)/key", "unsupported docker parameter"),
        ("relative container path", job(json!({"run": {"docker": {"image": "x"}, "volumes": [{"containerPath": "data", "hostPath": "/srv", "mode": "RO"}]}})),
            "/run/volumes(0)/containerPath", "absolute path"),
        ("bad env name", job(json!({"run": {"env": {"A=B": "c"}}})), "/run/env/A=B", "not a valid environment variable name"),
        ("bad autoscale label", job(json!({"labels": {"cairn.autoscale.bogus": "1"}})), "/labels/cairn.autoscale.bogus", "unknown autoscaling label"),
        // Schedules.
        ("bad cron", job(json!({"schedules": [{"id": "daily", "cron": "61 * * * *"}]})), "/schedules(0)/cron", "minute field"),
        ("never-firing cron", job(json!({"schedules": [{"id": "daily", "cron": "0 0 31 2 *"}]})), "/schedules(0)/cron", "matches no date"),
        ("no cron", job(json!({"schedules": [{"id": "daily"}]})), "/schedules(0)/cron", "missing field"),
        ("bad timezone", job(json!({"schedules": [{"id": "daily", "cron": "0 0 * * *", "timezone": "Mars/Olympus"}]})),
            "/schedules(0)/timezone", "No time zone found"),
        ("bad concurrencyPolicy", job(json!({"schedules": [{"id": "daily", "cron": "0 0 * * *", "concurrencyPolicy": "SKIP"}]})),
            "/schedules(0)/concurrencyPolicy", "unknown variant `SKIP`"),
        ("short starting deadline", job(json!({"schedules": [{"id": "daily", "cron": "0 0 * * *", "startingDeadlineSeconds": 30}]})),
            "/schedules(0)/startingDeadlineSeconds", "expected 60 or more"),
        ("bad schedule id", job(json!({"schedules": [{"id": "Daily", "cron": "0 0 * * *"}]})), "/schedules(0)/id", "not a valid schedule id"),
        ("two schedules", job(json!({"schedules": [{"id": "a", "cron": "0 0 * * *"}, {"id": "b", "cron": "0 1 * * *"}]})),
            "/schedules", "at most one schedule"),
        ("schedules and dependencies", job(json!({"schedules": [{"id": "a", "cron": "0 0 * * *"}], "dependencies": [{"id": "other"}]})),
            "/", "both dependencies and schedules"),
        // Dependencies.
        ("bad dependency id", job(json!({"dependencies": [{"id": "Other"}]})), "/dependencies(0)/id", "not a valid job id"),
        ("dependency on itself", job(json!({"dependencies": [{"id": "nightly"}]})), "/dependencies(0)/id", "itself"),
        ("double dependency", job(json!({"dependencies": [{"id": "a"}, {"id": "a"}]})), "/dependencies", "has double entries"),
    ];
    for (case, body, path, message) in table {
        let err = parse_job(body.clone(), None).expect_err(case);
        let v = err.violations();
        let hit = v.iter().find(|x| x.path == path);
        let Some(hit) = hit else {
            panic!("{case}: no violation at {path}: {v:?}");
        };
        assert!(
            hit.errors.iter().any(|e| e.contains(message)),
            "{case}: {path} says {:?}, not {message:?}",
            hit.errors
        );
        assert_eq!(err.body()["message"], "Object is not valid", "{case}");
    }
}

#[test]
fn valid_jobs_parse_and_round_trip() {
    #[rustfmt::skip]
    let table: Vec<(&str, Value)> = vec![
        ("minimal", job(json!({}))),
        ("Metronome's examples/job_docker_param.json", example("job_docker_param.json")),
        ("args with an image", job(json!({"run": {"cmd": null, "args": ["--once"], "docker": {"image": "busybox"}}}))),
        ("activeDeadlineSeconds with NEVER (Metronome's own example has it)",
            job(json!({"run": {"restart": {"policy": "NEVER", "activeDeadlineSeconds": 120}}}))),
        ("ON_FAILURE", job(json!({"run": {"restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 600}}}))),
        ("EQ, LIKE, UNLIKE", job(json!({"run": {"placement": {"constraints": [
            {"attribute": "rack", "operator": "EQ", "value": "r1"},
            {"attribute": "hostname", "operator": "LIKE", "value": "node-[0-9]+"},
            {"attribute": "zone", "operator": "UNLIKE", "value": "z3"}]}}}))),
        ("host network", job(json!({"run": {"networks": [{"mode": "host"}]}}))),
        ("dependencies", job(json!({"dependencies": [{"id": "prod.extract"}, {"id": "prod.load"}]}))),
        ("consecutive hyphens (Metronome #391)", job(json!({"id": "a--b.c---d"}))),
        ("longest id", job(json!({"id": "a".repeat(MAX_JOB_ID_LEN)}))),
        ("schedule with every field", job(json!({"schedules": [{"id": "everyminute", "cron": "* * * * *",
            "concurrencyPolicy": "FORBID", "enabled": false, "startingDeadlineSeconds": 60, "timezone": "America/Chicago"}]}))),
        ("schedule as read back, with nextRunAt", job(json!({"schedules": [{"id": "daily", "cron": "0 3 * * *",
            "nextRunAt": "2024-01-01T03:00:00.000+0000"}]}))),
        ("kill grace period, fraction dropped", job(json!({"run": {"taskKillGracePeriodSeconds": 7.9}}))),
        ("nulls for optional fields", job(json!({"description": Value::Null, "run": {"user": Value::Null}}))),
    ];
    for (case, body) in table {
        let spec = parse_job(body.clone(), None).unwrap_or_else(|e| panic!("{case}: {e}"));
        roundtrip(&spec);
    }
}

#[test]
fn metronome_job_example_is_read_and_refused_only_where_cairn_cannot_run_it() {
    // examples/job.json asks for artifacts and a Calico container network: the only two
    // things refused.
    let err = parse_job(example("job.json"), None).unwrap_err();
    let mut paths: Vec<&str> = err.violations().iter().map(|v| v.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/run/artifacts", "/run/networks(0)/mode"]);

    let mut body = example("job.json");
    let run = body["run"].as_object_mut().unwrap();
    run.remove("artifacts");
    run.remove("networks");
    let spec = parse_job(body, None).unwrap();
    assert_eq!(spec.id, "prod.example.app");
    assert_eq!(spec.description.as_deref(), Some("Example Application"));
    assert_eq!(spec.labels["owner"], "zeus");
    let run = &spec.run;
    assert_eq!((run.cpus, run.mem, run.disk), (1.5, 32.0, 128.0));
    assert_eq!(run.cmd.as_deref(), Some("nuke --dry --master local"));
    assert_eq!(run.docker.as_ref().unwrap().image, "foo/bla:test");
    assert_eq!(run.env["CONNECT"], "direct");
    assert_eq!(run.max_launch_delay, 3600);
    let c = &run.placement.constraints[0];
    assert_eq!(
        (c.attribute.as_str(), c.operator, c.value.as_deref()),
        ("rack", ConstraintOperator::Is, Some("rack-2"))
    );
    assert_eq!(run.restart.policy, RestartPolicy::Never);
    assert_eq!(run.restart.active_deadline_seconds, Some(120));
    assert_eq!(run.user.as_deref(), Some("root"));
    assert_eq!(run.volumes[0].mode, VolumeMode::ReadWrite);
    roundtrip(&spec);

    // Written back: every field of the example as it was (EQ is written as IS, as Metronome
    // does), plus the defaults.
    let out = serde_json::to_value(&spec).unwrap();
    let mut want = example("job.json");
    let run = want["run"].as_object_mut().unwrap();
    run.insert("artifacts".into(), json!([]));
    run.insert("networks".into(), json!([]));
    run["placement"]["constraints"][0]["operator"] = json!("IS");
    run.insert("gpus".into(), json!(0));
    run.insert("secrets".into(), json!({}));
    run["docker"] = json!({"image": "foo/bla:test", "privileged": false, "parameters": [], "forcePullImage": false});
    want["dependencies"] = json!([]);
    assert_same_json(&out, &want);
}

#[test]
fn defaults_are_written_as_metronome_writes_a_created_job() {
    // The first job of Metronome's examples/job_list.json (a GET of created jobs), sent with
    // only what it sets: what comes back is the example plus the fields newer Metronome writes
    // (dependencies, gpus, secrets, networks).
    let sent = json!({"id": "prod.email.summary", "description": "Send summary every day",
        "run": {"cmd": "sendSummary", "cpus": 0.1, "mem": 32, "disk": 0,
                "restart": {"activeDeadlineSeconds": 120}}});
    let out = serde_json::to_value(parse_job(sent, None).unwrap()).unwrap();
    let want = json!({
        "description": "Send summary every day",
        "id": "prod.email.summary",
        "labels": {},
        "schedules": [],
        "dependencies": [],
        "run": {
            "artifacts": [],
            "cmd": "sendSummary",
            "cpus": 0.1,
            "disk": 0,
            "env": {},
            "maxLaunchDelay": 3600,
            "mem": 32,
            "placement": {"constraints": []},
            "restart": {"activeDeadlineSeconds": 120, "policy": "NEVER"},
            "volumes": [],
            "gpus": 0,
            "secrets": {},
            "networks": []
        }
    });
    assert_same_json(&out, &want);

    // Nothing given but what Metronome requires: its model's defaults.
    let bare =
        serde_json::to_value(parse_job(json!({"id": "a", "run": {"cmd": "x"}}), None).unwrap())
            .unwrap();
    assert_eq!(bare["run"]["cpus"], json!(1.0));
    assert_eq!(bare["run"]["mem"], json!(128.0));
    assert_eq!(bare["run"]["disk"], json!(0.0));
    assert!(bare.get("description").is_none());
    for omitted in [
        "args",
        "user",
        "docker",
        "ucr",
        "taskKillGracePeriodSeconds",
    ] {
        assert!(
            bare["run"].get(omitted).is_none(),
            "{omitted} is omitted when unset"
        );
    }
}

/// Equal as JSON, numbers compared by value (Metronome writes 32 where serde writes 32.0).
fn assert_same_json(got: &Value, want: &Value) {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
            }
            _ => a == b,
        }
    }
    assert!(same(got, want), "got {got:#}\nwant {want:#}");
}

#[test]
fn the_url_id_replaces_the_body_id_as_in_metronome_put() {
    let spec = parse_job(job(json!({"id": "old"})), Some("new.name")).unwrap();
    assert_eq!(spec.id, "new.name");
    // Metronome's schema still requires a valid id in the body.
    let paths = |body: Value, id: &str| -> Vec<String> {
        parse_job(body, Some(id))
            .unwrap_err()
            .violations()
            .iter()
            .map(|v| v.path.clone())
            .collect()
    };
    assert_eq!(paths(job(json!({"id": null})), "nightly"), ["/id"]);
    assert_eq!(paths(job(json!({"id": "Bad"})), "nightly"), ["/id"]);
    assert_eq!(paths(job(json!({})), "Bad"), ["/id"]);
}

#[test]
fn to_app_is_a_valid_marathon_app_with_the_jobs_fields() {
    let spec = parse_job(
        json!({
            "id": "prod.backup",
            "labels": {"team": "db"},
            "run": {
                "cmd": "backup --all",
                "cpus": 0.5, "mem": 256, "disk": 1024,
                "user": "backup",
                "env": {"TARGET": "s3://bucket"},
                "docker": {"image": "registry/backup:1", "forcePullImage": true,
                           "parameters": [{"key": "cap-drop", "value": "ALL"}]},
                "volumes": [{"containerPath": "/data", "hostPath": "/srv/data", "mode": "RO"}],
                "placement": {"constraints": [
                    {"attribute": "rack", "operator": "EQ", "value": "r2"},
                    {"attribute": "hostname", "operator": "UNLIKE", "value": "db-.*"}]},
                "taskKillGracePeriodSeconds": 30
            }
        }),
        None,
    )
    .unwrap();
    let app = spec.to_app("20240101120000Ab3x9").unwrap();
    assert_eq!(app.id, "/metronome/prod.backup/20240101120000ab3x9");
    assert_eq!(
        cairn_metronome::job_id_of_app(&app.id).as_deref(),
        Some("prod.backup")
    );
    assert_eq!(app.instances, 1);
    assert_eq!((app.cpus, app.mem, app.disk), (0.5, 256.0, 1024.0));
    assert_eq!(app.cmd.as_deref(), Some("backup --all"));
    assert_eq!(app.args, None);
    assert_eq!(app.user.as_deref(), Some("backup"));
    assert_eq!(app.env["TARGET"], "s3://bucket");
    assert_eq!(app.labels["team"], "db");
    assert_eq!(app.task_kill_grace_period_seconds, Some(30.0));
    assert_eq!(app.port_count(), 0, "a run's task takes no ports");
    assert!(app.health_checks.is_empty());
    let constraints: Vec<String> = app.constraints.iter().map(|c| c.to_string()).collect();
    assert_eq!(constraints, ["rack:IS:r2", "hostname:UNLIKE:db-.*"]);
    let docker = app.docker().expect("a Docker container");
    assert_eq!(docker.image, "registry/backup:1");
    assert!(docker.force_pull_image && !docker.privileged);
    assert_eq!(docker.network, cairn_marathon::DockerNetwork::Host);
    assert_eq!(
        (
            docker.parameters[0].key.as_str(),
            docker.parameters[0].value.as_str()
        ),
        ("cap-drop", "ALL")
    );
    let v = &docker.volumes[0];
    assert_eq!(
        (
            v.container_path.as_str(),
            v.host_path.as_str(),
            v.mode.as_str()
        ),
        ("/data", "/srv/data", "RO")
    );

    // The app is one Marathon accepts as it stands (offerd stores and re-reads apps).
    let again = cairn_marathon::parse_app(serde_json::to_value(&app).unwrap(), None).unwrap();
    assert_eq!(again, app);

    // A command job runs without a container.
    let plain = parse_job(job(json!({})), None)
        .unwrap()
        .to_app("20240101120000abcde")
        .unwrap();
    assert_eq!(plain.container, None);
    assert_eq!(plain.cmd.as_deref(), Some("echo hi"));
}

#[test]
fn host_policy_errors_map_to_job_paths() {
    let spec = parse_job(
        job(json!({"run": {"docker": {"image": "x", "privileged": true}}})),
        None,
    )
    .unwrap();
    let app = spec.to_app("20240101120000abcde").unwrap();
    let err = cairn_marathon::HostPolicy::default()
        .admit(&app)
        .unwrap_err();
    let mapped = cairn_metronome::job_error_of_app_error(err);
    assert_eq!(mapped.violations()[0].path, "/run/docker/privileged");
}
