//! The README's main-job command: `scripts/demo --once` runs end to end on a fresh state
//! directory, shows every result, and stops catalogd cleanly.

use std::process::Command;

use cairn_tests::{free_port, workspace_root};

#[test]
fn demo_runs_end_to_end_and_stops_cleanly() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/demo"))
        .arg("--once")
        .env("CAIRN_PROFILE", "debug")
        .env("DEMO_PORT", port.to_string())
        .env("DEMO_STATE", state.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("running scripts/demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // Both instances listed with their health, only the passing one under --passing.
    assert!(
        stdout.contains("web-1\tdemo-node-1\t127.0.0.1:8081\tpassing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("web-2\tdemo-node-2\t127.0.0.2:8081\tcritical"),
        "{stdout}"
    );
    let passing = stdout
        .split("--passing")
        .nth(1)
        .expect("the --passing step");
    let passing_block = passing.split("\n$ ").next().unwrap_or_default();
    assert!(
        passing_block.contains("web-1") && !passing_block.contains("web-2"),
        "{passing_block}"
    );
    assert!(
        stdout.to_lowercase().contains("x-consul-index:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3   <- answered when the value changed"),
        "{stdout}"
    );
    assert!(stdout.contains("demo: catalogd stopped"), "{stdout}");
    let log = std::fs::read_to_string(state.path().join("catalogd.log")).unwrap();
    assert!(
        log.contains("catalogd stopped"),
        "catalogd did not shut down cleanly:\n{log}"
    );
}
