//! Bad command lines are Nagios UNKNOWN: exit 3 (not clap's 2) and exactly one stdout line
//! `HEALTHCHECK UNKNOWN - <reason>` that says what is wrong; `--help` and `--version` exit 0.

use crate::healthcheck_common::healthcheck;

/// Why `args` do not give exit 3 and one `HEALTHCHECK UNKNOWN - ` line mentioning every part of
/// `reason`, if they do not.
fn not_unknown(args: &[&str], reason: &[&str]) -> Option<String> {
    let run = healthcheck(args);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let line = lines.first().copied().unwrap_or_default();
    let text = line.trim_start_matches("HEALTHCHECK UNKNOWN - ").trim();
    let missing: Vec<&&str> = reason.iter().filter(|r| !line.contains(**r)).collect();
    let ok = run.code == Some(3)
        && lines.len() == 1
        && line.starts_with("HEALTHCHECK UNKNOWN - ")
        && !text.is_empty()
        && missing.is_empty();
    (!ok).then(|| {
        format!(
            "healthcheck {args:?}: exit {:?}, want 3 and one \"HEALTHCHECK UNKNOWN - <reason>\" \
             line mentioning {reason:?}; stdout:\n{}stderr:\n{}",
            run.code, run.stdout, run.stderr
        )
    })
}

/// Asserts every case is UNKNOWN with its reason; reports all failing cases at once.
fn all_unknown(cases: &[(&[&str], &[&str])]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(args, reason)| not_unknown(args, reason))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn no_subcommand() {
    all_unknown(&[(&[], &[])]);
}

#[test]
fn unknown_subcommand_and_unknown_flag() {
    all_unknown(&[
        (&["bogus"], &["bogus"]),
        (&["http", "--bogus", "http://127.0.0.1:1/"], &["--bogus"]),
        (&["--bogus"], &["--bogus"]),
        (&["tcp", "127.0.0.1:1", "extra"], &["extra"]),
    ]);
}

#[test]
fn missing_required_arguments_are_named() {
    all_unknown(&[
        (&["http"], &["URL"]),
        (&["tcp"], &["ADDRESS"]),
        (&["dns"], &["NAME"]),
        (&["file"], &["PATH"]),
        (&["exec"], &["COMMAND"]),
        (&["run"], &["FILE"]),
        (&["http", "--timeout"], &["--timeout"]),
    ]);
}

const URL: &str = "http://127.0.0.1:1/";

#[test]
fn bad_values_name_the_field() {
    all_unknown(&[
        (&["http", "--timeout", "abc", URL], &["timeout", "abc"]),
        (&["http", "-t", "0", URL], &["timeout"]),
        (&["http", "-t", "-1", URL], &[]),
        (&["http", "-w", "soon", URL], &["warning", "soon"]),
        (&["http", "-c", "later", URL], &["critical", "later"]),
        (&["http", "--expect-status", "999", URL], &["999"]),
        (&["http", "--expect-status", "299-200", URL], &["299-200"]),
        (&["http", "-H", "NoColon", URL], &["NoColon"]),
        (&["http", "-X", "BAD METHOD", URL], &["method"]),
        (&["http", "notaurl"], &["notaurl"]),
        (&["http", "ftp://127.0.0.1/"], &["scheme"]),
        (&["tcp", "nohostport"], &["nohostport", "HOST:PORT"]),
        (
            &[
                "dns",
                "x.test",
                "--server",
                "127.0.0.1:1",
                "--type",
                "BOGUS",
            ],
            &["BOGUS"],
        ),
        (&["exec", "--", ""], &["command"]),
    ]);
}

#[test]
fn bad_regex_is_one_line() {
    all_unknown(&[
        (&["http", "--regex", "(", URL], &["regex", "unclosed group"]),
        (&["http", "-r", "a{2,1}", URL], &["regex"]),
    ]);
}

#[test]
fn help_and_version_exit_zero() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["http", "--help"],
        &["tcp", "--help"],
        &["dns", "--help"],
        &["exec", "--help"],
        &["file", "--help"],
        &["run", "--help"],
        &["agent", "--help"],
    ] {
        let run = healthcheck(args);
        run.assert_code(0);
        assert!(
            run.stdout.contains("Usage: healthcheck"),
            "healthcheck {args:?} prints usage on stdout: {}",
            run.stdout
        );
    }
    let run = healthcheck(&["--version"]);
    run.assert_code(0);
    assert!(run.stdout.starts_with("healthcheck "), "{}", run.stdout);
}
