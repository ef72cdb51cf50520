//! How `tmpl watch` replaces output files: atomically (a reader reading the file in a tight loop
//! while it flips between two ~1.4 MB renderings only ever sees one of the two whole contents,
//! never a partial file nor a missing one), keeping the existing file's mode or setting the
//! configured `perms`, keeping the previous content in `.bak` with `backup`, creating missing
//! directories unless `create_dest_dirs = false` (then the write fails, is logged, and tmpl
//! carries on), and leaving no temp files behind.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_tests::Catalogd;

use crate::tmpl_common::{Watcher, Work, put_kv};

/// ~70 bytes x 20000 lines, every line carrying the selected value.
const BIG: &str = "{% set v = key(path=\"big/sel\") %}{% for i in range(end=20000) %}{{ v }} line {{ i }} of a large output, padded to make it long enough ....\n{% endfor %}";

fn big(value: &str) -> String {
    (0..20000)
        .map(|i| {
            format!("{value} line {i} of a large output, padded to make it long enough ....\n")
        })
        .collect()
}

/// What the reader saw.
#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    a: u64,
    b: u64,
    transitions: u64,
    /// Reads that were neither whole content: (length, first 60 bytes).
    bad: Vec<(usize, String)>,
    errors: Vec<String>,
}

#[tokio::test]
async fn a_reader_never_sees_a_partial_file() {
    let c = Catalogd::start().await;
    put_kv(&c, "big/sel", "AAAA").await;
    let work = Work::new();
    let tpl = work.write("big.tmpl", BIG);
    let spec = format!("{}:{}", tpl.display(), work.p("out/big.txt"));
    let w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    let (a, b) = (big("AAAA"), big("BBBB"));
    w.wait_file(&work, "out/big.txt", &a).await;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path, a, b) = (stop.clone(), work.path("out/big.txt"), a.clone(), b.clone());
        std::thread::spawn(move || {
            let mut seen = Seen::default();
            let mut last = 0u8;
            while !stop.load(Ordering::Relaxed) {
                seen.reads += 1;
                match std::fs::read(&path) {
                    Ok(bytes) if bytes == a.as_bytes() => {
                        seen.a += 1;
                        seen.transitions += u64::from(last == b'B');
                        last = b'A';
                    }
                    Ok(bytes) if bytes == b.as_bytes() => {
                        seen.b += 1;
                        seen.transitions += u64::from(last == b'A');
                        last = b'B';
                    }
                    Ok(bytes) => {
                        if seen.bad.len() < 5 {
                            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]);
                            seen.bad.push((bytes.len(), head.into_owned()));
                        }
                    }
                    Err(e) => {
                        if seen.errors.len() < 5 {
                            seen.errors.push(e.to_string());
                        }
                    }
                }
            }
            seen
        })
    };

    let flips = 20;
    for i in 1..=flips {
        let (value, want) = if i % 2 == 1 {
            ("BBBB", &b)
        } else {
            ("AAAA", &a)
        };
        put_kv(&c, "big/sel", value).await;
        w.wait_file(&work, "out/big.txt", want).await;
        // Let the reader catch this content before the next flip.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader thread");
    println!(
        "{flips} flips of a {} byte file: {} reads ({} A, {} B, {} transitions), {} partial, {} errors",
        a.len(),
        seen.reads,
        seen.a,
        seen.b,
        seen.transitions,
        seen.bad.len(),
        seen.errors.len()
    );
    assert!(
        seen.bad.is_empty(),
        "the reader saw content that is neither whole rendering (length, head): {:?}",
        seen.bad
    );
    assert!(
        seen.errors.is_empty(),
        "the file must exist at every moment: {:?}",
        seen.errors
    );
    assert!(
        seen.a > 0 && seen.b > 0 && seen.transitions >= flips / 2,
        "the reader followed the flips: {seen:?}"
    );
    assert_eq!(
        w.log_count("rendered"),
        flips as usize + 1,
        "one write per flip; log:\n{}",
        w.log_text()
    );
    assert!(
        work.leftovers("out").is_empty(),
        "no temp files left: {:?}",
        work.leftovers("out")
    );
}

#[tokio::test]
async fn modes_backups_and_directories() {
    let c = Catalogd::start().await;
    put_kv(&c, "m/v", "one").await;
    let work = Work::new();
    work.write("m.tmpl", "v={{ key(path=\"m/v\") }}\n");
    // Existing outputs, both 0600.
    for name in ["out/kept.txt", "out/perm-existing.txt"] {
        work.write(name, "old\n");
        std::fs::set_permissions(work.path(name), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    let config = work.write(
        "tmpl.toml",
        r#"
[[template]]
source = "m.tmpl"
destination = "out/kept.txt"
backup = true

[[template]]
source = "m.tmpl"
destination = "out/perm-new.txt"
perms = "0640"

[[template]]
source = "m.tmpl"
destination = "out/perm-existing.txt"
perms = 640

[[template]]
source = "m.tmpl"
destination = "deep/er/nested.txt"

[[template]]
source = "m.tmpl"
destination = "missing/no-dirs.txt"
create_dest_dirs = false
"#,
    );
    let mut w = Watcher::start(
        &c.url,
        work.root(),
        &["--config", config.to_str().unwrap(), "--wait", "0s"],
    )
    .await;
    for name in [
        "out/kept.txt",
        "out/perm-new.txt",
        "out/perm-existing.txt",
        "deep/er/nested.txt",
    ] {
        w.wait_file(&work, name, "v=one\n").await;
    }
    w.wait_log("cannot write output", Duration::from_secs(5))
        .await;
    assert_eq!(
        work.mode("out/kept.txt"),
        0o600,
        "the existing mode is kept"
    );
    assert_eq!(
        work.read("out/kept.txt.bak").as_deref(),
        Some("old\n"),
        "backup keeps the previous content"
    );
    assert_eq!(work.mode("out/perm-new.txt"), 0o640, "perms = \"0640\"");
    assert_eq!(
        work.mode("out/perm-existing.txt"),
        0o640,
        "perms = 640 replaces the old mode"
    );
    assert_eq!(
        work.read("out/perm-existing.txt.bak"),
        None,
        "no backup unless asked"
    );
    assert_eq!(work.mode("deep/er/nested.txt"), 0o644, "a new file is 0644");
    assert!(
        !work.path("missing").exists(),
        "create_dest_dirs = false creates nothing"
    );
    let log = w.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("cannot write output") && l.contains("missing/no-dirs.txt")),
        "the failed write names the destination; log:\n{log}"
    );
    w.assert_alive("after a failed write");

    // Someone creates the directory; the next change gets written. The mode stays as chmod'ed.
    std::fs::create_dir(work.path("missing")).expect("mkdir");
    std::fs::set_permissions(
        work.path("out/kept.txt"),
        std::fs::Permissions::from_mode(0o604),
    )
    .expect("chmod");
    put_kv(&c, "m/v", "two").await;
    for name in [
        "out/kept.txt",
        "out/perm-new.txt",
        "out/perm-existing.txt",
        "deep/er/nested.txt",
        "missing/no-dirs.txt",
    ] {
        w.wait_file(&work, name, "v=two\n").await;
    }
    assert_eq!(
        work.mode("out/kept.txt"),
        0o604,
        "a mode set by hand is kept"
    );
    assert_eq!(
        work.read("out/kept.txt.bak").as_deref(),
        Some("v=one\n"),
        "the backup follows"
    );
    assert_eq!(work.mode("out/perm-new.txt"), 0o640);
    for dir in ["out", "deep/er", "missing"] {
        assert!(
            work.leftovers(dir).is_empty(),
            "no temp files in {dir}: {:?}",
            work.leftovers(dir)
        );
    }
}
