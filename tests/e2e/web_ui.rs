//! The web UI (issue 20) in a real browser: Debian's headless chromium driven over WebDriver,
//! against a real cluster (catalogd, offerd, two taskrun agents). An operator deploys an app
//! from the UI and watches it become healthy, scales it, sees a killed task replaced, reads
//! its log, sees an invalid definition refused at its path (and nothing changed), drains and
//! undrains an agent, and edits a KV key, where a save over someone else's change is refused
//! (CAS) rather than overwriting it. With access rules on, the UI asks for a token; a viewer
//! and a read-only catalog token are offered no write action; a deployer is offered actions on
//! its own apps only, and a 403 (its rights withdrawn meanwhile) is shown plainly.
//! The event stream is filtered by type, and a job is run from the jobs page.
//! catalogd's own `/ui/` shows its catalog views. Screenshots of each main page are written
//! as artifacts (`target/ui-screenshots/`).

use std::path::Path;

use cairn_tests::Http;
use cairn_tests::browser::Browser;
use cairn_tests::cluster::{Cluster, ClusterOpts};
use serde_json::{Value, json};

/// An HTTP app (python's http.server on PORT0) with a health check the catalog shows, that
/// prints a known line first.
fn web_app(id: &str, instances: u32) -> Value {
    json!({
        "id": id,
        "cmd": "echo \"hello from $MESOS_TASK_ID\"; exec python3 -m http.server $PORT0 --bind 127.0.0.1",
        "cpus": 0.1, "mem": 32, "instances": instances,
        "labels": { "team": "ui" },
        "healthChecks": [{ "protocol": "HTTP", "path": "/", "intervalSeconds": 1,
                           "timeoutSeconds": 2, "gracePeriodSeconds": 1 }]
    })
}

/// The CSS selector of a cell of an app's row on the apps page.
fn app_cell(id: &str, field: &str) -> String {
    format!("#apps-table tr[data-app-id=\"{id}\"] [data-field=\"{field}\"]")
}

/// The states and healths shown in the app page's task table: (task id, state, health).
async fn task_rows(b: &Browser) -> Vec<(String, String, String)> {
    let rows = b
        .eval(
            "return [...document.querySelectorAll('#tasks-table tr[data-task-id]')].map(r => [
                r.dataset.taskId,
                (r.querySelector('[data-field=state]') || {}).textContent || '',
                (r.querySelector('[data-field=health]') || {}).textContent || '']);",
            vec![],
        )
        .await;
    serde_json::from_value::<Vec<(String, String, String)>>(rows)
        .expect("rows")
        .into_iter()
        .map(|(id, state, health)| (id, state.trim().to_string(), health.trim().to_string()))
        .collect()
}

/// Waits until the app page shows exactly `n` tasks, all running and healthy; returns their ids.
async fn wait_tasks_healthy(c: &Cluster, b: &Browser, n: usize) -> Vec<String> {
    c.wait_for(
        &format!("{n} running, healthy tasks on the app page"),
        90,
        || async {
            let rows = task_rows(b).await;
            let good = rows.len() == n
                && rows
                    .iter()
                    .all(|(_, state, health)| state == "TASK_RUNNING" && health == "healthy");
            good.then(|| rows.into_iter().map(|(id, _, _)| id).collect())
        },
    )
    .await
}

/// The form controls on the page now that have no label a screen reader would read: each
/// (id or name, type) of them.
async fn unlabelled_controls(b: &Browser) -> Vec<String> {
    let found = b
        .eval(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
                .filter(e => !e.hidden && e.offsetParent !== null)
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                    && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
                .map(e => (e.id || e.name || e.className) + ' (' + e.tagName.toLowerCase() + ')');",
            vec![],
        )
        .await;
    serde_json::from_value(found).expect("a list")
}

/// Checks that every control on the page has a label (the `page` names it in the failure).
async fn assert_labelled(b: &Browser, page: &str) {
    let unlabelled = unlabelled_controls(b).await;
    assert!(
        unlabelled.is_empty(),
        "{page}: controls without a label: {unlabelled:?}"
    );
}

/// The count of elements offering a write action on the page now.
async fn write_actions(b: &Browser) -> usize {
    b.all(".write-action").await.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_an_app_from_the_ui() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let b = Browser::start().await;
    let ui = format!("{}/ui/", c.offerd.url);

    // Deploy from the apps page's editor; the new row goes live to 1/1 and healthy.
    b.open(&format!("{ui}#/apps"), "apps").await;
    b.click("#new-app").await;
    b.fill("#app-json", &web_app("/ui/web", 1).to_string())
        .await;
    b.click("#app-save").await;
    // The new app's page opens, and goes live to 1/1.
    b.wait_page("app").await;
    b.wait_text(
        "#app-summary [data-field=\"running\"]",
        "/ui/web at 1/1 on its page",
        |t| t.trim() == "1/1",
    )
    .await;
    b.open(&format!("{ui}#/apps"), "apps").await;
    b.wait_text(&app_cell("/ui/web", "running"), "/ui/web at 1/1", |t| {
        t.trim() == "1/1"
    })
    .await;
    b.wait_text(&app_cell("/ui/web", "healthy"), "/ui/web healthy", |t| {
        t.trim() == "1"
    })
    .await;
    c.wait_running("/ui/web", 1, 60).await;
    b.screenshot("apps").await;
    assert_labelled(&b, "apps").await;

    // Scale to 3 on the app page.
    b.open(&format!("{ui}#/apps/ui/web"), "app").await;
    b.fill("#app-scale-input", "3").await;
    b.click("#app-scale").await;
    let before = wait_tasks_healthy(&c, &b, 3).await;
    assert_eq!(
        c.offerd.http.get("/v2/apps/ui/web").await.value()["app"]["instances"],
        3
    );

    // A task killed on its host is replaced, and the page shows the replacement.
    let victim = before[0].clone();
    let pid = c.task_pid(&victim).expect("the task's pid");
    // SAFETY: kill(2) on the process group of a task this test started.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let after = c
        .wait_for("the killed task replaced on the page", 90, || async {
            let rows = task_rows(&b).await;
            let ids: Vec<String> = rows.iter().map(|(id, _, _)| id.clone()).collect();
            let healthy = rows
                .iter()
                .all(|(_, s, h)| s == "TASK_RUNNING" && h == "healthy");
            (rows.len() == 3 && healthy && !ids.contains(&victim)).then_some(ids)
        })
        .await;
    assert_eq!(
        after.iter().filter(|id| before.contains(id)).count(),
        2,
        "{before:?} -> {after:?}"
    );
    b.screenshot("app").await;
    assert_labelled(&b, "app").await;

    // The log of a task, read through offerd.
    let task = after[0].clone();
    b.click(&format!(
        "#tasks-table tr[data-task-id=\"{task}\"] .task-logs"
    ))
    .await;
    b.wait_text("#log-text", "the task's first line in the log view", |t| {
        t.contains(&format!("hello from {task}"))
    })
    .await;
    b.screenshot("logs").await;

    // An invalid definition is refused at its path, and nothing changes.
    b.open(&format!("{ui}#/apps/ui/web"), "app").await;
    b.click("#app-edit").await;
    let mut bad = web_app("/ui/web", 3);
    bad["instances"] = json!(-1);
    bad["mem"] = json!(-5);
    b.fill("#app-json", &bad.to_string()).await;
    b.click("#app-save").await;
    let shown = b
        .wait_text(
            "#app-errors li[data-path=\"/instances\"]",
            "the refusal of instances",
            |t| !t.is_empty(),
        )
        .await;
    assert!(shown.contains("/instances"), "{shown}");
    assert_eq!(b.all("#app-errors li[data-path=\"/mem\"]").await.len(), 1);
    b.screenshot("app-invalid").await;
    let app = c.offerd.http.get("/v2/apps/ui/web").await.value();
    assert_eq!(app["app"]["instances"], 3);
    assert_eq!(app["app"]["mem"], 32.0);

    // Drain and undrain an agent from the fleet page.
    b.open(&format!("{ui}#/fleet"), "fleet").await;
    let state = "#agents-table tr[data-agent=\"node-1\"] [data-field=\"state\"]";
    b.wait_text(state, "node-1 active", |t| t.contains("active"))
        .await;
    b.screenshot("fleet").await;
    assert_labelled(&b, "fleet").await;
    b.click("#agents-table tr[data-agent=\"node-1\"] .agent-drain")
        .await;
    b.wait_text(state, "node-1 draining", |t| t.contains("drain"))
        .await;
    let agents = c.offerd.http.get("/v1/agents").await.value();
    let node1 = agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["node"] == "node-1"))
        .expect("node-1")
        .clone();
    assert!(
        node1["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("drain")),
        "{node1}"
    );
    b.click("#agents-table tr[data-agent=\"node-1\"] .agent-undrain")
        .await;
    b.wait_text(state, "node-1 active again", |t| t.contains("active"))
        .await;

    // Services and nodes from the catalog, through offerd.
    b.open(&format!("{ui}#/services"), "services").await;
    b.wait_text(
        "tr[data-service=\"web-ui\"] [data-field=\"passing\"]",
        "web-ui with 3 passing instances",
        |t| t.trim() == "3",
    )
    .await;
    b.screenshot("services").await;
    assert_labelled(&b, "services").await;
    b.open(&format!("{ui}#/nodes"), "nodes").await;
    b.wait_css("tr[data-node=\"node-0\"]", "node-0 on the nodes page")
        .await;

    // KV: create a key, save a value (CAS), and refuse a save over someone else's change.
    edit_kv(&c, &b, &ui, &c.catalog.http).await;

    // The event stream, live.
    b.open(&format!("{ui}#/events"), "events").await;
    c.offerd
        .http
        .put_json("/v2/apps/ui/web", &json!({"instances": 2}))
        .await;
    b.wait_css(
        "#events-list li[data-event-type=\"status_update_event\"]",
        "a status update on the events page",
    )
    .await;
    b.screenshot("events").await;
    assert_labelled(&b, "events").await;
    // Filtered by type: only status updates stay shown.
    b.fill("#events-filter", "status_update").await;
    c.wait_for("the events filtered to status updates", 30, || async {
        let shown = b
            .eval(
                "return [...document.querySelectorAll('#events-list li')]
                    .filter(li => !li.hidden).map(li => li.dataset.eventType);",
                vec![],
            )
            .await;
        let types: Vec<String> = serde_json::from_value(shown).unwrap_or_default();
        (!types.is_empty() && types.iter().all(|t| t == "status_update_event")).then_some(())
    })
    .await;

    // A job run from the jobs page, seen to succeed.
    let job = json!({"id": "ui-nightly", "run": {"cmd": "echo nightly", "cpus": 0.1, "mem": 32, "disk": 0}});
    let r = c
        .offerd
        .http
        .send("POST", "/v1/jobs", Some(job.to_string().into_bytes()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    b.open(&format!("{ui}#/jobs"), "jobs").await;
    b.click("tr[data-job-id=\"ui-nightly\"] .job-run").await;
    b.wait_text(
        "tr[data-job-id=\"ui-nightly\"] [data-field=\"last-success\"]",
        "the job's run succeeded on the jobs page",
        |t| t.contains("(1 ok)"),
    )
    .await;
    b.screenshot("jobs").await;
    assert_labelled(&b, "jobs").await;
    let history = c
        .offerd
        .http
        .get("/v1/jobs/ui-nightly?embed=history")
        .await
        .value();
    assert_eq!(history["history"]["successCount"], 1, "{history}");
    b.close().await;
}

/// The KV steps of the operator's test: through the UI at `ui`, checked through `kv`.
async fn edit_kv(c: &Cluster, b: &Browser, ui: &str, kv: &Http) {
    b.open(&format!("{ui}#/kv/"), "kv").await;
    b.fill("#kv-new-key", "app/config").await;
    b.click("#kv-create").await;
    b.wait_css("#kv-value", "the new key's editor").await;
    b.fill("#kv-value", "v1-from-ui").await;
    b.click("#kv-save").await;
    b.wait_text("#kv-status", "the save confirmed", |t| t.contains("Saved"))
        .await;
    assert_eq!(kv.get("/v1/kv/app/config?raw").await.text(), "v1-from-ui");
    b.screenshot("kv").await;
    assert_labelled(b, "kv").await;

    // Someone else changes the key while it is open here: the UI's save is refused.
    let r = kv.put("/v1/kv/app/config", "v2-by-a-script").await;
    assert_eq!(r.text().trim(), "true");
    b.fill("#kv-value", "v3-from-ui").await;
    b.click("#kv-save").await;
    b.wait_text("#kv-status", "the refusal of a stale save", |t| {
        t.contains("changed by someone else")
    })
    .await;
    assert_eq!(
        kv.get("/v1/kv/app/config?raw").await.text(),
        "v2-by-a-script"
    );
    // The page shows the other writer's value again.
    c.wait_for("the current value in the editor", 30, || async {
        let v = b
            .eval("return document.querySelector('#kv-value').value;", vec![])
            .await;
        (v == "v2-by-a-script").then_some(())
    })
    .await;
}

const ADMIN: &str = "ui-admin-tok-4b1e";
const VIEWER: &str = "ui-viewer-tok-77c0";
const DEPLOYER: &str = "ui-deployer-tok-19aa";
const ROOT: &str = "0f5a3c2e-7b1d-4e8f-9a6b-3c2d1e0f9a8b";
const KV_READER: &str = "3e1c9b2a-6d4f-4a7e-8b0c-2d1f3e4a5b6c";

fn auth_file(deployer_paths: &str) -> String {
    format!(
        r#"
[[principal]]
name = "root"
token = "{ADMIN}"
role = "admin"

[[principal]]
name = "vera"
token = "{VIEWER}"
role = "viewer"

[[principal]]
name = "dora"
token = "{DEPLOYER}"
role = "deployer"
paths = [{deployer_paths}]
"#
    )
}

/// catalogd's flags for ACLs on, deny by default, ROOT the management token.
fn deny_by_default() -> Vec<String> {
    [
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        ROOT,
    ]
    .map(String::from)
    .to_vec()
}

/// Makes KV_READER a catalog token with `rules` and writes `app/config` = `value`; returns
/// the management token's client.
async fn kv_reader(c: &Cluster, rules: &str, value: &str) -> Http {
    let root = Http::new(&c.catalog.url).with_header("X-Consul-Token", ROOT);
    let policy = root
        .put_json(
            "/v1/acl/policy",
            &json!({"Name": "kv-read", "Rules": rules}),
        )
        .await;
    assert_eq!(policy.status, 200, "{}", policy.text());
    let token = root
        .put_json(
            "/v1/acl/token",
            &json!({"SecretID": KV_READER, "Policies": [{"Name": "kv-read"}]}),
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.text());
    assert_eq!(
        root.put("/v1/kv/app/config", value).await.text().trim(),
        "true"
    );
    root
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("writing the auth file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Logs in at `ui` with an offerd token and a catalog token, and waits for the apps page.
async fn login(b: &Browser, ui: &str, token: &str, catalog_token: &str) {
    b.client.goto(&format!("{ui}#/apps")).await.expect("goto");
    b.wait_page("login").await;
    b.fill("#login-token", token).await;
    b.fill("#login-catalog-token", catalog_token).await;
    b.click("#login-submit").await;
    b.wait_page("apps").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_offers_only_what_a_token_may_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("auth.toml");
    write_private(&file, &auth_file("\"/team-a/\""));
    let c = Cluster::start(ClusterOpts {
        agents: 0,
        offerd_args: vec!["--auth-file".into(), file.display().to_string()],
        catalogd_args: deny_by_default(),
        ..Default::default()
    })
    .await;
    let admin = Http::new(&c.offerd.url).with_header("authorization", &format!("Bearer {ADMIN}"));
    for id in ["/team-a/api", "/other/db"] {
        let r = admin
            .send(
                "POST",
                "/v2/apps",
                Some(
                    json!({"id": id, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 0})
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // A catalog token that reads KV and writes none of it.
    kv_reader(
        &c,
        "key_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }\nservice_prefix \"\" { policy = \"read\" }",
        "shared",
    )
    .await;

    let ui = format!("{}/ui/", c.offerd.url);
    let b = Browser::start().await;

    // Without a token the UI asks for one.
    b.client.goto(&format!("{ui}#/apps")).await.expect("goto");
    b.wait_page("login").await;
    b.screenshot("login").await;
    assert_labelled(&b, "login").await;

    // A viewer with a read-only catalog token: everything is shown, no write is offered.
    login(&b, &ui, VIEWER, KV_READER).await;
    b.wait_css(
        "#apps-table tr[data-app-id=\"/team-a/api\"]",
        "the viewer's apps",
    )
    .await;
    assert_eq!(write_actions(&b).await, 0, "apps page, viewer");
    b.open(&format!("{ui}#/apps/team-a/api"), "app").await;
    assert_eq!(write_actions(&b).await, 0, "app page, viewer");
    b.open(&format!("{ui}#/fleet"), "fleet").await;
    assert_eq!(write_actions(&b).await, 0, "fleet page, viewer");
    b.open(&format!("{ui}#/kv/app/"), "kv").await;
    b.click("a[data-key=\"app/config\"]").await;
    b.wait_css("#kv-value", "the key's value").await;
    assert_eq!(
        write_actions(&b).await,
        0,
        "KV page, read-only catalog token"
    );
    b.click("#logout").await;
    b.wait_page("login").await;

    // A deployer of /team-a/: actions on its app, none on another's.
    login(&b, &ui, DEPLOYER, ROOT).await;
    b.open(&format!("{ui}#/apps/other/db"), "app").await;
    assert!(
        b.all("#app-scale").await.is_empty(),
        "scale offered on /other/db"
    );
    b.open(&format!("{ui}#/apps/team-a/api"), "app").await;
    b.wait_css("#app-scale", "scale offered on /team-a/api")
        .await;

    // Its rights are withdrawn while the page is open: the refusal is shown plainly.
    write_private(&file, &auth_file("\"/team-b/\""));
    // SAFETY: kill(2) on the offerd process this test started.
    unsafe {
        libc::kill(c.offerd.pid() as i32, libc::SIGHUP);
    }
    c.wait_for("offerd to reload its auth file", 30, || async {
        let log = c.offerd.log_text();
        log.contains("reloaded").then_some(())
    })
    .await;
    b.fill("#app-scale-input", "1").await;
    b.click("#app-scale").await;
    let flash = b
        .wait_text("#flash", "the 403 shown", |t| t.contains("403"))
        .await;
    assert!(
        flash.contains("Not Authorized") || flash.contains("Forbidden"),
        "{flash}"
    );
    b.screenshot("forbidden").await;
    assert_eq!(
        admin.get("/v2/apps/team-a/api").await.value()["app"]["instances"],
        0
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogd_serves_its_own_catalog_views() {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    })
    .await;
    let r = c.post_app(&web_app("/cat/web", 1)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let b = Browser::start_sized(390, 844).await;
    let ui = format!("{}/ui/", c.catalog.url);
    // Its default page is the services'; offerd's pages are not offered there.
    b.open(&ui, "services").await;
    b.wait_text(
        "tr[data-service=\"web-cat\"] [data-field=\"passing\"]",
        "web-cat passing",
        |t| t.trim() == "1",
    )
    .await;
    assert!(b.all("a[href=\"#/fleet\"]").await.is_empty());
    b.screenshot("catalogd-services-phone").await;
    // Readable on a phone: the page itself does not scroll sideways (wide tables scroll
    // inside their own box).
    let overflow = b
        .eval(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await;
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 0),
        "{overflow} px too wide"
    );
    b.open(&format!("{ui}#/services/web-cat"), "service").await;
    b.wait_text(
        "tr[data-instance] [data-field=\"status\"]",
        "the instance's status",
        |t| t.contains("passing"),
    )
    .await;
    // KV at catalogd: written here, read by the API.
    edit_kv(&c, &b, &ui, &c.catalog.http).await;
    b.close().await;
}

/// offerd's relay to the catalog (`/ui/catalog/...`) judges the browser's token, never
/// offerd's own: with offerd holding a catalog token that reads every key, a request without a
/// token is refused by the catalog and one with a reader's token gets what that token reads;
/// a write goes through only with a token that may write, and routes the page does not use
/// are not carried at all.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_carries_the_callers_token_not_offerds() {
    let c = Cluster::start(ClusterOpts {
        agents: 0,
        offerd_args: vec!["--token".into(), ROOT.into()],
        catalogd_args: deny_by_default(),
        ..Default::default()
    })
    .await;
    let root = kv_reader(&c, "key_prefix \"app/\" { policy = \"read\" }", "v1").await;

    let anonymous = Http::new(&c.offerd.url);
    let reader = Http::new(&c.offerd.url).with_header("X-Consul-Token", KV_READER);
    let manager = Http::new(&c.offerd.url).with_header("X-Consul-Token", ROOT);
    let r = anonymous.get("/ui/catalog/v1/kv/app/config?raw").await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = reader.get("/ui/catalog/v1/kv/app/config?raw").await;
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert!(r.header("x-consul-index").is_some());
    let r = reader
        .put("/ui/catalog/v1/kv/app/config", "by-reader")
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = manager
        .put("/ui/catalog/v1/kv/app/config?cas=1", "stale")
        .await;
    assert_eq!((r.status, r.text().trim()), (200, "false"));
    assert_eq!(root.get("/v1/kv/app/config?raw").await.text(), "v1");
    // What the page does not use is not relayed, whoever asks.
    for (method, path) in [
        ("GET", "/ui/catalog/v1/acl/tokens"),
        ("PUT", "/ui/catalog/v1/catalog/register"),
        ("GET", "/ui/catalog/v1/snapshot"),
    ] {
        let r = manager.send(method, path, Some(b"{}".to_vec())).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
    }
    // The page's files and its configuration need no credentials.
    let r = anonymous.get("/ui/config.json").await;
    assert_eq!(r.value()["catalogBase"], "/ui/catalog");
    assert!(
        r.header("content-security-policy")
            .is_some_and(|p| p.contains("script-src 'self'"))
    );
}
