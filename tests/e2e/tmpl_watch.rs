//! `tmpl watch` following a real catalogd: a change rewrites the output and runs the command; a
//! write that does not change the rendering (an unrelated key, the same registration again)
//! neither rewrites the file (same inode and mtime) nor runs the command; quiescence
//! (`--wait MIN:MAX`) folds a burst of changes into one render and still renders at least every
//! MAX during an endless stream of changes; a template's own `wait` from the config file
//! overrides the global one.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_tests::Catalogd;

use crate::tmpl_common::{Watcher, Work, instance, put_kv};

/// A command that appends the wall-clock time in nanoseconds to `log` (relative to tmpl's cwd).
fn stamp_command(log: &str) -> String {
    format!("date +%s%N >> {log}")
}

/// The times (ns since the epoch) a stamp command recorded.
fn stamps(work: &Work, log: &str) -> Vec<u128> {
    work.lines(log)
        .iter()
        .map(|l| l.trim().parse().expect("a date +%s%N line"))
        .collect()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

fn ms(ns: u128) -> f64 {
    ns as f64 / 1e6
}

#[tokio::test]
async fn changes_rewrite_and_run_the_command_unchanged_output_does_neither() {
    let c = Catalogd::start().await;
    instance(&c, "n1", "127.0.0.11", "web", "web-1", 80, "passing").await;
    put_kv(&c, "cfg/greeting", "hello").await;
    let work = Work::new();
    let tpl = work.write(
        "web.tmpl",
        "greeting={{ key(path=\"cfg/greeting\") }}\n{% for s in service(name=\"web\") %}server {{ s.ID }} {{ s.Address }}:{{ s.Port }}\n{% endfor %}",
    );
    let spec = format!(
        "{}:{}:{}",
        tpl.display(),
        work.p("web.conf"),
        stamp_command("commands.log")
    );
    let w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    w.wait_file(
        &work,
        "web.conf",
        "greeting=hello\nserver web-1 127.0.0.11:80\n",
    )
    .await;
    w.wait_until("the first command", Duration::from_secs(5), || {
        work.lines("commands.log").len() == 1
    })
    .await;

    // A change in each dependency: new content, one more command each.
    put_kv(&c, "cfg/greeting", "bonjour").await;
    w.wait_file(
        &work,
        "web.conf",
        "greeting=bonjour\nserver web-1 127.0.0.11:80\n",
    )
    .await;
    w.wait_until(
        "a command for the KV change",
        Duration::from_secs(5),
        || work.lines("commands.log").len() == 2,
    )
    .await;
    instance(&c, "n2", "127.0.0.12", "web", "web-2", 81, "passing").await;
    let want = "greeting=bonjour\nserver web-1 127.0.0.11:80\nserver web-2 127.0.0.12:81\n";
    w.wait_file(&work, "web.conf", want).await;
    w.wait_until(
        "a command for the catalog change",
        Duration::from_secs(5),
        || work.lines("commands.log").len() == 3,
    )
    .await;
    // A health change that removes an instance from the healthy set.
    instance(&c, "n2", "127.0.0.12", "web", "web-2", 81, "critical").await;
    let want = "greeting=bonjour\nserver web-1 127.0.0.11:80\n";
    w.wait_file(&work, "web.conf", want).await;
    w.wait_until(
        "a command for the health change",
        Duration::from_secs(5),
        || work.lines("commands.log").len() == 4,
    )
    .await;

    // Writes that leave the rendering as it is.
    let before = work.stamp("web.conf");
    let renders_before = w.log_count("rendered");
    put_kv(&c, "cfg/unrelated", "x").await;
    put_kv(&c, "cfg/greeting", "bonjour").await;
    instance(&c, "n1", "127.0.0.11", "web", "web-1", 80, "passing").await;
    instance(&c, "n2", "127.0.0.12", "web", "web-2", 81, "critical").await;
    instance(&c, "n9", "127.0.0.19", "other", "other-1", 99, "passing").await;
    // With --wait 0s each of them is handled within milliseconds; give it ample time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        work.read("web.conf").as_deref(),
        Some(want),
        "content unchanged"
    );
    assert_eq!(
        work.stamp("web.conf"),
        before,
        "unchanged output must not be rewritten (inode, mtime, mode); log:\n{}",
        w.log_text()
    );
    assert_eq!(
        work.lines("commands.log").len(),
        4,
        "no command without a change; log:\n{}",
        w.log_text()
    );
    assert_eq!(
        w.log_count("rendered"),
        renders_before,
        "no 'rendered' line either; log:\n{}",
        w.log_text()
    );
    assert!(work.leftovers("").is_empty(), "no temp files left behind");
}

#[tokio::test]
async fn a_burst_of_changes_gives_one_render_after_the_quiet_period() {
    let c = Catalogd::start().await;
    put_kv(&c, "q/v", "start").await;
    let work = Work::new();
    let tpl = work.write("q.tmpl", "v={{ key(path=\"q/v\") }}\n");
    let spec = format!(
        "{}:{}:{}",
        tpl.display(),
        work.p("q.out"),
        stamp_command("commands.log")
    );
    let w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "300ms:1s"]).await;
    w.wait_file(&work, "q.out", "v=start\n").await;
    w.wait_until("the first command", Duration::from_secs(5), || {
        work.lines("commands.log").len() == 1
    })
    .await;

    let first_put = now_ns();
    let mut widest = 0u128;
    let mut prev = first_put;
    for i in 1..=5 {
        put_kv(&c, "q/v", &format!("burst-{i}")).await;
        let t = now_ns();
        widest = widest.max(t - prev);
        prev = t;
        if i < 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let last_put = now_ns();
    w.wait_file(&work, "q.out", "v=burst-5\n").await;
    // Long enough for any straggling render (min 300 ms, max 1 s) to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let times = stamps(&work, "commands.log");
    println!(
        "burst of 5 over {:.0} ms; command ran {:.0} ms after the last change; commands: {}",
        ms(last_put - first_put),
        ms(times.last().copied().unwrap_or(0).saturating_sub(last_put)),
        times.len()
    );
    assert_eq!(
        times.len(),
        2,
        "5 changes 50 ms apart must give one render and one command (widest gap between two \
         writes: {:.0} ms; above 300 ms the machine was too slow for this test); log:\n{}",
        ms(widest),
        w.log_text()
    );
    assert!(
        times[1] >= last_put + 250_000_000,
        "the render waits for {} ms of calm after the last change (ran {:.0} ms after it)",
        300,
        ms(times[1].saturating_sub(last_put))
    );
    assert_eq!(w.log_count("rendered"), 2, "log:\n{}", w.log_text());
}

#[tokio::test]
async fn a_stream_of_changes_still_renders_every_max() {
    let c = Catalogd::start().await;
    put_kv(&c, "q/v", "start").await;
    let work = Work::new();
    let tpl = work.write("q.tmpl", "v={{ key(path=\"q/v\") }}\n");
    let spec = format!(
        "{}:{}:{}",
        tpl.display(),
        work.p("q.out"),
        stamp_command("commands.log")
    );
    let w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "300ms:1s"]).await;
    w.wait_file(&work, "q.out", "v=start\n").await;
    w.wait_until("the first command", Duration::from_secs(5), || {
        work.lines("commands.log").len() == 1
    })
    .await;

    // A change every 100 ms for 2 s: never 300 ms of calm.
    let first_put = now_ns();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(2) {
        i += 1;
        put_kv(&c, "q/v", &format!("stream-{i}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_put = now_ns();
    w.wait_file(&work, "q.out", &format!("v=stream-{i}\n"))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let times = stamps(&work, "commands.log");
    let during: Vec<f64> = times[1..]
        .iter()
        .filter(|t| **t < last_put)
        .map(|t| ms(t - first_put))
        .collect();
    println!(
        "{i} changes over {:.0} ms; renders after the first change at (ms): {:?}",
        ms(last_put - first_put),
        times[1..]
            .iter()
            .map(|t| ms(t.saturating_sub(first_put)).round())
            .collect::<Vec<_>>()
    );
    assert!(
        !during.is_empty(),
        "with max = 1 s, renders must happen during a 2 s stream of changes; log:\n{}",
        w.log_text()
    );
    assert!(
        during[0] >= 900.0 && during[0] <= 1800.0,
        "the first render comes at max (1 s) after the first change, not before min of calm \
         nor much later: {:.0} ms",
        during[0]
    );
    let mut prev = first_put;
    for t in &times[1..] {
        let gap = ms(t.saturating_sub(prev));
        assert!(
            gap <= 1800.0,
            "renders at most ~1 s apart while changes keep coming: gap {gap:.0} ms; times {times:?}"
        );
        prev = *t;
    }
    assert!(
        times.len() - 1 <= 5,
        "far fewer renders than changes ({} for {i} changes)",
        times.len() - 1
    );
}

#[tokio::test]
async fn per_template_wait_from_the_config_file() {
    let c = Catalogd::start().await;
    put_kv(&c, "w/v", "one").await;
    let work = Work::new();
    work.write("fast.tmpl", "fast={{ key(path=\"w/v\") }}\n");
    work.write("slow.tmpl", "slow={{ key(path=\"w/v\") }}\n");
    // Relative paths in a config file are taken from the file's directory.
    let config = work.write(
        "tmpl.toml",
        "wait = \"0s\"\n\
         [[template]]\nsource = \"fast.tmpl\"\ndestination = \"out/fast.txt\"\n\
         [[template]]\nsource = \"slow.tmpl\"\ndestination = \"out/slow.txt\"\nwait = \"1500ms:3s\"\n",
    );
    let w = Watcher::start(&c.url, work.root(), &["--config", config.to_str().unwrap()]).await;
    w.wait_file(&work, "out/fast.txt", "fast=one\n").await;
    w.wait_file(&work, "out/slow.txt", "slow=one\n").await;

    let put = Instant::now();
    put_kv(&c, "w/v", "two").await;
    w.wait_file(&work, "out/fast.txt", "fast=two\n").await;
    let fast = put.elapsed();
    assert_eq!(
        work.read("out/slow.txt").as_deref(),
        Some("slow=one\n"),
        "wait 0s renders at once: the slow template still waits when the fast one rendered \
         ({fast:?})"
    );
    w.wait_file(&work, "out/slow.txt", "slow=two\n").await;
    let slow = put.elapsed();
    println!("global wait 0s: rendered after {fast:?}; template wait 1500ms: after {slow:?}");
    assert!(
        slow >= Duration::from_millis(1500),
        "the template's own wait (1500ms) applies: {slow:?}"
    );
}
