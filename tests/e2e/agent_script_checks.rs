//! taskrun runs the script checks of the tasks it launched, and no others unless the operator
//! says so (issue 15): anyone who can register a check in the catalog chooses its command, and
//! an agent running every script check registered for its node runs anyone's command.

use std::path::Path;

use cairn_tests::cluster::{Cluster, ClusterOpts};
use serde_json::json;

struct Case {
    agent_args: &'static [&'static str],
    forged_runs: bool,
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_tasks_own_script_checks_run_unless_enabled() {
    let cases = [
        Case {
            agent_args: &[],
            forged_runs: false,
        },
        Case {
            agent_args: &["--enable-script-checks"],
            forged_runs: true,
        },
    ];
    for case in cases {
        let c = Cluster::start(ClusterOpts {
            agents: 1,
            agent_args: case.agent_args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        })
        .await;
        let marks = tempfile::tempdir().expect("temp dir");
        let own = marks.path().join("own");
        let forged = marks.path().join("forged");
        // A check on the agent's node registered by someone else, as taskrun registers its own.
        let forgery = json!({
            "Node": "node-0", "Address": "127.0.0.1",
            "Check": {
                "Node": "node-0", "CheckID": "forged", "Name": "forged", "Status": "critical",
                "Definition": {
                    "ScriptArgs": ["sh", "-c", format!("echo ran >> {}", forged.display())],
                    "Interval": "1s"
                }
            }
        });
        let r = c
            .catalog
            .http
            .put_json("/v1/catalog/register", &forgery)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let app = json!({
            "id": "/checked", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 1,
            "healthChecks": [{
                "protocol": "COMMAND",
                "command": {"value": format!("echo ran >> {}", own.display())},
                "intervalSeconds": 1, "gracePeriodSeconds": 1
            }]
        });
        assert_eq!(c.post_app(&app).await.status, 201);
        // The task's own check runs (and makes it healthy) either way. Three runs of it are the
        // window in which a forged check on the same 1 s interval would have run too.
        let runs = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        c.wait_for("the task's own check to run three times", 60, || async {
            (runs(&own) >= 3).then_some(())
        })
        .await;
        c.wait_for("the task to be healthy", 30, || async {
            let t = c.tasks("/checked").await;
            let alive = t.first()?["healthCheckResults"][0]["alive"].as_bool()?;
            alive.then_some(())
        })
        .await;
        if case.forged_runs {
            c.wait_for("the forged check to run", 30, || async {
                (runs(&forged) >= 1).then_some(())
            })
            .await;
        } else {
            assert_eq!(
                runs(&forged),
                0,
                "{:?}: the forged check ran",
                case.agent_args
            );
            let checks = c.catalog.http.get("/v1/health/node/node-0").await.value();
            let status = checks
                .as_array()
                .and_then(|a| a.iter().find(|ch| ch["CheckID"] == "forged"))
                .map(|ch| ch["Status"].clone());
            assert_eq!(status, Some(json!("critical")), "{checks}");
        }
    }
}
