//! TLS for every HTTP API (issue 15): catalogd, offerd and taskrun serve HTTPS with
//! `--tls-cert`/`--tls-key`, and with `--tls-client-ca` only to clients holding a certificate
//! that CA signed; every client speaks https with Consul's settings (`CONSUL_CACERT`,
//! `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`, `CONSUL_HTTP_SSL`).
//! The certificates are made here with the `openssl` command, as the README shows an operator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cairn_client::TlsOptions;
use cairn_tests::{bin, wait_for};
use serde_json::{Value, json};

/// Variables of the test's own environment that would change what a client does.
const CLIENT_ENV: &[&str] = &[
    "CAIRN_CATALOG",
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_SSL",
    "CONSUL_CACERT",
    "CONSUL_CLIENT_CERT",
    "CONSUL_CLIENT_KEY",
    "CONSUL_TLS_SERVER_NAME",
    "CAIRN_TOKEN",
    "CONSUL_HTTP_TOKEN",
    "CAIRN_OFFERD",
    "CAIRN_OFFERD_TOKEN",
    "CAIRN_OFFERD_CACERT",
    "CAIRN_OFFERD_CLIENT_CERT",
    "CAIRN_OFFERD_CLIENT_KEY",
    "CAIRN_OFFERD_TLS_SERVER_NAME",
];

/// A CA and the certificates it signed, plus a second ("rogue") CA with a client certificate of
/// its own, in a temporary directory: `<name>.pem` and `<name>.key` each.
struct Pki {
    dir: tempfile::TempDir,
}

const SERVER_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
     extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";
const CLIENT_EXT: &str =
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.ca("ca");
        pki.issue("ca", "server", SERVER_EXT);
        pki.issue("ca", "client", CLIENT_EXT);
        pki.ca("rogue-ca");
        pki.issue("rogue-ca", "rogue", CLIENT_EXT);
        pki
    }

    fn pem(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pem"))
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.key"))
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("running openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str) {
        let (key, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN=cairn test {name}"),
        );
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    fn issue(&self, ca: &str, name: &str, ext: &str) {
        let ext_file = format!("{name}.ext");
        std::fs::write(self.dir.path().join(&ext_file), ext).expect("writing the extensions");
        let (key, csr, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subj,
        ]);
        let serial = format!("0x{:016x}", rand::random::<u64>());
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &ext_file,
        ]);
    }

    /// Consul's variables for a client trusting the CA, with `cert`'s certificate and key.
    fn client_env(&self, cert: Option<&str>) -> Vec<(&'static str, String)> {
        let mut env = vec![("CONSUL_CACERT", self.pem("ca").display().to_string())];
        if let Some(name) = cert {
            env.push(("CONSUL_CLIENT_CERT", self.pem(name).display().to_string()));
            env.push(("CONSUL_CLIENT_KEY", self.key(name).display().to_string()));
        }
        env
    }

    /// An https client trusting the CA, presenting `cert` when given.
    fn client(&self, cert: Option<&str>) -> reqwest::Client {
        let options = TlsOptions {
            ca_cert: Some(self.pem("ca")),
            client_cert: cert.map(|c| self.pem(c)),
            client_key: cert.map(|c| self.key(c)),
            server_name: None,
        };
        let config = options.client_config(true).expect("client TLS settings");
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building the https client")
    }

    /// The flags of a server with the CA's server certificate (and client certificates
    /// required with `mutual`).
    fn server_flags(&self, mutual: bool) -> Vec<String> {
        let mut flags = vec![
            "--tls-cert".to_string(),
            self.pem("server").display().to_string(),
            "--tls-key".into(),
            self.key("server").display().to_string(),
        ];
        if mutual {
            flags.push("--tls-client-ca".into());
            flags.push(self.pem("ca").display().to_string());
        }
        flags
    }
}

/// A daemon started on `127.0.0.1:0`, its port read from its log; killed when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Proc {
    async fn start(
        name: &'static str,
        args: Vec<String>,
        env: &[(&str, String)],
        log: PathBuf,
    ) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin(name));
        for var in CLIENT_ENV {
            cmd.env_remove(var);
        }
        let child = cmd
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // Every refused handshake, not one line per 5 s.
            .env("RUST_LOG", "info,cairn_http=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut p = Proc {
            name,
            child,
            log,
            port: 0,
        };
        let marker = "addr=127.0.0.1:";
        p.port = wait_for(
            &format!("{name} to log its address"),
            Duration::from_secs(30),
            || p.log_text(),
            async || {
                let text = p.log_text();
                let at = text.find(marker)?;
                let rest = &text[at + marker.len()..];
                let end = rest.find(|c: char| !c.is_ascii_digit())?;
                rest[..end].parse::<u16>().ok()
            },
        )
        .await;
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn https(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Waits until `GET {base}{path}` answers 200 through `client`.
    async fn ready(&self, client: &reqwest::Client, base: &str, path: &str) {
        let url = format!("{base}{path}");
        wait_for(
            &format!("{} to answer {url}", self.name),
            Duration::from_secs(30),
            || self.log_text(),
            async || {
                let r = client.get(&url).send().await.ok()?;
                (r.status() == 200).then_some(())
            },
        )
        .await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // It may have exited already; the wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `catalogd serve` in memory with `flags`, ready through `client`.
async fn catalogd(pki: &Pki, flags: Vec<String>, client: &reqwest::Client) -> Proc {
    let mut args: Vec<String> = ["serve", "--http-addr", "127.0.0.1:0", "--in-memory"]
        .map(String::from)
        .to_vec();
    args.extend(["--node".into(), "tls-test".into()]);
    args.extend(flags);
    let p = Proc::start(
        "catalogd",
        args,
        &[],
        pki.dir
            .path()
            .join(format!("catalogd-{}.log", rand::random::<u32>())),
    )
    .await;
    p.ready(client, &p.https(), "/v1/status/leader").await;
    p
}

/// Runs `bin(name) args...` with only `env` among the client variables.
fn cli(name: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(bin(name));
    for var in CLIENT_ENV {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a plain-HTTP request to `port` gets back before the server closes the connection (or
/// 30 s pass).
async fn plain_http_answer(port: u16, path: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting");
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    // The server may close before taking it all.
    let _ = s.write_all(req.as_bytes()).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut got)).await;
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogd_serves_https_and_nothing_in_clear() {
    let pki = Pki::new();
    let c = catalogd(&pki, pki.server_flags(false), &pki.client(None)).await;
    let addr = c.https();

    // Consul's variables: an https:// address and the CA.
    let mut env = pki.client_env(None);
    env.push(("CONSUL_HTTP_ADDR", addr.clone()));
    let put = cli("catalogd", &["kv", "put", "tls/greeting", "hello"], &env);
    assert!(put.status.success(), "kv put: {}", text(&put.stderr));
    let get = cli("catalogd", &["kv", "get", "tls/greeting"], &env);
    assert!(get.status.success(), "kv get: {}", text(&get.stderr));
    assert_eq!(text(&get.stdout).trim(), "hello");

    // A bare address with CONSUL_HTTP_SSL=true is https; the flags do what the variables do.
    let bare = vec![
        ("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", c.port)),
        ("CONSUL_HTTP_SSL", "true".to_string()),
    ];
    let ca = pki.pem("ca").display().to_string();
    let get = cli(
        "catalogd",
        &["--ca-cert", &ca, "kv", "get", "tls/greeting"],
        &bare,
    );
    assert!(
        get.status.success(),
        "CONSUL_HTTP_SSL: {}",
        text(&get.stderr)
    );
    assert_eq!(text(&get.stdout).trim(), "hello");

    // The certificate names localhost and 127.0.0.1: CONSUL_TLS_SERVER_NAME chooses which name
    // is checked, and a name it does not carry is refused.
    let mut named = env.clone();
    named.push(("CONSUL_TLS_SERVER_NAME", "localhost".into()));
    let get = cli("catalogd", &["kv", "get", "tls/greeting"], &named);
    assert!(get.status.success(), "server name: {}", text(&get.stderr));
    let mut misnamed = env.clone();
    misnamed.push(("CONSUL_TLS_SERVER_NAME", "catalogd.elsewhere.test".into()));
    let get = cli("catalogd", &["kv", "get", "tls/greeting"], &misnamed);
    assert!(!get.status.success(), "a wrong server name was accepted");
    assert!(
        text(&get.stderr).contains("certificate not valid for name"),
        "{}",
        text(&get.stderr)
    );

    // Without the CA the server's certificate is not trusted, and the error says so.
    let untrusted = vec![("CONSUL_HTTP_ADDR", addr.clone())];
    let get = cli("catalogd", &["kv", "get", "tls/greeting"], &untrusted);
    assert!(
        !get.status.success(),
        "an untrusted certificate was accepted"
    );
    let err = text(&get.stderr);
    assert!(
        err.contains("UnknownIssuer") || err.contains("no CA certificate found"),
        "the error names the certificate problem: {err}"
    );
    assert!(!text(&get.stdout).contains("hello"));

    // A bad CA file is named.
    let missing = vec![
        ("CONSUL_HTTP_ADDR", addr.clone()),
        ("CONSUL_CACERT", "/nonexistent/ca.pem".to_string()),
    ];
    let get = cli("catalogd", &["kv", "get", "tls/greeting"], &missing);
    assert!(!get.status.success());
    assert!(
        text(&get.stderr).contains("/nonexistent/ca.pem"),
        "{}",
        text(&get.stderr)
    );

    // Plain HTTP on the TLS port: no HTTP answer, nothing of the data, connection closed.
    let answer = plain_http_answer(c.port, "/v1/kv/tls/greeting?raw").await;
    assert!(
        !text(&answer).contains("HTTP/1.1") && !text(&answer).contains("hello"),
        "served in clear: {}",
        text(&answer)
    );
    let plain = cli(
        "catalogd",
        &["kv", "get", "tls/greeting"],
        &[("CONSUL_HTTP_ADDR", format!("http://127.0.0.1:{}", c.port))],
    );
    assert!(!plain.status.success(), "plain http was answered");
    assert!(
        c.log_text().contains("TLS handshake refused"),
        "{}",
        c.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogd_with_a_client_ca_admits_only_its_certificates() {
    let pki = Pki::new();
    let c = catalogd(&pki, pki.server_flags(true), &pki.client(Some("client"))).await;
    let addr = c.https();

    let mut signed = pki.client_env(Some("client"));
    signed.push(("CONSUL_HTTP_ADDR", addr.clone()));
    let put = cli("catalogd", &["kv", "put", "mtls/k", "v1"], &signed);
    assert!(put.status.success(), "kv put: {}", text(&put.stderr));
    let get = cli("catalogd", &["kv", "get", "mtls/k"], &signed);
    assert!(get.status.success(), "kv get: {}", text(&get.stderr));
    assert_eq!(text(&get.stdout).trim(), "v1");

    // No certificate, or one another CA signed: refused, and nothing is read or written.
    for (what, cert) in [("no certificate", None), ("a rogue CA's", Some("rogue"))] {
        let mut env = pki.client_env(cert);
        env.push(("CONSUL_HTTP_ADDR", addr.clone()));
        let get = cli("catalogd", &["kv", "get", "mtls/k"], &env);
        assert!(!get.status.success(), "{what}: admitted");
        assert!(!text(&get.stdout).contains("v1"), "{what}: read the value");
        let put = cli("catalogd", &["kv", "put", "mtls/k", "forged"], &env);
        assert!(!put.status.success(), "{what}: wrote");
        let r = pki
            .client(cert)
            .get(format!("{addr}/v1/kv/mtls/k?raw"))
            .send()
            .await;
        assert!(r.is_err(), "{what}: answered {:?}", r.map(|r| r.status()));
    }
    let log = c.log_text();
    assert!(log.contains("TLS handshake refused"), "{log}");
    assert!(
        log.contains("UnknownIssuer"),
        "the rogue CA is named: {log}"
    );
    let get = cli("catalogd", &["kv", "get", "mtls/k"], &signed);
    assert_eq!(text(&get.stdout).trim(), "v1", "the value did not change");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_handshake_that_never_comes_frees_its_slot() {
    let pki = Pki::new();
    let mut flags = pki.server_flags(false);
    flags.extend(["--max-connections", "1", "--tls-handshake-timeout", "1s"].map(String::from));
    let c = catalogd(&pki, flags, &pki.client(None)).await;
    // A client that connects and says nothing takes the only slot until the handshake
    // timeout closes its connection. (Until the readiness probe's connection is seen closed,
    // a new one may still be refused at the cap: then it is tried again.)
    use tokio::io::AsyncReadExt as _;
    wait_for(
        "a silent connection to be closed by the handshake timeout",
        Duration::from_secs(60),
        || c.log_text(),
        async || {
            let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", c.port))
                .await
                .ok()?;
            let mut buf = [0u8; 64];
            let closed = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut buf))
                .await
                .expect("the server closed the silent connection");
            assert!(
                matches!(closed, Ok(0) | Err(_)),
                "the server sent something to a client that never spoke: {closed:?}"
            );
            c.log_text()
                .contains("no handshake within 1s")
                .then_some(())
        },
    )
    .await;
    // The slot is free again.
    let r = pki
        .client(None)
        .get(format!("{}/v1/status/leader", c.https()))
        .send()
        .await
        .expect("a request after the silent client left");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_certificate_files_stop_a_daemon_with_their_names() {
    let pki = Pki::new();
    let serve = |extra: &[String]| {
        let mut args: Vec<String> = ["serve", "--http-addr", "127.0.0.1:0", "--in-memory"]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli("catalogd", &args, &[])
    };
    let server = pki.pem("server").display().to_string();
    let server_key = pki.key("server").display().to_string();
    let client_key = pki.key("client").display().to_string();
    let out = serve(&[
        "--tls-cert".into(),
        "/nonexistent/server.pem".into(),
        "--tls-key".into(),
        server_key.clone(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--tls-cert /nonexistent/server.pem"), "{err}");
    // A key that is not the certificate's.
    let out = serve(&[
        "--tls-cert".into(),
        server.clone(),
        "--tls-key".into(),
        client_key.clone(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&client_key) && err.contains("does not go with"),
        "{err}"
    );
    // A certificate given as the key.
    let out = serve(&[
        "--tls-cert".into(),
        server.clone(),
        "--tls-key".into(),
        server.clone(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no PEM private key"), "{err}");
    // --tls-key without --tls-cert is a usage error.
    let out = serve(&["--tls-key".into(), server_key]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn offerd_and_taskrun_over_mutual_tls_refuse_a_rogue_agent() {
    let pki = Pki::new();
    let trusted = pki.client(Some("client"));
    let catalog = catalogd(&pki, pki.server_flags(true), &trusted).await;
    let dir = pki.dir.path();

    // offerd: HTTPS requiring the CA's certificates; its catalog client with Consul's variables.
    let mut offerd_args: Vec<String> = vec![
        "serve".into(),
        "--http-addr".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.join("offerd").display().to_string(),
        "--agent-timeout".into(),
        "3s".into(),
        "--catalog".into(),
        catalog.https(),
    ];
    offerd_args.extend(pki.server_flags(true));
    let offerd = Proc::start(
        "offerd",
        offerd_args,
        &pki.client_env(Some("client")),
        dir.join("offerd.log"),
    )
    .await;
    offerd.ready(&trusted, &offerd.https(), "/ping").await;

    // A taskrun agent with the CA's client certificate (for offerd and catalogd alike, from
    // Consul's variables), serving its own API over mutual TLS too.
    let agent_args = |node: &str, work: &Path, tls: bool| {
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--offerd".into(),
            offerd.https(),
            "--catalog".into(),
            catalog.https(),
            "--node".into(),
            node.into(),
            "--address".into(),
            "127.0.0.1".into(),
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            "--work-dir".into(),
            work.display().to_string(),
            "--resources".into(),
            "cpus:4;mem:2048;disk:1000;ports:[23100-23199]".into(),
            "--allow-root-tasks".into(),
        ];
        if tls {
            args.extend(pki.server_flags(true));
        }
        args
    };
    let work = dir.join("agent-0");
    let agent = Proc::start(
        "taskrun",
        agent_args("node-0", &work, true),
        &pki.client_env(Some("client")),
        dir.join("taskrun-0.log"),
    )
    .await;
    agent.ready(&trusted, &agent.https(), "/health").await;
    let logs = || {
        format!(
            "--- offerd ---\n{}\n--- taskrun ---\n{}",
            offerd.log_text(),
            agent.log_text()
        )
    };
    let get = |url: String| {
        let trusted = trusted.clone();
        async move {
            let r = trusted.get(&url).send().await.ok()?;
            if r.status() != 200 {
                return None;
            }
            r.json::<Value>().await.ok()
        }
    };
    wait_for(
        "node-0 to register",
        Duration::from_secs(60),
        logs,
        async || {
            let agents = get(format!("{}/v1/agents", offerd.https())).await?;
            (agents.as_array()?.len() == 1).then_some(())
        },
    )
    .await;

    // It runs a task, and registers it in the catalog over TLS.
    let app =
        json!({ "id": "/tls/sleeper", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 1 });
    let r = trusted
        .post(format!("{}/v2/apps", offerd.https()))
        .json(&app)
        .send()
        .await
        .expect("POST /v2/apps");
    assert_eq!(r.status(), 201);
    wait_for(
        "the task to run",
        Duration::from_secs(60),
        logs,
        async || {
            let tasks = get(format!("{}/v2/apps/tls/sleeper/tasks", offerd.https())).await?;
            (tasks["tasks"][0]["state"] == "TASK_RUNNING").then_some(())
        },
    )
    .await;
    wait_for(
        "the task's service in the catalog",
        Duration::from_secs(60),
        logs,
        async || {
            let svc = get(format!(
                "{}/v1/catalog/service/sleeper-tls",
                catalog.https()
            ))
            .await?;
            (svc.as_array()?.len() == 1).then_some(())
        },
    )
    .await;
    let listed = get(format!("{}/v1/tasks", agent.https())).await;
    assert_eq!(
        listed.as_ref().and_then(|t| t.as_array()).map(Vec::len),
        Some(1),
        "taskrun's API over TLS: {listed:?}"
    );

    // The offerd client commands: https with Consul's variables (offerd has none of its own).
    let mut env = pki.client_env(Some("client"));
    env.push(("CAIRN_OFFERD", offerd.https()));
    let apps = cli("offerd", &["apps"], &env);
    assert!(apps.status.success(), "offerd apps: {}", text(&apps.stderr));
    assert!(
        text(&apps.stdout).contains("/tls/sleeper"),
        "{}",
        text(&apps.stdout)
    );
    let no_cert = cli(
        "offerd",
        &["apps"],
        &pki.client_env(None)
            .into_iter()
            .chain([("CAIRN_OFFERD", offerd.https())])
            .collect::<Vec<_>>(),
    );
    assert!(
        !no_cert.status.success(),
        "offerd apps without a certificate was answered"
    );

    // A rogue agent: it trusts the servers, but its certificate is another CA's. It cannot
    // register, poll or report, and receives nothing.
    let rogue_work = dir.join("rogue");
    let rogue = Proc::start(
        "taskrun",
        agent_args("rogue", &rogue_work, false),
        &pki.client_env(Some("rogue")),
        dir.join("taskrun-rogue.log"),
    )
    .await;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("plain client");
    rogue
        .ready(
            &plain,
            &format!("http://127.0.0.1:{}", rogue.port),
            "/health",
        )
        .await;
    wait_for(
        "offerd to refuse the rogue agent's certificate",
        Duration::from_secs(60),
        || format!("{}\n--- rogue ---\n{}", logs(), rogue.log_text()),
        async || offerd.log_text().contains("UnknownIssuer").then_some(()),
    )
    .await;
    let rogue_client = pki.client(Some("rogue"));
    for (method, url) in [
        ("GET", format!("{}/v1/agents/node-0/tasks", offerd.https())),
        ("POST", format!("{}/v1/agents/register", offerd.https())),
        ("GET", format!("{}/v2/apps", offerd.https())),
    ] {
        let r = rogue_client
            .request(method.parse().expect("method"), &url)
            .json(&json!({"node": "rogue", "address": "127.0.0.1", "resources": "cpus:64"}))
            .send()
            .await;
        assert!(
            r.is_err(),
            "{method} {url} answered {:?}",
            r.map(|r| r.status())
        );
    }
    let agents = get(format!("{}/v1/agents", offerd.https()))
        .await
        .expect("GET /v1/agents");
    let nodes: Vec<&str> = agents
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["node"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(nodes, ["node-0"], "{agents}");
    let rogue_tasks = plain
        .get(format!("http://127.0.0.1:{}/v1/tasks", rogue.port))
        .send()
        .await
        .expect("the rogue's task list")
        .json::<Value>()
        .await
        .expect("JSON");
    assert_eq!(rogue_tasks, json!([]), "the rogue agent received a task");

    drop(rogue);
    drop(agent);
    cairn_tests::cluster::reap_tasks(&work);
    cairn_tests::cluster::reap_tasks(&rogue_work);
}

#[tokio::test(flavor = "multi_thread")]
async fn tmpl_and_dnsbridge_read_a_tls_catalogd() {
    let pki = Pki::new();
    let trusted = pki.client(Some("client"));
    let c = catalogd(&pki, pki.server_flags(true), &trusted).await;
    let r = trusted
        .put(format!("{}/v1/kv/tls/greeting", c.https()))
        .body("hello over tls")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 200);
    let template = pki.dir.path().join("t.tmpl");
    std::fs::write(&template, "v={{ key(path=\"tls/greeting\") }}\n").expect("template");
    let mut env = pki.client_env(Some("client"));
    env.push(("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", c.port)));
    env.push(("CONSUL_HTTP_SSL", "1".into()));
    let out = cli("tmpl", &["render", &template.display().to_string()], &env);
    assert!(out.status.success(), "tmpl render: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "v=hello over tls\n");

    // dnsbridge follows the whole catalog over the same connection settings.
    let register = json!({
        "Node": "web-1", "Address": "10.1.2.3",
        "Service": {"Service": "web", "Port": 80}
    });
    let r = trusted
        .put(format!("{}/v1/catalog/register", c.https()))
        .json(&register)
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 200);
    let dns_port = cairn_tests::free_port();
    let dns = Proc::start(
        "dnsbridge",
        vec![
            "serve".into(),
            "--dns-addr".into(),
            format!("127.0.0.1:{dns_port}"),
            "--catalog".into(),
            c.https(),
        ],
        &pki.client_env(Some("client")),
        pki.dir.path().join("dnsbridge.log"),
    )
    .await;
    let answer = wait_for(
        "dnsbridge to answer web.service.consul",
        Duration::from_secs(30),
        || dns.log_text(),
        async || {
            let out = Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &dns_port.to_string(),
                    "+short",
                    "+time=2",
                    "+tries=1",
                    "web.service.consul",
                ])
                .output()
                .ok()?;
            let a = text(&out.stdout);
            a.contains("10.1.2.3").then_some(a)
        },
    )
    .await;
    assert_eq!(answer.trim(), "10.1.2.3");
}

/// py-consul, unmodified, against a catalogd requiring client certificates: its own TLS
/// settings (`verify` = the CA file, `cert` = the client pair) and Consul's address variable.
#[tokio::test(flavor = "multi_thread")]
async fn py_consul_speaks_mutual_tls() {
    let pki = Pki::new();
    let c = catalogd(&pki, pki.server_flags(true), &pki.client(Some("client"))).await;
    let script = r#"
import sys
import consul
ca, cert, key = sys.argv[1:4]
c = consul.Consul(verify=ca, cert=(cert, key))
assert c.kv.put("py/tls", "over mutual tls") is True
_, entry = c.kv.get("py/tls")
assert entry["Value"] == b"over mutual tls", entry
try:
    consul.Consul(verify=ca).kv.get("py/tls")
except Exception as e:
    print("refused without a certificate:", type(e).__name__)
else:
    raise SystemExit("read without a client certificate")
print("py-consul over TLS: ok")
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &pki.pem("ca").display().to_string(),
            &pki.pem("client").display().to_string(),
            &pki.key("client").display().to_string(),
        ])
        .env_remove("CONSUL_HTTP_SSL")
        .env("CONSUL_HTTP_ADDR", c.https())
        .output()
        .expect("running python3");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !stderr.contains("No module named 'consul'"),
        "py-consul is not installed: run scripts/test (or pip install py-consul)"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", c.log_text());
    assert!(stdout.contains("refused without a certificate"), "{stdout}");
    assert!(stdout.contains("py-consul over TLS: ok"), "{stdout}");
}
