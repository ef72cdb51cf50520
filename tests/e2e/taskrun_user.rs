//! Tasks run as the app's `user`, or the agent's `--default-user`; root only with
//! `--allow-root-tasks` (issue 15). A task that may not run fails with a message naming the user
//! and the flag, and nothing of it runs. Only the task's program drops privileges: its
//! supervisor stays taskrun's, keeping the task's record and logs out of its reach. The task's
//! COMMAND health checks run as its user too, and a Docker task's container runs as the user's
//! numeric ids.

use cairn_tests::cluster::{Cluster, ClusterOpts};
use cairn_tests::docker::{DockerCluster, busybox_image, inspect, require_engine, task_containers};
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

/// A user's uid, gid and home, from /etc/passwd.
fn passwd(name: &str) -> (u32, u32, String) {
    let text = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[0] == name)
        .map(|f| {
            (
                f[2].parse().expect("uid"),
                f[3].parse().expect("gid"),
                f[5].to_string(),
            )
        })
        .unwrap_or_else(|| panic!("no {name} in /etc/passwd"))
}

/// An app running `cmd` (then sleeping), retried slowly when it fails.
fn app(id: &str, user: Option<&str>, cmd: &str) -> Value {
    let mut app = json!({
        "id": id, "cmd": format!("{cmd}; exec sleep 600"), "cpus": 0.1, "mem": 16,
        "instances": 1, "portDefinitions": [], "backoffSeconds": 600
    });
    if let Some(u) = user {
        app["user"] = json!(u);
    }
    app
}

/// What the task says about itself on stdout (`key=value` words).
const WHO: &str = "echo \"uid=$(id -u) gid=$(id -g) user=$USER logname=$LOGNAME home=$HOME\"";

/// The `key=value` words of a line.
fn words(line: &str) -> std::collections::BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The app's last failure, once it has one.
async fn failure(c: &Cluster, id: &str) -> Value {
    c.wait_for(&format!("{id} to fail"), 60, || async {
        let app = c.offerd.http.get(&format!("/v2/apps{id}")).await.value();
        let f = app["app"]["lastTaskFailure"].clone();
        (f["state"] == "TASK_FAILED").then_some(f)
    })
    .await
}

/// The running task's id and, once it has printed `lines` lines, its stdout.
async fn running_output(c: &Cluster, app: &str, lines: usize) -> (String, String) {
    let id = c.wait_running(app, 1, 60).await.remove(0);
    let stdout = c.agent_dirs[0].join("tasks").join(&id).join("stdout");
    let out = c
        .wait_for(&format!("{app} to print {lines} lines"), 60, || async {
            let text = std::fs::read_to_string(&stdout).ok()?;
            (text.lines().count() >= lines).then_some(text)
        })
        .await;
    (id, out)
}

/// A process's real uid, from /proc.
fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("Uid")
}

/// The children of a process.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A cluster of one agent with `agent_args` and no `--allow-root-tasks` unless `allow_root`,
/// whose directories another user may traverse (a temp dir is 0700; the agent's work dir and
/// its `workspaces/` are taskrun's to make reachable).
async fn cluster(agent_args: &[&str], allow_root: bool) -> Cluster {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        agent_args: agent_args.iter().map(|a| a.to_string()).collect(),
        allow_root_tasks: allow_root,
        ..Default::default()
    })
    .await;
    std::fs::set_permissions(c.tmp.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod the cluster's temp dir");
    c
}

/// Without `--allow-root-tasks` and without `--default-user`: tasks that would run as root, or as
/// a user that does not exist, fail and run nothing; a task of user nobody runs as nobody, in a
/// workspace it owns, and cannot read the agent's state.
#[tokio::test(flavor = "multi_thread")]
async fn without_allow_root_tasks_only_named_non_root_users_run() {
    let c = cluster(&[], false).await;
    let marks = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(marks.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod marks");
    // (app, user, words the failure message must hold)
    let refused: [(&str, Option<&str>, &[&str]); 3] = [
        (
            "/user/unnamed",
            None,
            &["names no user", "--default-user", "--allow-root-tasks"],
        ),
        (
            "/user/root",
            Some("root"),
            &["\"root\"", "--allow-root-tasks"],
        ),
        (
            "/user/unknown",
            Some("cairn-no-such-user"),
            &["\"cairn-no-such-user\"", "does not exist"],
        ),
    ];
    for (id, user, _) in &refused {
        let mark = marks.path().join(id.rsplit('/').next().unwrap_or("x"));
        let cmd = format!("touch {}", mark.display());
        assert_eq!(c.post_app(&app(id, *user, &cmd)).await.status, 201, "{id}");
    }
    let agent_dir = c.agent_dirs[0].clone();
    let nobody_cmd = format!(
        "{WHO}; echo \"pwd=$(pwd) sandbox=$MESOS_SANDBOX\"; \
         echo mine > mine && echo \"wrote=$(cat mine)\"; \
         echo abs > \"$MESOS_SANDBOX/abs\" && echo \"wrote_abs=$(cat abs)\"; \
         if cat {agent}/tasks/$MESOS_TASK_ID/task.json >/dev/null 2>&1; then r=yes; else r=no; fi; \
         if ls {agent}/tasks >/dev/null 2>&1; then t=yes; else t=no; fi; \
         if ls {agent}/workspaces >/dev/null 2>&1; then w=yes; else w=no; fi; \
         echo \"record_readable=$r tasks_listable=$t workspaces_listable=$w\"",
        agent = agent_dir.display()
    );
    assert_eq!(
        c.post_app(&app("/user/nobody", Some("nobody"), &nobody_cmd))
            .await
            .status,
        201
    );

    for (id, user, needles) in refused {
        let f = failure(&c, id).await;
        let message = f["message"].as_str().unwrap_or("");
        for n in needles {
            assert!(message.contains(n), "{id} ({user:?}): {n:?} not in {f}");
        }
        let mark = marks.path().join(id.rsplit('/').next().unwrap_or("x"));
        assert!(!mark.exists(), "{id}: its command ran");
        assert!(
            !agent_dir
                .join("workspaces")
                .join(f["taskId"].as_str().unwrap_or("-"))
                .exists(),
            "{id}: a workspace was made for a task that may not run: {f}"
        );
    }

    let (nobody_uid, nobody_gid, nobody_home) = passwd("nobody");
    let (id, out) = running_output(&c, "/user/nobody", 5).await;
    let mut said = std::collections::BTreeMap::new();
    for line in out.lines() {
        said.extend(words(line));
    }
    let workspace = agent_dir.join("workspaces").join(&id);
    let expect = [
        ("uid", nobody_uid.to_string()),
        ("gid", nobody_gid.to_string()),
        ("user", "nobody".into()),
        ("logname", "nobody".into()),
        ("home", nobody_home),
        ("pwd", workspace.display().to_string()),
        ("sandbox", workspace.display().to_string()),
        ("wrote", "mine".into()),
        ("wrote_abs", "abs".into()),
        ("record_readable", "no".into()),
        ("tasks_listable", "no".into()),
        ("workspaces_listable", "no".into()),
    ];
    for (k, v) in expect {
        assert_eq!(said.get(k), Some(&v), "{k} in {out}");
    }
    // The workspace and what the task wrote are nobody's; the record stays taskrun's.
    for p in [workspace.clone(), workspace.join("mine")] {
        let meta = std::fs::metadata(&p).expect("workspace file");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (nobody_uid, nobody_gid),
            "{}",
            p.display()
        );
    }
    let record =
        std::fs::metadata(agent_dir.join("tasks").join(&id).join("task.json")).expect("task.json");
    assert_eq!((record.uid(), record.mode() & 0o777), (0, 0o600));
    // Only the program dropped privileges: its supervisor is still root.
    let wrap = c.task_pid(&id).expect("the task's pid");
    assert_eq!(uid_of(wrap), 0, "the supervisor stays taskrun's user");
    let program = children(wrap);
    assert!(
        !program.is_empty(),
        "the supervisor has the program as child"
    );
    for p in program {
        assert_eq!(uid_of(p), nobody_uid, "the program runs as nobody");
    }
    // The agent's API says who it runs as.
    let tasks = c.agents[0].http.get("/v1/tasks").await.value();
    let view = tasks
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == id.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(view["user"], "nobody", "{view}");
}

/// `--default-user` applies when the app names no user; `--allow-root-tasks` lets an app whose
/// user is root run as root.
#[tokio::test(flavor = "multi_thread")]
async fn the_agents_flags_decide_who_runs_unnamed_and_root_tasks() {
    let (nobody_uid, nobody_gid, _) = passwd("nobody");
    struct Case {
        flags: &'static [&'static str],
        allow_root: bool,
        user: Option<&'static str>,
        /// The uid and gid the task runs with.
        ids: (u32, u32),
    }
    let cases = [
        Case {
            flags: &["--default-user", "nobody"],
            allow_root: false,
            user: None,
            ids: (nobody_uid, nobody_gid),
        },
        Case {
            flags: &[],
            allow_root: true,
            user: Some("root"),
            ids: (0, 0),
        },
        Case {
            flags: &["--default-user", "nobody"],
            allow_root: true,
            user: Some("root"),
            ids: (0, 0),
        },
    ];
    for Case {
        flags,
        allow_root,
        user,
        ids: (uid, gid),
    } in cases
    {
        let c = cluster(flags, allow_root).await;
        assert_eq!(c.post_app(&app("/flags/who", user, WHO)).await.status, 201);
        let (_, out) = running_output(&c, "/flags/who", 1).await;
        let said = words(out.lines().next().unwrap_or(""));
        assert_eq!(
            (said.get("uid"), said.get("gid")),
            (Some(&uid.to_string()), Some(&gid.to_string())),
            "{flags:?} allow-root {allow_root}, user {user:?}: {out}"
        );
    }
}

/// The COMMAND health check of a task that runs as nobody runs as nobody; the catalog keeps the
/// app's command.
#[tokio::test(flavor = "multi_thread")]
async fn a_tasks_command_check_runs_as_its_user() {
    let c = cluster(&[], false).await;
    let (nobody_uid, _, _) = passwd("nobody");
    let check_cmd = "echo \"check uid=$(id -u) user=$USER\"";
    let mut checked = app("/user/checked", Some("nobody"), "true");
    checked["healthChecks"] = json!([{
        "protocol": "COMMAND", "command": {"value": check_cmd},
        "intervalSeconds": 1, "gracePeriodSeconds": 1
    }]);
    assert_eq!(c.post_app(&checked).await.status, 201);
    let check = c
        .wait_for("the check to pass", 60, || async {
            let checks = c
                .catalog
                .http
                .get("/v1/health/checks/checked-user")
                .await
                .value();
            let check = checks.as_array()?.first()?.clone();
            (check["Status"] == "passing").then_some(check)
        })
        .await;
    let output = check["Output"].as_str().unwrap_or("");
    assert!(
        output.contains(&format!("check uid={nobody_uid} user=nobody")),
        "{check}"
    );
    assert_eq!(
        check["Definition"]["ScriptArgs"],
        json!(["sh", "-c", check_cmd]),
        "the catalog keeps the app's command: {check}"
    );
    c.wait_for("the task to be healthy", 30, || async {
        let t = c.tasks("/user/checked").await;
        t.first()?["healthCheckResults"][0]["alive"]
            .as_bool()?
            .then_some(())
    })
    .await;
}

/// A container of an app whose user is nobody runs as nobody's numeric ids; without
/// `--allow-root-tasks`, a container naming no user (its image's, maybe root) and a `user`
/// parameter that may be root are refused.
#[tokio::test(flavor = "multi_thread")]
async fn containers_run_as_the_tasks_user() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let c = DockerCluster::start(ClusterOpts {
        agents: 1,
        allow_root_tasks: false,
        ..Default::default()
    })
    .await;
    let container_app = |id: &str, user: Option<&str>, params: Value| {
        let mut a = app(id, user, "echo \"uid=$(id -u) gid=$(id -g)\"");
        a["container"] = json!({
            "type": "DOCKER",
            "docker": { "image": image, "network": "NONE", "parameters": params }
        });
        a
    };
    assert_eq!(
        c.post_app(&container_app("/dock/nobody", Some("nobody"), json!([])))
            .await
            .status,
        201
    );
    // (app, user, parameters, words of the failure)
    let refused: [(&str, Option<&str>, Value, &[&str]); 2] = [
        (
            "/dock/unnamed",
            None,
            json!([]),
            &["names no user", "--allow-root-tasks"],
        ),
        (
            "/dock/rootparam",
            Some("nobody"),
            json!([{"key": "user", "value": "0"}]),
            &["user=\"0\"", "--allow-root-tasks"],
        ),
    ];
    for (id, user, params, _) in &refused {
        assert_eq!(
            c.post_app(&container_app(id, *user, params.clone()))
                .await
                .status,
            201,
            "{id}"
        );
    }
    let (uid, gid, _) = passwd("nobody");
    let (id, out) = running_output(&c, "/dock/nobody", 1).await;
    let said = words(out.lines().next().unwrap_or(""));
    assert_eq!(
        (said.get("uid"), said.get("gid")),
        (Some(&uid.to_string()), Some(&gid.to_string())),
        "{out}"
    );
    let container = task_containers(&id)
        .first()
        .cloned()
        .expect("the task's container");
    let info = inspect(&container).expect("inspect");
    assert_eq!(info["Config"]["User"], format!("{uid}:{gid}"), "{info}");
    for (id, user, _, needles) in refused {
        let f = failure(&c, id).await;
        let message = f["message"].as_str().unwrap_or("");
        for n in needles {
            assert!(message.contains(n), "{id} ({user:?}): {n:?} not in {f}");
        }
        let task = f["taskId"].as_str().unwrap_or("-");
        assert!(
            task_containers(task).is_empty(),
            "{id}: a container was made"
        );
    }
}
