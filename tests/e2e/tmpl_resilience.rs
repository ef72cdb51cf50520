//! `tmpl watch` through trouble: catalogd killed with `kill -9` and started again (the output
//! stays as it was, never emptied, and follows the catalog again once it is back; starting with
//! the catalog down writes nothing until it answers); template files edited on disk (re-rendered,
//! a broken edit logged with line and column while the last good output stays, the fix renders
//! again); a syntax error at startup (exit 1 naming file, line and column); SIGHUP with a changed
//! config file (the new template rendered, unchanged outputs left alone); SIGTERM and SIGINT
//! (exit 0, "tmpl stopped"), also while a command is running.

use std::time::{Duration, Instant};

use cairn_tests::Catalogd;

use crate::tmpl_common::{SOON, Watcher, Work, instance, put_kv, run, running};

const WEB: &str = "{% for s in service(name=\"web\") %}server {{ s.ID }} {{ s.Address }}:{{ s.Port }}\n{% endfor %}mode={{ key_or_default(path=\"lb/mode\", default=\"http\") }}\n";

#[tokio::test]
async fn catalog_down_and_back() {
    let mut c = Catalogd::start().await;
    instance(&c, "n1", "127.0.0.11", "web", "web-1", 80, "passing").await;
    let work = Work::new();
    let tpl = work.write("web.tmpl", WEB);
    let spec = format!(
        "{}:{}:echo ran >> commands.log",
        tpl.display(),
        work.p("web.conf")
    );
    let mut w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    let first = "server web-1 127.0.0.11:80\nmode=http\n";
    w.wait_file(&work, "web.conf", first).await;
    let before = work.stamp("web.conf");

    c.kill9();
    w.wait_log("catalog watch failed", SOON).await;
    // Several retry rounds with the catalog gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.assert_alive("with the catalog down");
    assert_eq!(
        work.read("web.conf").as_deref(),
        Some(first),
        "the last good output stays"
    );
    assert_eq!(work.stamp("web.conf"), before, "and is not rewritten");
    assert_eq!(work.lines("commands.log").len(), 1, "no command either");

    c.restart().await;
    let back = Instant::now();
    instance(&c, "n2", "127.0.0.12", "web", "web-2", 81, "passing").await;
    put_kv(&c, "lb/mode", "tcp").await;
    w.wait_file(
        &work,
        "web.conf",
        "server web-1 127.0.0.11:80\nserver web-2 127.0.0.12:81\nmode=tcp\n",
    )
    .await;
    println!(
        "output followed the catalog again {:?} after its restart",
        back.elapsed()
    );
    w.assert_alive("after the catalog came back");
}

#[tokio::test]
async fn starting_with_the_catalog_down_writes_nothing_until_it_answers() {
    let mut c = Catalogd::start().await;
    instance(&c, "n1", "127.0.0.11", "web", "web-1", 80, "passing").await;
    c.kill9();
    let work = Work::new();
    let tpl = work.write("web.tmpl", WEB);
    let spec = format!("{}:{}", tpl.display(), work.p("web.conf"));
    let mut w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    w.wait_log("catalog watch failed", SOON).await;
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.assert_alive("with no catalog at startup");
    assert!(
        !work.path("web.conf").exists(),
        "never write a file from missing data; log:\n{}",
        w.log_text()
    );
    c.restart().await;
    w.wait_file(&work, "web.conf", "server web-1 127.0.0.11:80\nmode=http\n")
        .await;
}

#[tokio::test]
async fn template_edits_on_disk() {
    let c = Catalogd::start().await;
    instance(&c, "n1", "127.0.0.11", "web", "web-1", 80, "passing").await;
    put_kv(&c, "e/extra", "from-a-new-dependency").await;
    let work = Work::new();
    let tpl = work.write("web.tmpl", WEB);
    let spec = format!("{}:{}", tpl.display(), work.p("web.conf"));
    let mut w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    w.wait_file(&work, "web.conf", "server web-1 127.0.0.11:80\nmode=http\n")
        .await;

    // Saved the way editors do (rename over the file).
    work.replace(
        "web.tmpl",
        "{% for s in service(name=\"web\") %}backend {{ s.ID }} at {{ s.Address }}\n{% endfor %}",
    );
    w.wait_file(&work, "web.conf", "backend web-1 at 127.0.0.11\n")
        .await;
    assert!(w.log_text().contains("template changed; re-rendering"));

    // Written in place; the edit uses a dependency nobody watched before.
    work.write(
        "web.tmpl",
        "extra={{ key(path=\"e/extra\") }}\n{% for s in service(name=\"web\") %}backend {{ s.ID }}\n{% endfor %}",
    );
    let good = "extra=from-a-new-dependency\nbackend web-1\n";
    w.wait_file(&work, "web.conf", good).await;
    let stamp = work.stamp("web.conf");

    // A broken edit: logged with file, line and column; the last good output stays.
    work.replace(
        "web.tmpl",
        "extra={{ key(path=\"e/extra\") }}\n{% for s in %}\n",
    );
    w.wait_log("template edit does not parse", SOON).await;
    let log = w.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("template edit does not parse"))
        .expect("the error line");
    assert!(
        line.contains(&format!("{}: line 2, column 13", tpl.display())),
        "the error names file, line and column: {line}"
    );
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.assert_alive("after a broken edit");
    assert_eq!(work.read("web.conf").as_deref(), Some(good));
    assert_eq!(work.stamp("web.conf"), stamp, "the last good output stays");

    // Fixed: renders again.
    work.replace("web.tmpl", "fixed {{ key(path=\"e/extra\") }}\n");
    w.wait_file(&work, "web.conf", "fixed from-a-new-dependency\n")
        .await;
    w.assert_alive("after the fix");
}

/// A template saved in place by a writer that truncates first and writes a moment later (`cp`
/// of a large file, `cat > file`, a slow network file system): the empty file in between is not
/// a template to render — no empty output, no command run for it.
#[tokio::test]
async fn a_template_caught_mid_save_is_not_rendered() {
    use std::io::Write as _;
    let c = Catalogd::start().await;
    put_kv(&c, "m/v", "one").await;
    let work = Work::new();
    let tpl = work.write("m.tmpl", "first={{ key(path=\"m/v\") }}\n");
    let spec = format!(
        "{}:{}:cat m.out >> seen.log; echo --- >> seen.log",
        tpl.display(),
        work.p("m.out")
    );
    let w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    w.wait_file(&work, "m.out", "first=one\n").await;
    let mut f = std::fs::File::create(&tpl).expect("truncating the template");
    // An editor's pause between truncating and writing: the half-saved template tmpl must not
    // render.
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.write_all(b"second={{ key(path=\"m/v\") }}\n")
        .expect("writing the template");
    drop(f);
    w.wait_file(&work, "m.out", "second=one\n").await;
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        work.read("seen.log").unwrap_or_default(),
        "first=one\n---\nsecond=one\n---\n",
        "the command saw only whole renderings (an empty line before '---' is an empty \
         output written from the half-saved template); log:\n{}",
        w.log_text()
    );
}

#[tokio::test]
async fn a_syntax_error_at_startup_exits_1_with_line_and_column() {
    let c = Catalogd::start().await;
    let work = Work::new();
    let good = work.write("good.tmpl", "ok\n");
    let bad = work.write("bad.tmpl", "line one\nline two {{ 1 + }}\n");
    let r = run(
        &c.url,
        work.root(),
        &[
            "watch",
            "-t",
            &format!("{}:{}", good.display(), work.p("good.out")),
            "-t",
            &format!("{}:{}", bad.display(), work.p("bad.out")),
            "--wait",
            "0s",
        ],
    );
    r.assert_code(1);
    let want = format!("tmpl: error: {}: line 2, column", bad.display());
    assert!(
        r.stderr.contains(&want),
        "one error naming file, line and column ({want}): {}",
        r.stderr
    );
    // It gives up at once rather than retrying: exit 1 with the error above (`run` fails the
    // test if tmpl keeps running), and nothing rendered.
    assert!(!work.path("bad.out").exists() && !work.path("good.out").exists());
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let c = Catalogd::start().await;
    put_kv(&c, "h/v", "one").await;
    let work = Work::new();
    work.write("a.tmpl", "a={{ key(path=\"h/v\") }}\n");
    work.write("b.tmpl", "b={{ key(path=\"h/v\") }}\n");
    let one = "wait = \"0s\"\n\
               [[template]]\nsource = \"a.tmpl\"\ndestination = \"a.out\"\ncommand = \"echo a >> commands.log\"\n";
    let config = work.write("tmpl.toml", one);
    let mut w = Watcher::start(&c.url, work.root(), &["--config", config.to_str().unwrap()]).await;
    w.wait_file(&work, "a.out", "a=one\n").await;
    w.wait_until("the first command", Duration::from_secs(5), || {
        work.lines("commands.log").len() == 1
    })
    .await;
    let a_stamp = work.stamp("a.out");

    work.write(
        "tmpl.toml",
        &format!(
            "{one}[[template]]\nsource = \"b.tmpl\"\ndestination = \"b.out\"\ncommand = \"echo b >> commands.log\"\n"
        ),
    );
    w.signal("-HUP");
    w.wait_file(&work, "b.out", "b=one\n").await;
    w.wait_log("SIGHUP: reloading the configuration", SOON)
        .await;
    w.wait_until("b's command", Duration::from_secs(5), || {
        work.lines("commands.log").len() == 2
    })
    .await;
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        work.stamp("a.out"),
        a_stamp,
        "an unchanged output is not rewritten by a reload"
    );
    assert_eq!(
        work.lines("commands.log"),
        ["a", "b"],
        "nor is its command run again"
    );
    w.assert_alive("after SIGHUP");

    put_kv(&c, "h/v", "two").await;
    w.wait_file(&work, "a.out", "a=two\n").await;
    w.wait_file(&work, "b.out", "b=two\n").await;
}

async fn stops_cleanly(signal: &str) {
    let c = Catalogd::start().await;
    put_kv(&c, "s/v", "one").await;
    let work = Work::new();
    let tpl = work.write("s.tmpl", "v={{ key(path=\"s/v\") }}\n");
    let spec = format!("{}:{}", tpl.display(), work.p("s.out"));
    let mut w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    w.wait_file(&work, "s.out", "v=one\n").await;
    w.signal(signal);
    // The deadline is liveness only (the test fails instead of hanging).
    let status = w.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit 0; log:\n{}", w.log_text());
    let log = w.log_text();
    assert!(log.contains("tmpl stopped"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(
        work.read("s.out").as_deref(),
        Some("v=one\n"),
        "output kept"
    );
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    stops_cleanly("-TERM").await;
}

#[tokio::test]
async fn sigint_stops_cleanly() {
    stops_cleanly("-INT").await;
}

/// A command that takes long (within its 30 s default timeout) must not hold up a stop.
#[tokio::test]
async fn sigterm_while_a_command_runs_stops_promptly() {
    let c = Catalogd::start().await;
    put_kv(&c, "s/v", "one").await;
    let work = Work::new();
    let tpl = work.write("s.tmpl", "v={{ key(path=\"s/v\") }}\n");
    let spec = format!(
        "{}:{}:echo $$ > sh.pid; touch started; sleep 12; touch finished",
        tpl.display(),
        work.p("s.out")
    );
    let mut w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    w.wait_until("the command to start", SOON, || {
        work.path("started").exists()
    })
    .await;
    let sh: u32 = work
        .read("sh.pid")
        .and_then(|s| s.trim().parse().ok())
        .expect("the command wrote its shell's pid");
    w.signal("-TERM");
    // The deadline is liveness only (the test fails instead of hanging).
    let status = w.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit 0; log:\n{}", w.log_text());
    // It did not wait for the command: the command never got to its end, and its shell is
    // gone, so it never will.
    assert!(
        !work.path("finished").exists(),
        "SIGTERM waited for the running command; log:\n{}",
        w.log_text()
    );
    w.wait_until("the command's shell is gone", SOON, || !running(sh))
        .await;
}

/// A SIGHUP that finds a broken config file keeps the running configuration (and process).
#[tokio::test]
async fn sighup_with_a_broken_config_keeps_the_running_one() {
    let c = Catalogd::start().await;
    put_kv(&c, "r/v", "one").await;
    let work = Work::new();
    work.write("a.tmpl", "a={{ key(path=\"r/v\") }}\n");
    let good = "wait = \"0s\"\n[[template]]\nsource = \"a.tmpl\"\ndestination = \"a.out\"\n";
    let config = work.write("tmpl.toml", good);
    let mut w = Watcher::start(&c.url, work.root(), &["--config", config.to_str().unwrap()]).await;
    w.wait_file(&work, "a.out", "a=one\n").await;
    work.write("tmpl.toml", "[[template]]\nsource = \"a.tmpl\"\n");
    w.signal("-HUP");
    w.wait_log(
        "the new configuration is invalid; keeping the running one",
        SOON,
    )
    .await;
    w.assert_alive("after a SIGHUP with a broken config");
    put_kv(&c, "r/v", "two").await;
    w.wait_file(&work, "a.out", "a=two\n").await;
}
