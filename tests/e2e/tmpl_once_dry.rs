//! `tmpl watch --once` and `--dry`: `--once` renders every template, writes the files, runs the
//! commands and exits 0 (and a second run with nothing changed rewrites nothing and runs
//! nothing); it exits 1 with a message naming the dependency when the catalog cannot be read
//! after its retries, or naming the key when a `key()` does not exist, or with file, line and
//! column for a syntax error — writing no file in every case. `--dry` prints `> PATH` and the
//! content instead of writing, and runs no command, once or watching.

use std::time::Duration;

use cairn_tests::Catalogd;

use crate::tmpl_common::{Watcher, Work, dead_catalog, instance, put_kv, run};

const WEB: &str = "{% for s in service(name=\"web\") %}server {{ s.ID }} {{ s.Address }}:{{ s.Port }}\n{% endfor %}";
const KV: &str = "port={{ key(path=\"lb/port\") }}\n";

async fn catalog() -> Catalogd {
    let c = Catalogd::start().await;
    instance(&c, "n1", "127.0.0.11", "web", "web-1", 80, "passing").await;
    instance(&c, "n2", "127.0.0.12", "web", "web-2", 81, "passing").await;
    put_kv(&c, "lb/port", "8080").await;
    c
}

const WEB_OUT: &str = "server web-1 127.0.0.11:80\nserver web-2 127.0.0.12:81\n";

#[tokio::test]
async fn once_writes_every_file_runs_commands_and_exits_0() {
    let c = catalog().await;
    let work = Work::new();
    let web = work.write("web.tmpl", WEB);
    let kv = work.write("kv.tmpl", KV);
    let both = work.write("both.tmpl", &format!("{WEB}{KV}"));
    let specs = [
        format!(
            "{}:{}:echo web >> commands.log",
            web.display(),
            work.p("a/web.txt")
        ),
        format!(
            "{}:{}:echo kv >> commands.log",
            kv.display(),
            work.p("b/c/kv.txt")
        ),
        format!("{}:{}", both.display(), work.p("both.txt")),
    ];
    let mut args = vec!["watch"];
    for s in &specs {
        args.extend(["-t", s.as_str()]);
    }
    args.push("--once");
    let r = run(&c.url, work.root(), &args);
    r.assert_code(0);
    println!("--once took {:?}", r.elapsed);
    assert_eq!(r.stdout, "");
    assert_eq!(work.read("a/web.txt").as_deref(), Some(WEB_OUT));
    assert_eq!(work.read("b/c/kv.txt").as_deref(), Some("port=8080\n"));
    assert_eq!(
        work.read("both.txt").as_deref(),
        Some(format!("{WEB_OUT}port=8080\n").as_str())
    );
    assert_eq!(work.lines("commands.log"), ["web", "kv"], "{}", r.stderr);

    // Nothing changed: no rewrite, no command.
    let stamps: Vec<_> = ["a/web.txt", "b/c/kv.txt", "both.txt"]
        .iter()
        .map(|n| work.stamp(n))
        .collect();
    let r = run(&c.url, work.root(), &args);
    r.assert_code(0);
    let again: Vec<_> = ["a/web.txt", "b/c/kv.txt", "both.txt"]
        .iter()
        .map(|n| work.stamp(n))
        .collect();
    assert_eq!(stamps, again, "unchanged outputs are not rewritten");
    assert_eq!(
        work.lines("commands.log"),
        ["web", "kv"],
        "no command without a change: {}",
        r.stderr
    );

    // One change: only that file and its command.
    put_kv(&c, "lb/port", "9090").await;
    let r = run(&c.url, work.root(), &args);
    r.assert_code(0);
    assert_eq!(work.read("b/c/kv.txt").as_deref(), Some("port=9090\n"));
    assert_eq!(work.stamp("a/web.txt"), stamps[0]);
    assert_eq!(work.lines("commands.log"), ["web", "kv", "kv"]);
}

#[tokio::test]
async fn once_without_a_catalog_exits_1_naming_the_dependency() {
    let work = Work::new();
    let web = work.write("web.tmpl", WEB);
    let spec = format!("{}:{}:touch ran", web.display(), work.p("web.txt"));
    let r = run(
        &dead_catalog(),
        work.root(),
        &["watch", "-t", &spec, "--once"],
    );
    println!(
        "--once against a dead address: {:?}: {}",
        r.elapsed,
        r.stderr.trim()
    );
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("tmpl: error: cannot read service(web) after"),
        "the message names the dependency: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("127.0.0.1"),
        "and where it tried: {}",
        r.stderr
    );
    assert!(
        r.elapsed >= Duration::from_secs(1),
        "it retried before giving up: {:?}",
        r.elapsed
    );
    assert!(
        !work.path("web.txt").exists(),
        "never write a file from missing data"
    );
    assert!(!work.path("ran").exists(), "no command");
}

#[tokio::test]
async fn once_with_a_missing_key_or_a_syntax_error_exits_1_and_writes_nothing() {
    let c = catalog().await;
    let work = Work::new();
    let web = work.write("web.tmpl", WEB);
    let missing = work.write("missing.tmpl", "v={{ key(path=\"lb/nope\") }}\n");
    let web_spec = format!("{}:{}", web.display(), work.p("web.txt"));
    let missing_spec = format!("{}:{}", missing.display(), work.p("missing.txt"));
    let r = run(
        &c.url,
        work.root(),
        &["watch", "-t", &missing_spec, "--once"],
    );
    r.assert_code(1);
    assert!(
        r.stderr.contains("lb/nope") && r.stderr.contains("does not exist"),
        "the missing key is named: {}",
        r.stderr
    );
    assert!(!work.path("missing.txt").exists());

    let broken = work.write(
        "broken.tmpl",
        "first line\nsecond {{ key(path=\"lb/port\") }}\n{% if %}\n",
    );
    let broken_spec = format!("{}:{}", broken.display(), work.p("broken.txt"));
    let r = run(
        &c.url,
        work.root(),
        &["watch", "-t", &web_spec, "-t", &broken_spec, "--once"],
    );
    r.assert_code(1);
    let want = format!("{}: line 3, column", broken.display());
    assert!(
        r.stderr.contains(&want),
        "file, line and column ({want}): {}",
        r.stderr
    );
    assert!(
        !work.path("broken.txt").exists() && !work.path("web.txt").exists(),
        "nothing is written when a template does not parse"
    );
}

#[tokio::test]
async fn dry_prints_instead_of_writing_and_runs_nothing() {
    let c = catalog().await;
    let work = Work::new();
    let web = work.write("web.tmpl", WEB);
    let kv = work.write("kv.tmpl", KV);
    let web_spec = format!("{}:{}:touch ran", web.display(), work.p("web.txt"));
    let kv_spec = format!("{}:{}:touch ran", kv.display(), work.p("kv.txt"));
    let r = run(
        &c.url,
        work.root(),
        &["watch", "-t", &web_spec, "-t", &kv_spec, "--once", "--dry"],
    );
    r.assert_code(0);
    let want = format!(
        "> {}\n{WEB_OUT}\n> {}\nport=8080\n\n",
        work.p("web.txt"),
        work.p("kv.txt")
    );
    assert_eq!(r.stdout, want, "stderr:\n{}", r.stderr);
    assert!(!work.path("web.txt").exists() && !work.path("kv.txt").exists());
    assert!(!work.path("ran").exists(), "--dry runs no command");

    // Watching with --dry: each change is printed, still nothing written or run.
    let w = Watcher::start(
        &c.url,
        work.root(),
        &["-t", &kv_spec, "--dry", "--wait", "0s"],
    )
    .await;
    let first = format!("> {}\nport=8080\n", work.p("kv.txt"));
    w.wait_until("the first dry rendering", Duration::from_secs(10), || {
        w.stdout_text().contains(&first)
    })
    .await;
    put_kv(&c, "lb/port", "9191").await;
    let second = format!("> {}\nport=9191\n", work.p("kv.txt"));
    w.wait_until("the changed dry rendering", Duration::from_secs(10), || {
        w.stdout_text().contains(&second)
    })
    .await;
    assert!(!work.path("kv.txt").exists(), "--dry writes nothing");
    assert!(!work.path("ran").exists(), "--dry runs no command");
}
