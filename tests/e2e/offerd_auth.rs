//! offerd's users (issue 15): with `--auth-file`, anonymous access is off (401, `/ping` aside),
//! a viewer only reads, a deployer changes only apps under its paths and sees `env` values only
//! of those, an admin does everything; HTTP Basic works as Marathon's `--http_credentials`; a
//! SIGHUP reloads the file (a broken one keeps the principals); a node-bound agent token acts
//! for its node only; repeated failures from one address are answered 429; the `offerd` CLI
//! sends `--token` or the URL's `user:password@`; no secret reaches offerd's log.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use cairn_tests::cluster::{Cluster, ClusterOpts};
use cairn_tests::{Http, read_stream_until, wait_for};
use serde_json::{Value, json};

const ADMIN: &str = "admin-tok-5f1e0c";
const DEPLOYER: &str = "team-a-tok-77d0aa";
const VIEWER_USER: &str = "vera";
const VIEWER_PW: &str = "viewer-pw-93acf1";
const NODE0: &str = "node0-agent-tok-41b2";
const NODE1: &str = "node1-agent-tok-9d3e";
const SECRET_A: &str = "env-secret-of-team-a-3c1f";
const SECRET_B: &str = "env-secret-of-team-b-8e2d";
const HIDDEN: &str = "<hidden>";

/// Every secret of these tests: none may appear in a log.
const SECRETS: [&str; 7] = [ADMIN, DEPLOYER, VIEWER_PW, NODE0, NODE1, SECRET_A, SECRET_B];

fn base_file() -> String {
    format!(
        r#"
[[principal]]
name = "root"
token = "{ADMIN}"
role = "admin"

[[principal]]
name = "team-a"
token = "{DEPLOYER}"
role = "deployer"
paths = ["/team-a/"]

[[principal]]
name = "vera"
user = "{VIEWER_USER}"
password = "{VIEWER_PW}"
role = "viewer"

[[agent]]
node = "node-0"
token = "{NODE0}"

[[agent]]
node = "node-1"
token = "{NODE1}"
"#
    )
}

/// Writes the auth file (mode 0600).
fn write_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("writing the auth file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn bearer(token: &str) -> (String, String) {
    ("authorization".into(), format!("Bearer {token}"))
}

fn basic(user: &str, password: &str) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("authorization".into(), format!("Basic {b64}"))
}

fn as_principal(c: &Cluster, header: &(String, String)) -> Http {
    Http::new(&c.offerd.url).with_header(&header.0, &header.1)
}

/// A cluster whose offerd reads the auth file `text` (in the returned directory), with
/// `agents` taskrun agents, agent i holding node i's bound token; `c.offerd.http` is the admin.
async fn start(
    text: &str,
    agents: usize,
    offerd_args: &[&str],
) -> (Cluster, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("auth.toml");
    write_file(&file, text);
    let mut args = vec!["--auth-file".to_string(), file.display().to_string()];
    args.extend(offerd_args.iter().map(|a| a.to_string()));
    // No agents yet: offerd's agent list answers 401 to the harness, which waits for none.
    let mut c = Cluster::start(ClusterOpts {
        agents: 0,
        offerd_args: args,
        ..Default::default()
    })
    .await;
    c.offerd.http = as_principal(&c, &bearer(ADMIN));
    let shared = c.agent_args.clone();
    for (i, token) in [NODE0, NODE1].into_iter().enumerate().take(agents) {
        c.agent_args = shared.clone();
        c.agent_args
            .extend(["--agent-token".to_string(), token.to_string()]);
        c.add_agent(i, "cpus:4;mem:2048;disk:1000", "").await;
    }
    c.agent_args = shared;
    c.wait_for(
        "the agents to register with their node tokens",
        60,
        || async {
            let a = c.offerd.http.get("/v1/agents").await.value();
            (a.as_array().map_or(0, Vec::len) == agents).then_some(())
        },
    )
    .await;
    (c, dir, file)
}

fn app(id: &str, instances: u32, secret: &str) -> Value {
    json!({
        "id": id, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": instances,
        "env": {"DB_PASSWORD": secret, "MODE": "prod"}
    })
}

/// What a request got: status, `WWW-Authenticate`, body (not read for an event stream).
struct Got {
    status: u16,
    challenge: String,
    body: String,
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    auth: Option<&(String, String)>,
) -> Got {
    let mut req = client.request(method.parse().expect("method"), format!("{base}{path}"));
    if let Some((k, v)) = auth {
        req = req.header(k, v);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let streaming = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let body = if streaming {
        String::new()
    } else {
        r.text().await.unwrap_or_default()
    };
    Got {
        status,
        challenge,
        body,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The state a refused request must leave as it was: apps (with versions, instances, env),
/// deployments, agents.
async fn snapshot(c: &Cluster) -> Value {
    let http = &c.offerd.http;
    let mut agents = http.get("/v1/agents").await.value();
    for a in agents.as_array_mut().into_iter().flatten() {
        a.as_object_mut().map(|m| m.remove("last_seen_ms_ago"));
    }
    json!({
        "apps": http.get("/v2/apps").await.value(),
        "deployments": http.get("/v2/deployments").await.value(),
        "agents": agents,
    })
}

fn assert_no_secret_logged(c: &Cluster) {
    let logs = c.logs();
    for s in SECRETS {
        assert!(!logs.contains(s), "{s} is in a log:\n{logs}");
    }
}

/// Every route, anonymously and as a viewer: 401 for the first (but `/ping`), reads only for
/// the second; nothing changes either way. Env values are hidden from the viewer everywhere.
#[tokio::test(flavor = "multi_thread")]
async fn anonymous_is_refused_everywhere_and_a_viewer_only_reads() {
    // No failure limit here: the table makes far more refused requests than it allows.
    let (c, _dir, _file) = start(&base_file(), 0, &["--auth-failure-limit", "0"]).await;
    let http = &c.offerd.http;
    assert_eq!(c.post_app(&app("/team-a/x", 0, SECRET_A)).await.status, 201);
    // One instance and no agent: its deployment and queue entry stay.
    assert_eq!(c.post_app(&app("/team-b/y", 1, SECRET_B)).await.status, 201);
    let deployment = http.get("/v2/deployments").await.value()[0]["id"]
        .as_str()
        .expect("a running deployment")
        .to_string();
    let version = http.get("/v2/apps/team-b/y/versions").await.value()["versions"][0]
        .as_str()
        .expect("a version")
        .to_string();

    let new_app = app("/team-a/new", 0, "x");
    let bulk = json!([{"id": "/team-a/x", "instances": 3}]);
    let scale = json!({"instances": 5});
    let ids = json!({"ids": ["no-such-task"]});
    let accept = json!({"tasks": [{"name": "t", "cmd": "true", "cpus": 0.1, "mem": 16}]});
    let register =
        json!({"node": "rogue", "address": "127.0.0.1", "resources": "cpus:64;mem:65536"});
    let status = json!({"updates": []});
    let none = None;
    // (method, path, body, what a viewer gets)
    let routes: Vec<(&str, String, Option<&Value>, u16)> = vec![
        ("GET", "/metrics".into(), none, 200),
        ("GET", "/v2/info".into(), none, 200),
        ("GET", "/v2/leader".into(), none, 200),
        ("GET", "/v2/apps".into(), none, 200),
        ("POST", "/v2/apps".into(), Some(&new_app), 403),
        ("PUT", "/v2/apps".into(), Some(&bulk), 403),
        ("GET", "/v2/apps/team-b/y".into(), none, 200),
        ("GET", "/v2/apps/team-b/y/versions".into(), none, 200),
        (
            "GET",
            format!("/v2/apps/team-b/y/versions/{version}"),
            none,
            200,
        ),
        ("GET", "/v2/apps/team-b/y/tasks".into(), none, 200),
        ("PUT", "/v2/apps/team-b/y".into(), Some(&scale), 403),
        ("DELETE", "/v2/apps/team-b/y".into(), none, 403),
        ("POST", "/v2/apps/team-b/y/restart".into(), none, 403),
        ("DELETE", "/v2/apps/team-b/y/tasks".into(), none, 403),
        (
            "DELETE",
            "/v2/apps/team-b/y/tasks/no-such-task".into(),
            none,
            403,
        ),
        ("GET", "/v2/tasks".into(), none, 200),
        ("POST", "/v2/tasks/delete".into(), Some(&ids), 403),
        ("GET", "/v2/deployments".into(), none, 200),
        ("DELETE", format!("/v2/deployments/{deployment}"), none, 403),
        ("GET", "/v2/queue".into(), none, 200),
        ("DELETE", "/v2/queue/team-b/y/delay".into(), none, 403),
        ("GET", "/v2/events".into(), none, 200),
        ("GET", "/v1/agents".into(), none, 200),
        ("DELETE", "/v1/agents/node-9".into(), none, 403),
        ("POST", "/v1/agents/node-9/drain".into(), none, 403),
        ("DELETE", "/v1/agents/node-9/drain".into(), none, 403),
        // Issuing offers acts as the framework: a change, though a GET.
        (
            "GET",
            "/v1/offers?framework=team-a&wait=0s".into(),
            none,
            403,
        ),
        (
            "POST",
            "/v1/offers/o1/accept?framework=team-a".into(),
            Some(&accept),
            403,
        ),
        (
            "POST",
            "/v1/offers/o1/decline?framework=team-a".into(),
            none,
            403,
        ),
        ("GET", "/v1/tasks/no-such-task".into(), none, 404),
        ("POST", "/v1/tasks/no-such-task/kill".into(), none, 403),
        ("GET", "/v1/frameworks/team-a/tasks".into(), none, 200),
        // The agents' routes take agent tokens, never a principal's.
        ("POST", "/v1/agents/register".into(), Some(&register), 401),
        ("GET", "/v1/agents/node-0/tasks".into(), none, 401),
        (
            "POST",
            "/v1/agents/node-0/status".into(),
            Some(&status),
            401,
        ),
        ("GET", "/no/such/route".into(), none, 404),
        ("POST", "/v2/info".into(), none, 403),
    ];
    let http_client = client();
    let base = c.offerd.url.clone();
    let before = snapshot(&c).await;

    let ping = call(&http_client, &base, "GET", "/ping", None, None).await;
    assert_eq!(
        (ping.status, ping.body.as_str()),
        (200, "pong"),
        "/ping stays open"
    );
    let wrong = bearer("not-a-token");
    let wrong_basic = basic(VIEWER_USER, "not-the-password");
    for (method, path, body, _) in &routes {
        for (what, auth) in [
            ("no credentials", None),
            ("a wrong token", Some(&wrong)),
            ("a wrong password", Some(&wrong_basic)),
        ] {
            let got = call(&http_client, &base, method, path, *body, auth).await;
            assert_eq!(got.status, 401, "{method} {path} with {what}: {}", got.body);
            let challenge = if path.starts_with("/v1/agents/")
                && (path.ends_with("/tasks")
                    || path.ends_with("/status")
                    || path.ends_with("/register"))
            {
                "Bearer"
            } else {
                "Basic realm=\"offerd\""
            };
            assert_eq!(got.challenge, challenge, "{method} {path} with {what}");
        }
    }
    assert_eq!(
        snapshot(&c).await,
        before,
        "anonymous requests changed something"
    );

    let viewer = basic(VIEWER_USER, VIEWER_PW);
    for (method, path, body, want) in &routes {
        let got = call(&http_client, &base, method, path, *body, Some(&viewer)).await;
        assert_eq!(
            got.status, *want,
            "{method} {path} as a viewer: {}",
            got.body
        );
        if *want == 403 {
            let v: Value = serde_json::from_str(&got.body).unwrap_or(Value::Null);
            assert!(
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Not Authorized")),
                "{method} {path}: Marathon's error shape: {}",
                got.body
            );
        }
        // Whatever a viewer reads carries no env value.
        for s in [SECRET_A, SECRET_B] {
            assert!(
                !got.body.contains(s),
                "{method} {path} shows an env value: {}",
                got.body
            );
        }
    }
    assert_eq!(
        snapshot(&c).await,
        before,
        "a viewer's requests changed something"
    );

    // The viewer sees the env keys, with the placeholder for values, wherever apps appear.
    let v = as_principal(&c, &viewer);
    let apps = v.get("/v2/apps").await.value();
    for a in apps["apps"].as_array().expect("apps") {
        assert_eq!(
            a["env"],
            json!({"DB_PASSWORD": HIDDEN, "MODE": HIDDEN}),
            "{a}"
        );
    }
    let one = v
        .get(&format!("/v2/apps/team-b/y/versions/{version}"))
        .await
        .value();
    assert_eq!(one["env"]["DB_PASSWORD"], HIDDEN, "{one}");
    let queue = v.get("/v2/queue").await.value();
    assert_eq!(
        queue["queue"][0]["app"]["env"]["DB_PASSWORD"], HIDDEN,
        "{queue}"
    );
    // The admin sees them.
    let admin = http.get("/v2/apps/team-b/y").await.value();
    assert_eq!(admin["app"]["env"]["DB_PASSWORD"], SECRET_B, "{admin}");

    let logs = c.offerd.log_text();
    assert!(logs.contains("refused: not authenticated"), "{logs}");
    assert!(logs.contains("peer=127.0.0.1:"), "{logs}");
    assert!(logs.contains("refused: a viewer may only read"), "{logs}");
    assert_no_secret_logged(&c);
}

/// A deployer scoped to `/team-a/` deploys, scales, restarts, kills and deletes there, and is
/// refused (403, nothing changed) on `/team-b/y`, whose env values it never sees, not even on
/// the event stream. A node-bound agent token cannot act for another node.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployer_changes_only_its_paths_and_agents_only_their_node() {
    let (c, _dir, _file) = start(&base_file(), 1, &[]).await;
    let admin = &c.offerd.http;
    let deployer = as_principal(&c, &bearer(DEPLOYER));
    let events = |token: &str| {
        client()
            .get(format!(
                "{}/v2/events?event_type=api_post_event",
                c.offerd.url
            ))
            .bearer_auth(token)
            .send()
    };
    let mut deployer_events = events(DEPLOYER).await.expect("deployer's event stream");
    assert_eq!(deployer_events.status(), 200);
    let mut admin_events = events(ADMIN).await.expect("admin's event stream");

    assert_eq!(c.post_app(&app("/team-b/y", 1, SECRET_B)).await.status, 201);
    let r = deployer
        .send(
            "POST",
            "/v2/apps",
            Some(app("/team-a/x", 1, SECRET_A).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.value()["env"]["DB_PASSWORD"],
        SECRET_A,
        "its own app's env"
    );
    c.wait_running("/team-a/x", 1, 60).await;
    let r = deployer
        .put_json("/v2/apps/team-a/x", &json!({"instances": 2}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a_tasks = c.wait_running("/team-a/x", 2, 60).await;
    let b_tasks = c.wait_running("/team-b/y", 1, 60).await;
    let b_task = b_tasks[0].clone();

    // The event stream: team-a's definition with its env, team-b's without.
    let both = |t: &str| t.contains("/team-a/x") && t.contains("/team-b/y");
    let text = read_stream_until(&mut deployer_events, 60, both)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(text.contains(SECRET_A), "{text}");
    assert!(!text.contains(SECRET_B), "{text}");
    assert!(text.contains(HIDDEN), "{text}");
    let text = read_stream_until(&mut admin_events, 60, both)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(text.contains(SECRET_A) && text.contains(SECRET_B), "{text}");

    // Reads: everything, with team-b's env values hidden.
    let apps = deployer.get("/v2/apps").await.value();
    let env_of = |id: &str| {
        apps["apps"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == id))
            .map(|x| x["env"]["DB_PASSWORD"].clone())
    };
    assert_eq!(env_of("/team-a/x"), Some(json!(SECRET_A)), "{apps}");
    assert_eq!(env_of("/team-b/y"), Some(json!(HIDDEN)), "{apps}");
    let b = deployer.get("/v2/apps/team-b/y").await;
    assert_eq!(b.status, 200);
    assert_eq!(
        b.value()["app"]["env"]["DB_PASSWORD"],
        HIDDEN,
        "{}",
        b.text()
    );
    assert_eq!(deployer.get("/v2/apps/team-b/y/tasks").await.status, 200);

    // Changes outside /team-a/: refused, nothing changed.
    let before = snapshot(&c).await;
    let none = None;
    let refused: Vec<(&str, String, Option<Value>)> = vec![
        (
            "PUT",
            "/v2/apps/team-b/y".into(),
            Some(json!({"instances": 3})),
        ),
        (
            "PUT",
            "/v2/apps/team-b/y?force=true".into(),
            Some(json!({"cmd": "sleep 1"})),
        ),
        ("POST", "/v2/apps/team-b/y/restart".into(), none.clone()),
        ("DELETE", "/v2/apps/team-b/y".into(), none.clone()),
        ("DELETE", "/v2/apps/team-b/y/tasks".into(), none.clone()),
        (
            "DELETE",
            "/v2/apps/team-b/y/tasks?scale=true".into(),
            none.clone(),
        ),
        (
            "DELETE",
            format!("/v2/apps/team-b/y/tasks/{b_task}"),
            none.clone(),
        ),
        (
            "POST",
            "/v2/tasks/delete".into(),
            Some(json!({"ids": [b_task]})),
        ),
        // All or nothing: team-a's task is not killed either.
        (
            "POST",
            "/v2/tasks/delete".into(),
            Some(json!({"ids": [a_tasks[0], b_task]})),
        ),
        ("POST", format!("/v1/tasks/{b_task}/kill"), none.clone()),
        (
            "PUT",
            "/v2/apps".into(),
            Some(json!([{"id": "/team-a/x", "instances": 1}, {"id": "/team-b/y", "instances": 0}])),
        ),
        ("POST", "/v2/apps".into(), Some(app("/team-b/z", 0, "z"))),
        ("POST", "/v2/apps".into(), Some(app("/team-ab/z", 0, "z"))),
        ("DELETE", "/v2/queue/team-b/y/delay".into(), none.clone()),
        ("POST", "/v1/agents/node-0/drain".into(), none.clone()),
        ("DELETE", "/v1/agents/node-0".into(), none.clone()),
        (
            "GET",
            "/v1/offers?framework=team-b&wait=0s".into(),
            none.clone(),
        ),
    ];
    for (method, path, body) in &refused {
        let r = deployer
            .send(
                method,
                path,
                body.as_ref().map(|b| b.to_string().into_bytes()),
            )
            .await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    assert_eq!(
        snapshot(&c).await,
        before,
        "refused changes changed something"
    );
    assert_eq!(c.running("/team-b/y").await, b_tasks);
    assert_eq!(c.running("/team-a/x").await, a_tasks);

    // Node-bound agent tokens: node 1's token cannot report, poll or register as node 0 (the
    // forged failure would get team-b's healthy task replaced), nor node 0's as node 1.
    let http = client();
    let forged = json!({"updates": [{"task_id": b_task, "state": "TASK_FAILED", "message": "forged", "timestamp": 0}]});
    let register = |node: &str| json!({"node": node, "address": "127.0.0.1", "resources": {"cpus": 64.0, "mem": 65536.0, "disk": 0.0}});
    let as_other_node = [
        (
            NODE1,
            "POST",
            "/v1/agents/node-0/status",
            Some(forged.clone()),
        ),
        (NODE1, "GET", "/v1/agents/node-0/tasks?wait=1s", None),
        (
            NODE1,
            "POST",
            "/v1/agents/register",
            Some(register("node-0")),
        ),
        (
            NODE0,
            "POST",
            "/v1/agents/register",
            Some(register("node-1")),
        ),
        (
            NODE0,
            "POST",
            "/v1/agents/node-1/status",
            Some(json!({"updates": []})),
        ),
    ];
    for (token, method, path, body) in &as_other_node {
        let got = call(
            &http,
            &c.offerd.url,
            method,
            path,
            body.as_ref(),
            Some(&bearer(token)),
        )
        .await;
        assert_eq!(got.status, 403, "{method} {path}: {}", got.body);
    }
    // A principal's token, even the admin's, is no agent token.
    let got = call(
        &http,
        &c.offerd.url,
        "POST",
        "/v1/agents/node-0/status",
        Some(&forged),
        Some(&bearer(ADMIN)),
    )
    .await;
    assert_eq!(got.status, 401, "{}", got.body);
    assert_eq!(
        c.running("/team-b/y").await,
        b_tasks,
        "the forged status changed nothing"
    );
    let agents = admin.get("/v1/agents").await.value();
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
    // Node 0's own token works for node 0 (the agent runs with it; one explicit poll too).
    let got = call(
        &http,
        &c.offerd.url,
        "GET",
        "/v1/agents/node-0/tasks?wait=1s",
        None,
        Some(&bearer(NODE0)),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);

    // A deployment of team-b's (the new definition cannot be placed, so it stays): the deployer
    // cannot cancel it, the admin can.
    let r = admin
        .put_json(
            "/v2/apps/team-b/y",
            &json!({"cmd": "sleep 601", "constraints": [["hostname", "LIKE", "nowhere"]]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let dep = r.value()["deploymentId"]
        .as_str()
        .expect("deployment")
        .to_string();
    let r = deployer.delete(&format!("/v2/deployments/{dep}")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let deps = admin.get("/v2/deployments").await.value();
    assert!(deps.to_string().contains(&dep), "{deps}");
    let r = admin
        .delete(&format!("/v2/deployments/{dep}?force=true"))
        .await;
    assert_eq!(r.status, 202, "{}", r.text());

    // Changes inside /team-a/: restart, kill one task (by both routes), offers as framework
    // team-a, delete.
    let r = deployer
        .send("POST", "/v2/apps/team-a/x/restart", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a_tasks = c.wait_running("/team-a/x", 2, 90).await;
    let r = deployer
        .delete(&format!("/v2/apps/team-a/x/tasks/{}", a_tasks[0]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = deployer
        .send("POST", &format!("/v1/tasks/{}/kill", a_tasks[1]), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = deployer.get("/v1/offers?framework=team-a&wait=0s").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = deployer.delete("/v2/apps/team-a/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.wait_for("/team-a/x to be gone", 60, || async {
        (admin.get("/v2/apps/team-a/x").await.status == 404).then_some(())
    })
    .await;
    // The admin may change team-b.
    let r = admin
        .put_json(
            "/v2/apps/team-b/y?force=true",
            &json!({"instances": 0, "constraints": []}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let logs = c.offerd.log_text();
    assert!(logs.contains("refused: not allowed"), "{logs}");
    assert!(logs.contains("principal=\"team-a\""), "{logs}");
    assert!(
        logs.contains("refused: an agent token used for another node"),
        "{logs}"
    );
    assert_no_secret_logged(&c);
}

fn offerd_cli(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(cairn_tests::bin("offerd"))
        .args(args)
        .env_remove("CAIRN_OFFERD")
        .env_remove("CAIRN_OFFERD_TOKEN")
        .env_remove("CAIRN_OFFERD_CREDENTIALS")
        .envs(envs.iter().copied())
        .output()
        .expect("offerd CLI")
}

fn count(text: &str, what: &str) -> usize {
    text.matches(what).count()
}

/// HTTP Basic and DC/OS's `token=` work; the CLI sends `--token`, `CAIRN_OFFERD_TOKEN`,
/// `--credentials` or the URL's user information; SIGHUP adds and removes principals (and
/// closes a removed principal's event stream); a broken file on SIGHUP keeps them.
#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_the_cli_and_reloading_on_sighup() {
    let (mut c, dir, file) = start(&base_file(), 0, &[]).await;
    let url = c.offerd.url.clone();
    assert_eq!(c.post_app(&app("/team-a/x", 0, SECRET_A)).await.status, 201);

    let http = client();
    for (what, auth, want) in [
        ("basic", basic(VIEWER_USER, VIEWER_PW), 200),
        ("basic, wrong password", basic(VIEWER_USER, "nope"), 401),
        (
            "a token as a basic password",
            basic("team-a", DEPLOYER),
            401,
        ),
        (
            "DC/OS token=",
            ("authorization".into(), format!("token={ADMIN}")),
            200,
        ),
        (
            "X-Consul-Token",
            ("x-consul-token".into(), ADMIN.to_string()),
            200,
        ),
    ] {
        let got = call(&http, &url, "GET", "/v2/apps", None, Some(&auth)).await;
        assert_eq!(got.status, want, "{what}: {}", got.body);
    }

    // The CLI.
    let with_userinfo = url.replacen("http://", &format!("http://{VIEWER_USER}:{VIEWER_PW}@"), 1);
    let ok = |out: &std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let out = offerd_cli(&["--offerd", &url, "apps", "--token", ADMIN], &[]);
    ok(&out, "apps --token");
    assert!(String::from_utf8_lossy(&out.stdout).contains("/team-a/x"));
    let out = offerd_cli(&["--offerd", &with_userinfo, "apps", "--json"], &[]);
    ok(&out, "apps with user:password@ in the URL");
    let apps: Value = serde_json::from_slice(&out.stdout).expect("apps JSON");
    assert_eq!(
        apps[0]["env"]["DB_PASSWORD"], HIDDEN,
        "a viewer's CLI sees no env value"
    );
    let out = offerd_cli(
        &["--offerd", &url, "scale", "/team-a/x", "2"],
        &[("CAIRN_OFFERD_TOKEN", DEPLOYER)],
    );
    ok(&out, "scale with CAIRN_OFFERD_TOKEN");
    let out = offerd_cli(
        &[
            "--offerd",
            &url,
            "agents",
            "remove",
            "node-9",
            "--credentials",
            &format!("{VIEWER_USER}:{VIEWER_PW}"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("403"), "{stderr}");
    let out = offerd_cli(&["--offerd", &url, "tasks"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("401"), "{stderr}");
    let out = offerd_cli(
        &[
            "--offerd",
            &with_userinfo.replace(VIEWER_PW, "wrong-pw"),
            "apps",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("401") && !stderr.contains("wrong-pw"),
        "{stderr}"
    );
    let instances =
        c.offerd.http.get("/v2/apps/team-a/x").await.value()["app"]["instances"].clone();
    assert_eq!(instances, 2);

    // The unmodified `marathon` Python client (installed by scripts/test): its `auth_token`
    // (DC/OS's `Authorization: token=`) and its HTTP Basic `username`/`password`.
    let script = r#"
import sys
from marathon import MarathonClient
from marathon.exceptions import MarathonHttpError
url, token, user, password = sys.argv[1:5]
apps = MarathonClient(url, auth_token=token).list_apps()
assert [a.id for a in apps] == ["/team-a/x"], apps
apps = MarathonClient(url, username=user, password=password).list_apps()
assert apps[0].env["DB_PASSWORD"] == "<hidden>", apps[0].env
try:
    MarathonClient(url).list_apps()
    raise SystemExit("anonymous list_apps was answered")
except MarathonHttpError as e:
    assert e.status_code == 401, e.status_code
print("py-marathon with credentials: ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &url, ADMIN, VIEWER_USER, VIEWER_PW])
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains("No module named 'marathon'"),
        "the marathon client is not installed: run scripts/test (or pip install marathon)"
    );
    assert!(
        out.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );

    // SIGHUP: team-a goes, bob (deployer of /team-b/) comes. team-a's event stream ends.
    let mut team_a_events = client()
        .get(format!("{url}/v2/events"))
        .bearer_auth(DEPLOYER)
        .send()
        .await
        .expect("event stream");
    assert_eq!(team_a_events.status(), 200);
    read_stream_until(&mut team_a_events, 30, |t| {
        t.contains("event_stream_attached")
    })
    .await
    .expect("attached");
    let bob = "bob-tok-0e5d77";
    let reloaded = base_file().replace(
        &format!(
            "name = \"team-a\"\ntoken = \"{DEPLOYER}\"\nrole = \"deployer\"\npaths = [\"/team-a/\"]"
        ),
        &format!("name = \"bob\"\ntoken = \"{bob}\"\nrole = \"deployer\"\npaths = [\"/team-b\"]"),
    );
    assert!(reloaded.contains(bob) && !reloaded.contains(DEPLOYER));
    let hup = |c: &Cluster| {
        // SAFETY: kill(2) on the offerd process this test started.
        unsafe {
            libc::kill(c.offerd.pid() as i32, libc::SIGHUP);
        }
    };
    let logged = |c: &Cluster, what: &str| count(&c.offerd.log_text(), what);
    write_file(&file, &reloaded);
    hup(&c);
    wait_for(
        "the reload to be logged",
        Duration::from_secs(30),
        || c.logs(),
        async || (logged(&c, "SIGHUP: auth file reloaded") == 1).then_some(()),
    )
    .await;
    let got = call(&http, &url, "GET", "/v2/apps", None, Some(&bearer(bob))).await;
    assert_eq!(got.status, 200, "bob is in: {}", got.body);
    let got = call(
        &http,
        &url,
        "GET",
        "/v2/apps",
        None,
        Some(&bearer(DEPLOYER)),
    )
    .await;
    assert_eq!(got.status, 401, "team-a is out: {}", got.body);
    let got = call(
        &http,
        &url,
        "POST",
        "/v2/apps",
        Some(&app("/team-b/new", 0, "b")),
        Some(&bearer(bob)),
    )
    .await;
    assert_eq!(got.status, 201, "bob deploys under /team-b: {}", got.body);
    // The next event closes team-a's stream.
    match read_stream_until(&mut team_a_events, 30, |_| false).await {
        Err(e) if e.starts_with("stream ended") => {}
        other => panic!("team-a's event stream stayed open: {other:?}\n{}", c.logs()),
    }

    // A broken file: refused, logged without its secrets, bob stays.
    let broken =
        format!("{reloaded}\n[[principal]]\nname = \"eve\"\ntoken = \"eve-s3cret-unterminated\n");
    write_file(&file, &broken);
    hup(&c);
    wait_for(
        "the failed reload to be logged",
        Duration::from_secs(30),
        || c.logs(),
        async || (logged(&c, "SIGHUP: auth file not reloaded") == 1).then_some(()),
    )
    .await;
    let got = call(&http, &url, "GET", "/v2/apps", None, Some(&bearer(bob))).await;
    assert_eq!(got.status, 200, "bob stays: {}", got.body);
    let logs = c.offerd.log_text();
    assert!(logs.contains("the previous principals stay"), "{logs}");
    assert!(!logs.contains("eve-s3cret"), "{logs}");
    assert!(!logs.contains(bob), "{logs}");
    assert_no_secret_logged(&c);

    // A broken file at start: a clear error, exit 1.
    c.offerd.kill9();
    let out = Command::new(cairn_tests::bin("offerd"))
        .args([
            "serve",
            "--no-catalog",
            "--http-addr",
            "127.0.0.1:0",
            "--auth-file",
        ])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("offerd serve");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("auth file") && stderr.contains("line "),
        "{stderr}"
    );
    assert!(!stderr.contains("eve-s3cret"), "{stderr}");
}

/// Past the failure limit an address is answered 429 with Retry-After, even with valid
/// credentials (they are not looked at), on the principals' and the agents' routes alike;
/// another address is not affected.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_are_answered_429() {
    // The default limit (10 failures); a window long enough that it cannot end mid-test.
    let (c, _dir, _file) = start(&base_file(), 0, &["--auth-failure-window", "1h"]).await;
    let url = c.offerd.url.clone();
    let http = client();
    let mut refused = 0;
    let first_429 = loop {
        // A guesser presents a new credential each time (one retried counts once).
        let guess = bearer(&format!("guess-{refused}"));
        let got = call(&http, &url, "GET", "/v2/apps", None, Some(&guess)).await;
        match got.status {
            401 => refused += 1,
            429 => break got,
            other => panic!("unexpected {other}: {}", got.body),
        }
        assert!(refused <= 10, "still 401 after {refused} failures");
    };
    let body: Value = serde_json::from_str(&first_429.body).expect("JSON");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many failed")),
        "{body}"
    );
    for (what, method, path, auth) in [
        ("the admin's token", "GET", "/v2/apps", bearer(ADMIN)),
        (
            "an agent token",
            "GET",
            "/v1/agents/node-0/tasks",
            bearer(NODE0),
        ),
        (
            "a viewer's password",
            "GET",
            "/v2/info",
            basic(VIEWER_USER, VIEWER_PW),
        ),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .header(&auth.0, &auth.1)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 429, "{what}");
        let retry: u64 = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!(retry >= 1, "{what}: Retry-After {retry}");
    }
    // /ping answers (load balancers' probes come from anywhere).
    assert_eq!(
        call(&http, &url, "GET", "/ping", None, None).await.status,
        200
    );
    // Another address is counted on its own.
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<IpAddr>().expect("ip"))
        .build()
        .expect("client on 127.0.0.2");
    let got = call(&other, &url, "GET", "/v2/apps", None, Some(&bearer(ADMIN))).await;
    assert_eq!(got.status, 200, "{}", got.body);

    let logs = c.offerd.log_text();
    assert!(
        logs.contains("refused: too many failed authentications"),
        "{logs}"
    );
    assert!(logs.contains("peer=127.0.0.1:"), "{logs}");
    assert_no_secret_logged(&c);
}
