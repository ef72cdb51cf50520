//! `healthcheck exec` running real scripts and a real Debian Nagios plugin: exit codes 0-3 relayed
//! as OK/WARNING/CRITICAL/UNKNOWN with the plugin's text and perfdata, other codes and signals
//! UNKNOWN, a timeout that kills the plugin and everything it started, and commands that cannot
//! run.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::healthcheck_common::{Run, assert_nagios_shape, healthcheck};

/// Writes an executable `#!/bin/sh` script into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("writing a script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn exec(args: &[&str]) -> Run {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    healthcheck(&all)
}

#[test]
fn exit_codes_map_to_statuses_with_text_and_perfdata() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (0, "OK", "SERVICE OK - fine"),
        (1, "WARNING", "SERVICE WARNING - degraded"),
        (2, "CRITICAL", "SERVICE CRITICAL - down"),
        (3, "UNKNOWN", "SERVICE UNKNOWN - cannot tell"),
    ];
    for (code, status, text) in cases {
        let s = script(
            dir.path(),
            &format!("exit{code}.sh"),
            &format!("echo '{text} | val=1;5;10;0'\necho 'second line is ignored'\nexit {code}"),
        );
        let run = exec(&["--", s.to_str().unwrap()]);
        let line = run.expect(code, &format!("EXEC {status} - ")).line();
        assert_nagios_shape(line);
        assert_eq!(run.text(), text, "{line}");
        let perf = run.perf();
        assert_eq!(
            perf[0].raw, "val=1;5;10;0",
            "plugin perfdata relayed first: {line}"
        );
        let time = run.perf_item("time");
        assert_eq!(time.uom, "s");
        assert_eq!(
            time.fields,
            ["", "10.000", "0"],
            "timeout as critical: {line}"
        );
        assert!(!line.contains("second line"), "{line}");
    }
}

#[test]
fn other_exit_codes_and_signals_are_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = script(dir.path(), "seven.sh", "echo 'ODD - seven | x=7'\nexit 7");
    let run = exec(&["--", s.to_str().unwrap()]);
    let line = run.expect(3, "EXEC UNKNOWN - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["exited with code 7", "ODD - seven"]);
    assert_eq!(run.perf_item("x").raw, "x=7");

    let s = script(dir.path(), "killed.sh", "echo 'about to die'\nkill -9 $$");
    exec(&["--", s.to_str().unwrap()])
        .expect(3, "EXEC UNKNOWN - ")
        .contains_all(&["signal"]);
}

#[test]
fn arguments_stderr_and_silence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = script(dir.path(), "args.sh", "echo \"ARGS OK - [$1] [$2] | n=$#\"");
    let run = exec(&["--name", "argv", "--", s.to_str().unwrap(), "a b", "-t"]);
    run.expect(0, "argv OK - ");
    assert_eq!(run.text(), "ARGS OK - [a b] [-t]");
    assert_eq!(run.perf_item("n").value, 2.0);

    // Only stderr: that is the text.
    let s = script(dir.path(), "err.sh", "echo 'ERR - on stderr' >&2\nexit 2");
    let run = exec(&["--", s.to_str().unwrap()]);
    run.expect(2, "EXEC CRITICAL - ");
    assert_eq!(run.text(), "ERR - on stderr");

    // No output at all still makes a line.
    let s = script(dir.path(), "quiet.sh", "exit 0");
    exec(&["--", s.to_str().unwrap()])
        .expect(0, "EXEC OK - ")
        .contains_all(&["no output"]);
}

/// Whether `pid` is gone (or only a zombie waiting for a reaper).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn timeout_kills_the_plugin_and_its_children() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile = dir.path().join("child.pid");
    let s = script(
        dir.path(),
        "slow.sh",
        "sleep 30 &\necho $! > \"$1\"\nsleep 10\necho 'SLOW OK - finished'",
    );
    let run = exec(&[
        "-t",
        "0.5",
        "--",
        s.to_str().unwrap(),
        pidfile.to_str().unwrap(),
    ]);
    let line = run.expect(2, "EXEC CRITICAL - ").line();
    assert_nagios_shape(line);
    // It gave up at its timeout, not at the script's end: it says so, its time shows it
    // waited, and the script's last line never came.
    run.contains_all(&["timed out", "0.500"]);
    assert!(!run.stdout.contains("SLOW OK"), "{line}");
    let time = run.perf_item("time");
    assert!(time.value >= 0.45, "{line}");
    assert_eq!(time.fields, ["", "0.500", "0"], "{line}");

    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("the script wrote its child's pid")
        .trim()
        .parse()
        .expect("a pid");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = !gone(pid);
    if survived {
        // Clean up the stray child this test's script started before failing.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(
        !survived,
        "the plugin's background child {pid} survived the timeout"
    );
}

#[test]
fn commands_that_cannot_run_are_unknown() {
    let run = exec(&["--", "/nonexistent/check_nothing", "x"]);
    let line = run.expect(3, "EXEC UNKNOWN - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["no such command", "/nonexistent/check_nothing"]);
    exec(&["--", "no-such-plugin-on-path-xyz"])
        .expect(3, "EXEC UNKNOWN - ")
        .contains_all(&["no such command"]);

    let dir = tempfile::tempdir().expect("temp dir");
    let s = dir.path().join("noexec.sh");
    std::fs::write(&s, "#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    exec(&["--", s.to_str().unwrap()])
        .expect(3, "EXEC UNKNOWN - ")
        .contains_all(&["permission denied"]);
}

#[test]
fn real_nagios_plugin_is_relayed() {
    let plugin = "/usr/lib/nagios/plugins/check_dummy";
    assert!(
        Path::new(plugin).exists(),
        "{plugin} missing (package monitoring-plugins-basic); run scripts/test to set up the \
         test dependencies"
    );
    let run = exec(&["--", plugin, "1", "text from the plugin"]);
    let line = run.expect(1, "EXEC WARNING - ").line();
    assert_nagios_shape(line);
    assert_eq!(run.text(), "WARNING: text from the plugin");
    exec(&["--name", "dummy", "--", plugin, "0", "all good"])
        .expect(0, "dummy OK - ")
        .contains_all(&["OK: all good"]);
    exec(&["--", plugin, "2", "bad"]).expect(2, "EXEC CRITICAL - ");
    exec(&["--", plugin, "3", "what"]).expect(3, "EXEC UNKNOWN - ");
}
