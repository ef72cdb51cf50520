//! Unmodified clients of the tools cairn replaces: py-consul against catalogd and the `marathon`
//! Python client against offerd (both installed by scripts/test) run scripts of what operators'
//! Python tooling does.

use std::process::Command;

use cairn_tests::{Catalogd, workspace_root};

#[tokio::test]
async fn py_consul_works_unmodified() {
    let c = Catalogd::start().await;
    let script = workspace_root().join("tests/clients/py_consul_check.py");
    let port = c.port.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(port)
            .output()
            .expect("running python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'consul'"),
        "py-consul is not installed: run scripts/test (or pip install py-consul)"
    );
    assert!(
        out.status.success(),
        "py-consul script failed:\n{stdout}\n{stderr}\ncatalogd log:\n{}",
        c.log_text()
    );
    assert!(stdout.contains("py-consul: all checks passed"), "{stdout}");
}

/// The `marathon` Python client (installed by scripts/test) against offerd and real agents.
#[tokio::test(flavor = "multi_thread")]
async fn py_marathon_works_unmodified() {
    let c = cairn_tests::cluster::Cluster::start(Default::default()).await;
    let script = workspace_root().join("tests/clients/py_marathon_check.py");
    let url = c.offerd.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(url)
            .output()
            .expect("running python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'marathon'"),
        "the marathon client is not installed: run scripts/test (or pip install marathon)"
    );
    assert!(
        out.status.success(),
        "py-marathon script failed:\n{stdout}\n{stderr}\n{}",
        c.logs()
    );
    assert!(
        stdout.contains("py-marathon: all checks passed"),
        "{stdout}"
    );
}
