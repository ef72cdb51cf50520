//! `healthcheck file` on real files (cron heartbeats): fresh, too old (CRITICAL) or getting old
//! (WARNING), missing, size bounds, perfdata `age=...s` and `size=...B`, and bad arguments.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::healthcheck_common::{Run, assert_nagios_shape, healthcheck};

fn file_check(path: &Path, args: &[&str]) -> Run {
    let p = path.to_str().expect("utf-8 path");
    let mut all = vec!["file", p];
    all.extend_from_slice(args);
    healthcheck(&all)
}

/// A 5-byte file, optionally with its mtime set back with `touch -d`.
fn heartbeat(dir: &Path, name: &str, ago: Option<&str>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "beat\n").expect("writing the file");
    if let Some(ago) = ago {
        let ok = Command::new("touch")
            .arg("-d")
            .arg(ago)
            .arg(&path)
            .status()
            .expect("running touch")
            .success();
        assert!(ok, "touch -d {ago:?} failed");
    }
    path
}

#[test]
fn fresh_file_is_ok_with_age_and_size_perfdata() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = heartbeat(dir.path(), "beat", None);
    let run = file_check(&path, &["--max-age", "1m"]);
    let line = run.expect(0, "FILE OK - ").line();
    assert_nagios_shape(line);
    run.contains_all(&[path.to_str().unwrap(), "5 bytes"]);
    let age = run.perf_item("age");
    assert_eq!(age.uom, "s");
    assert!(age.value < 30.0, "{line}");
    assert_eq!(
        age.fields,
        ["", "60.000"],
        "max age as the critical threshold, in seconds like time: {line}"
    );
    assert!(
        regex::Regex::new(r"^age=\d+\.0{6}s;;60\.000$")
            .unwrap()
            .is_match(&age.raw),
        "whole seconds: {line}"
    );
    assert_eq!(run.perf_item("size").raw, "size=5B;;;0");

    // No limits at all: it exists, that is enough.
    file_check(&path, &[]).expect(0, "FILE OK - ");
    // A plain number is seconds, Nagios style; --name relabels.
    file_check(&path, &["--max-age", "600", "--name", "cron_backup"])
        .expect(0, "cron_backup OK - ");
}

#[test]
fn old_file_is_critical_or_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = heartbeat(dir.path(), "old", Some("2 hours ago"));

    let run = file_check(&path, &["--max-age", "1h"]);
    let line = run.expect(2, "FILE CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["older than 3600 s"]);
    let age = run.perf_item("age");
    assert!(
        (7200.0..7300.0).contains(&age.value),
        "about two hours: {line}"
    );
    assert_eq!(age.fields, ["", "3600.000"], "{line}");

    let run = file_check(&path, &["--warn-age", "30m", "--max-age", "3h"]);
    let line = run.expect(1, "FILE WARNING - ").line();
    run.contains_all(&["older than 1800 s"]);
    assert_eq!(
        run.perf_item("age").fields,
        ["1800.000", "10800.000"],
        "{line}"
    );
    assert_eq!(run.perf_item("size").raw, "size=5B;;;0");

    // Within both: OK.
    file_check(&path, &["--warn-age", "3h", "--max-age", "4h"]).expect(0, "FILE OK - ");
    // Warn age alone.
    file_check(&path, &["--warn-age", "3600"]).expect(1, "FILE WARNING - ");
}

#[test]
fn missing_file_is_critical() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("never-written");
    let run = file_check(&path, &["--max-age", "1m"]);
    let line = run.expect(2, "FILE CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["no such file", path.to_str().unwrap()]);
}

#[test]
fn size_bounds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = heartbeat(dir.path(), "beat", None);
    let run = file_check(&path, &["--min-size", "10"]);
    run.expect(2, "FILE CRITICAL - ")
        .contains_all(&["smaller than 10 bytes"]);
    assert_eq!(run.perf_item("size").value, 5.0);
    file_check(&path, &["--max-size", "3"])
        .expect(2, "FILE CRITICAL - ")
        .contains_all(&["larger than 3 bytes"]);
    file_check(&path, &["--min-size", "5", "--max-size", "5"]).expect(0, "FILE OK - ");
    file_check(
        &path,
        &["--min-size", "1", "--max-size", "10", "--max-age", "1m"],
    )
    .expect(0, "FILE OK - ");

    // An empty spool file below the minimum.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    let run = file_check(&empty, &["--min-size", "1"]);
    run.expect(2, "FILE CRITICAL - ");
    assert_eq!(run.perf_item("size").raw, "size=0B;;;0");
}

#[test]
fn bad_file_arguments_are_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = heartbeat(dir.path(), "beat", None);
    file_check(&path, &["--min-size", "10", "--max-size", "3"])
        .expect(3, "HEALTHCHECK UNKNOWN - ")
        .contains_all(&["min size", "max size"]);
    file_check(&path, &["--max-age", "soon"])
        .expect(3, "HEALTHCHECK UNKNOWN - ")
        .contains_all(&["max", "soon"]);
    file_check(&path, &["--min-size", "-1"]).expect(3, "HEALTHCHECK UNKNOWN - ");
}
