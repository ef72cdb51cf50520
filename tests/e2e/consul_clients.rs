//! Unmodified clients of the tools cairn replaces: py-consul against catalogd and the `marathon`
//! Python client against offerd (both installed by scripts/test) run scripts of what operators'
//! Python tooling does.

use std::process::Command;

use cairn_tests::{Catalogd, workspace_root};

/// Runs `tests/clients/<script> <arg>` with python3: (success, stdout, stderr).
async fn run_client(script: &str, arg: String) -> (bool, String, String) {
    let script = workspace_root().join("tests/clients").join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(arg)
            .output()
            .expect("running python3")
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn py_consul_works_unmodified() {
    let c = Catalogd::start().await;
    let (ok, stdout, stderr) = run_client("py_consul_check.py", c.port.to_string()).await;
    assert!(
        !stderr.contains("No module named 'consul'"),
        "py-consul is not installed: run scripts/test (or pip install py-consul)"
    );
    assert!(
        ok,
        "py-consul script failed:\n{stdout}\n{stderr}\ncatalogd log:\n{}",
        c.log_text()
    );
    assert!(stdout.contains("py-consul: all checks passed"), "{stdout}");
}

/// The `marathon` Python client (installed by scripts/test) against offerd and real agents.
#[tokio::test(flavor = "multi_thread")]
async fn py_marathon_works_unmodified() {
    let c = cairn_tests::cluster::Cluster::start(Default::default()).await;
    let (ok, stdout, stderr) = run_client("py_marathon_check.py", c.offerd.url.clone()).await;
    assert!(
        !stderr.contains("No module named 'marathon'"),
        "the marathon client is not installed: run scripts/test (or pip install marathon)"
    );
    assert!(
        ok,
        "py-marathon script failed:\n{stdout}\n{stderr}\n{}",
        c.logs()
    );
    assert!(
        stdout.contains("py-marathon: all checks passed"),
        "{stdout}"
    );
}
