//! Every template function of `tmpl` against a real catalogd, through `tmpl render` (stdout) and
//! `tmpl watch --once` (a file): `service` with and without a tag, healthy only or not, Address
//! falling back to the node's, Meta and Status; `services`; `key`; `key_or_default`; `ls` (direct
//! children) against `tree` (everything under the prefix); `nodes`; `node` with a name and
//! without (catalogd's own node); `env`. The same template renders from a JSON document with
//! `render --data` (file and stdin), and failures name what is wrong.

use cairn_tests::Catalogd;
use serde_json::json;

use crate::tmpl_common::{Work, dead_catalog, put_kv, register, run, run_in};

/// Uses every function. `node()` results are guarded with `if` (they are null for a node that
/// does not exist).
const EVERYTHING: &str = r#"{% for s in service(name="web") %}healthy {{ s.ID }} node={{ s.Node }} addr={{ s.Address }}:{{ s.Port }} status={{ s.Status }} name={{ s.Name }} tags={{ s.Tags | join(sep=",") }} version={{ s.Meta.version | default(value="-") }}
{% endfor %}{% for s in service(name="web", passing=false) %}any {{ s.ID }} addr={{ s.Address }} status={{ s.Status }}
{% endfor %}{% for s in service(name="web", tag="canary", passing=false) %}canary {{ s.ID }}
{% endfor %}{% for s in service(name="web", tag="prod") %}prod {{ s.ID }}
{% endfor %}{% for s in service(name="nosuch") %}nosuch {{ s.ID }}
{% endfor %}{% for s in services() %}service {{ s.Name }} [{{ s.Tags | sort | join(sep=",") }}]
{% endfor %}key={{ key(path="app/a") }}
default={{ key_or_default(path="app/missing", default="fallback") }} present={{ key_or_default(path="app/b", default="fallback") }}
{% for p in ls(prefix="app") %}ls {{ p.Key }}={{ p.Value }}
{% endfor %}{% for p in tree(prefix="app") %}tree {{ p.Key }}={{ p.Value }}
{% endfor %}{% for n in nodes() %}node {{ n.Node }} {{ n.Address }}
{% endfor %}{% set me = node() %}{% if me %}self {{ me.Node.Node }} {{ me.Node.Address }}
{% endif %}{% set n1 = node(name="n1") %}{% if n1 %}{% for s in n1.Services | sort(attribute="ID") %}n1 {{ s.ID }} {{ s.Name }} {{ s.Address }}:{{ s.Port }}
{% endfor %}{% endif %}{% set gone = node(name="nosuch") %}{% if gone %}node nosuch exists?!{% else %}no node nosuch{% endif %}
env={{ env(name="TMPL_E2E_VALUE") }} unset=[{{ env(name="TMPL_E2E_UNSET") }}]
"#;

/// What EVERYTHING gives from [`populate`]'s catalog.
const EXPECTED: &str =
    "healthy web-1 node=n1 addr=127.0.0.11:80 status=passing name=web tags=prod version=1.2
any web-1 addr=127.0.0.11 status=passing
any web-2 addr=127.0.0.22 status=critical
any web-3 addr=127.0.0.13 status=warning
canary web-2
canary web-3
prod web-1
service consul []
service db [primary]
service web [canary,prod]
key=1
default=fallback present=2
ls a=1
ls b=2
tree a=1
tree b=2
tree sub/c=3
tree sub/deep/d=4
node cairn-test 127.0.0.1
node n1 127.0.0.11
node n2 127.0.0.12
node n3 127.0.0.13
self cairn-test 127.0.0.1
n1 db-1 db 127.0.0.11:5432
n1 web-1 web 127.0.0.11:80
no node nosuch
env=from-the-test unset=[]
";

const ENV: &[(&str, &str)] = &[("TMPL_E2E_VALUE", "from-the-test")];

/// Three web instances (passing with Meta, critical with its own address, warning with two
/// tags), a db without checks, and KV under `app/` plus a key that shares the prefix's letters.
async fn populate(c: &Catalogd) {
    register(
        c,
        &json!({"Node": "n1", "Address": "127.0.0.11",
                "Service": {"ID": "web-1", "Service": "web", "Tags": ["prod"], "Port": 80, "Meta": {"version": "1.2"}},
                "Check": {"CheckID": "c-web-1", "Name": "http", "Status": "passing", "ServiceID": "web-1"}}),
    )
    .await;
    register(
        c,
        &json!({"Node": "n2", "Address": "127.0.0.12",
                "Service": {"ID": "web-2", "Service": "web", "Tags": ["canary"], "Port": 81, "Address": "127.0.0.22"},
                "Check": {"CheckID": "c-web-2", "Name": "http", "Status": "critical", "ServiceID": "web-2"}}),
    )
    .await;
    register(
        c,
        &json!({"Node": "n3", "Address": "127.0.0.13",
                "Service": {"ID": "web-3", "Service": "web", "Tags": ["prod", "canary"], "Port": 82},
                "Check": {"CheckID": "c-web-3", "Name": "http", "Status": "warning", "ServiceID": "web-3"}}),
    )
    .await;
    register(
        c,
        &json!({"Node": "n1", "Address": "127.0.0.11",
                "Service": {"ID": "db-1", "Service": "db", "Tags": ["primary"], "Port": 5432}}),
    )
    .await;
    for (k, v) in [
        ("app/a", "1"),
        ("app/b", "2"),
        ("app/sub/c", "3"),
        ("app/sub/deep/d", "4"),
        ("application/z", "not under app/"),
        ("other/x", "elsewhere"),
    ] {
        put_kv(c, k, v).await;
    }
}

/// Prints a line-by-line comparison before failing, so a mismatch is easy to read.
fn assert_text(what: &str, got: &str, want: &str, stderr: &str) {
    if got != want {
        let g: Vec<&str> = got.lines().collect();
        let w: Vec<&str> = want.lines().collect();
        for i in 0..g.len().max(w.len()) {
            let (a, b) = (g.get(i), w.get(i));
            if a != b {
                println!("line {}: got {a:?}, want {b:?}", i + 1);
            }
        }
        panic!("{what}: output differs\n--- got:\n{got}\n--- want:\n{want}\n--- stderr:\n{stderr}");
    }
}

#[tokio::test]
async fn every_function_through_render_and_watch_once() {
    let c = Catalogd::start().await;
    populate(&c).await;
    let work = Work::new();
    let tpl = work.write("everything.tmpl", EVERYTHING);
    let tpl = tpl.to_str().unwrap();

    let r = run_in(&c.url, work.root(), &["render", tpl], None, ENV);
    r.assert_code(0);
    assert_text("tmpl render", &r.stdout, EXPECTED, &r.stderr);

    // The template from stdin renders the same.
    let r = run_in(
        &c.url,
        work.root(),
        &["render", "-"],
        Some(EVERYTHING.as_bytes()),
        ENV,
    );
    r.assert_code(0);
    assert_text("tmpl render -", &r.stdout, EXPECTED, &r.stderr);

    let out = work.p("out/everything.txt");
    let spec = format!("{tpl}:{out}");
    let r = run_in(
        &c.url,
        work.root(),
        &["watch", "-t", &spec, "--once"],
        None,
        ENV,
    );
    r.assert_code(0);
    assert_eq!(r.stdout, "", "--once writes files, not stdout");
    let written = work.read("out/everything.txt").unwrap_or_else(|| {
        panic!("--once should write {out}; stderr:\n{}", r.stderr);
    });
    assert_text("tmpl watch --once", &written, EXPECTED, &r.stderr);
}

/// `node()` and `node(name=...)` used directly, as one would write `{{ with node }}` in
/// consul-template: the nodes exist, so the fields are there. (A render that runs before the
/// data is fetched must not turn "not fetched yet" into a hard error.)
#[tokio::test]
async fn node_fields_can_be_used_without_a_guard() {
    let c = Catalogd::start().await;
    populate(&c).await;
    let work = Work::new();
    let tpl = work.write(
        "node.tmpl",
        "{% set n1 = node(name=\"n1\") %}n1={{ n1.Node.Address }}\n{% set me = node() %}self={{ me.Node.Node }}\n",
    );
    let r = run(&c.url, work.root(), &["render", tpl.to_str().unwrap()]);
    r.assert_code(0);
    assert_eq!(r.stdout, "n1=127.0.0.11\nself=cairn-test\n", "{}", r.stderr);
}

/// A document with the same data renders the same text (the catalogd's own node aside: a
/// document has no agent, so `node()` is null and the template skips it).
#[tokio::test]
async fn render_data_from_a_json_document() {
    let doc = json!({
        "services": {
            "db": [
                {"ID": "db-1", "Node": "n1", "Address": "127.0.0.11", "Port": 5432, "Tags": ["primary"], "Meta": {}}
            ],
            "web": [
                {"ID": "web-1", "Node": "n1", "Address": "127.0.0.11", "Port": 80, "Tags": ["prod"], "Meta": {"version": "1.2"}, "Status": "passing"},
                {"ID": "web-2", "Node": "n2", "Address": "127.0.0.22", "Port": 81, "Tags": ["canary"], "Meta": {}, "Status": "critical"},
                {"ID": "web-3", "Node": "n3", "Address": "127.0.0.13", "Port": 82, "Tags": ["prod", "canary"], "Meta": {}, "Status": "warning"}
            ]
        },
        "kv": {"app/a": "1", "app/b": "2", "app/sub/c": "3", "app/sub/deep/d": "4",
               "application/z": "not under app/", "other/x": "elsewhere"},
        "nodes": [
            {"Node": "cairn-test", "Address": "127.0.0.1"},
            {"Node": "n1", "Address": "127.0.0.11"},
            {"Node": "n2", "Address": "127.0.0.12"},
            {"Node": "n3", "Address": "127.0.0.13"}
        ]
    });
    // The document holds no `consul` service and no `self` node: the catalog's rendering minus
    // those lines.
    let want = EXPECTED
        .replace("self cairn-test 127.0.0.1\n", "")
        .replace("service consul []\n", "");
    let work = Work::new();
    let tpl = work.write("everything.tmpl", EVERYTHING);
    let data = work.write("data.json", &serde_json::to_string_pretty(&doc).unwrap());
    // No catalog is needed: point at an address where nothing listens.
    let nowhere = dead_catalog();
    let r = run_in(
        &nowhere,
        work.root(),
        &[
            "render",
            tpl.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        None,
        ENV,
    );
    r.assert_code(0);
    assert_text("render --data FILE", &r.stdout, &want, &r.stderr);

    let bytes = serde_json::to_vec(&doc).unwrap();
    let r = run_in(
        &nowhere,
        work.root(),
        &["render", tpl.to_str().unwrap(), "--data", "-"],
        Some(&bytes),
        ENV,
    );
    r.assert_code(0);
    assert_text("render --data -", &r.stdout, &want, &r.stderr);

    let r = run_in(
        &nowhere,
        work.root(),
        &["render", tpl.to_str().unwrap(), "--data", "-"],
        Some(b"{not json"),
        ENV,
    );
    r.assert_code(1);
    assert!(
        r.stderr.contains("not a JSON document"),
        "a broken document is named: {}",
        r.stderr
    );
}

/// What goes wrong is said in one line on stderr with exit 1, and nothing reaches stdout.
#[tokio::test]
async fn render_failures_are_clear() {
    let c = Catalogd::start().await;
    populate(&c).await;
    let work = Work::new();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "missing-key.tmpl",
            "v={{ key(path=\"app/nope\") }}\n",
            &["missing-key.tmpl", "app/nope", "does not exist"],
        ),
        (
            "no-name.tmpl",
            "{% for s in service() %}{{ s.ID }}{% endfor %}\n",
            &["no-name.tmpl", "service()", "name"],
        ),
        (
            "bad-passing.tmpl",
            "{% for s in service(name=\"web\", passing=\"yes\") %}{% endfor %}\n",
            &["bad-passing.tmpl", "passing"],
        ),
        (
            "syntax.tmpl",
            "ok\n{% for s in %}\n",
            &["syntax.tmpl: line 2, column 13"],
        ),
    ];
    for (name, text, needles) in cases {
        let tpl = work.write(name, text);
        let r = run(&c.url, work.root(), &["render", tpl.to_str().unwrap()]);
        r.assert_code(1);
        assert_eq!(r.stdout, "", "{name}: nothing on stdout");
        for n in *needles {
            assert!(
                r.stderr.contains(n),
                "{name}: stderr should contain {n:?}: {}",
                r.stderr
            );
        }
        assert!(
            r.stderr.starts_with("tmpl: error: "),
            "{name}: {}",
            r.stderr
        );
    }

    // Catalog unreachable: the dependency is named.
    let tpl = work.write(
        "web.tmpl",
        "{% for s in service(name=\"web\") %}{{ s.ID }}{% endfor %}\n",
    );
    let r = run(
        &dead_catalog(),
        work.root(),
        &["render", tpl.to_str().unwrap()],
    );
    r.assert_code(1);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains("cannot read service(web)"),
        "the dependency is named: {}",
        r.stderr
    );
}
