//! examples/ansible: the real `ansible-playbook` runs site.yml on this machine (`-c local`) into
//! temporary directories against a real cluster: binaries and units installed, one env file per
//! daemon rendered from the variables (and accepted by the binary its unit starts), the apps
//! directory deployed with `offerd apply` and running, and a second run changes nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use cairn_tests::cluster::{Cluster, ClusterOpts, sleep_app};
use cairn_tests::systemd::{Specifiers, Unit, parse_env_file};
use cairn_tests::{bin, workspace_root};

const BINARIES: &[&str] = &[
    "catalogd",
    "offerd",
    "taskrun",
    "dnsbridge",
    "tmpl",
    "healthcheck",
    "lbconf",
];
/// Units with the binary each starts.
const UNITS: &[(&str, &str)] = &[
    ("catalogd", "catalogd"),
    ("offerd", "offerd"),
    ("taskrun", "taskrun"),
    ("dnsbridge", "dnsbridge"),
    ("tmpl", "tmpl"),
    ("healthcheck-agent", "healthcheck"),
    ("lbconf", "lbconf"),
];
const APPLY_TASK: &str = "Apply the apps (offerd apply)";

fn ansible_available() -> bool {
    let found = Command::new("ansible-playbook")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "ansible-playbook is missing (scripts/test installs ansible-core from PyPI)"
        );
        eprintln!("NOTICE: ansible-playbook is not installed; skipping the playbook test");
    }
    found
}

/// One run of the playbook: its whole output, asserted to have succeeded with no failures.
fn run_playbook(vars: &Path, scratch: &Path) -> String {
    let out = Command::new("ansible-playbook")
        .args(["-i", "localhost,", "-c", "local"])
        .arg(workspace_root().join("examples/ansible/site.yml"))
        .arg("-e")
        .arg(format!("@{}", vars.display()))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_LOCAL_TEMP", scratch.join("local"))
        .env("ANSIBLE_REMOTE_TEMP", scratch.join("remote"))
        .env("LC_ALL", "C.UTF-8")
        .current_dir(scratch)
        .stdin(Stdio::null())
        .output()
        .expect("running ansible-playbook");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ansible-playbook failed:\n{text}");
    let recap = text
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.starts_with("localhost"))
        .unwrap_or_else(|| panic!("no recap for localhost:\n{text}"));
    assert!(recap.contains(" failed=0 "), "{recap}\n{text}");
    assert!(recap.contains(" unreachable=0 "), "{recap}\n{text}");
    text
}

/// The result line of a task in the default callback's output (`ok: [localhost]`, ...).
fn task_result<'a>(output: &'a str, task: &str) -> &'a str {
    output
        .lines()
        .skip_while(|l| !(l.starts_with("TASK [") && l.contains(task)))
        .skip(1)
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("task {task:?} did not run:\n{output}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn site_yml_installs_cairn_and_deploys_the_apps_idempotently() {
    if !ansible_available() {
        return;
    }
    let c = Cluster::start(ClusterOpts::default()).await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let prefix = root.join("prefix");
    let units = root.join("units");
    let config = root.join("etc");
    let apps = root.join("apps");
    std::fs::create_dir_all(apps.join("team")).expect("apps dir");
    std::fs::write(
        apps.join("one.json"),
        sleep_app("/ansible/one", 1).to_string(),
    )
    .expect("app file");
    std::fs::write(
        apps.join("team/two.json"),
        sleep_app("/ansible/two", 2).to_string(),
    )
    .expect("app file");
    let bin_dir = bin("offerd").parent().expect("target dir").to_path_buf();
    let vars = serde_json::json!({
        "cairn_prefix": prefix,
        "cairn_unit_dir": units,
        "cairn_config_dir": config,
        "cairn_bin_dir": bin_dir,
        "cairn_manage_services": false,
        "cairn_become": false,
        "cairn_offerd_url": c.offerd.url,
        "cairn_catalog_url": c.catalog.url,
        "cairn_apps_dir": apps,
        "cairn_node_name": "ansible-node-7",
        "cairn_node_address": "127.0.0.7",
        "cairn_resources": "cpus:2;mem:1024",
        "cairn_attributes": "rack:r7",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    });
    let vars_file = root.join("vars.json");
    std::fs::write(&vars_file, vars.to_string()).expect("vars file");

    let first = run_playbook(&vars_file, root);
    assert!(
        task_result(&first, APPLY_TASK).starts_with("changed: [localhost]"),
        "the first apply created the apps:\n{first}"
    );

    for name in BINARIES {
        let path = prefix.join("bin").join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{} is not executable", path.display());
    }
    let state = root.join("state");
    let spec = Specifiers {
        state: state.display().to_string(),
        host: "ansible-node-7".into(),
    };
    for (unit_name, binary) in UNITS {
        let unit_path = units.join(format!("{unit_name}.service"));
        let text = std::fs::read_to_string(&unit_path)
            .unwrap_or_else(|e| panic!("{}: {e}", unit_path.display()));
        let unit = Unit::parse(&text);
        let env_path = config.join(format!("{unit_name}.env"));
        assert_eq!(
            unit.get("Service", "EnvironmentFile"),
            Some(format!("-{}", env_path.display()).as_str())
        );
        // What the unit would run with its env file: the installed binary, flags it accepts.
        let mut env = unit.environment();
        let rendered = std::fs::read_to_string(&env_path)
            .unwrap_or_else(|e| panic!("{}: {e}", env_path.display()));
        env.extend(parse_env_file(&rendered));
        let argv = unit.exec_start(&env, &spec);
        assert_eq!(
            argv[0],
            prefix.join("bin").join(binary).display().to_string()
        );
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .expect("running the installed binary");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{unit_name}: {argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let joined = argv.join(" ");
        match *unit_name {
            "catalogd" => assert!(joined.contains("--node ansible-node-7"), "{joined}"),
            "healthcheck-agent" => assert!(joined.contains("--node ansible-node-7"), "{joined}"),
            "taskrun" => {
                for part in [
                    "--node ansible-node-7",
                    "--address 127.0.0.7",
                    &format!("--offerd {}", c.offerd.url),
                    &format!("--catalog {}", c.catalog.url),
                    "--resources cpus:2;mem:1024",
                    "--attributes rack:r7",
                ] {
                    assert!(joined.contains(part), "taskrun: {part} not in {joined}");
                }
            }
            _ => {}
        }
    }

    c.wait_running("/ansible/one", 1, 60).await;
    c.wait_running("/ansible/two", 2, 60).await;

    let second = run_playbook(&vars_file, root);
    assert!(
        task_result(&second, APPLY_TASK).starts_with("ok: [localhost]"),
        "the second apply changed something:\n{second}"
    );
    let recap = second
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.starts_with("localhost"))
        .unwrap_or_default();
    assert!(
        recap.contains(" changed=0 "),
        "second run: {recap}\n{second}"
    );
}

/// The secured, replicated layout from the playbook's variables: catalogd with ACLs as one
/// replica on etcd, clients given every control host, every server on TLS with client
/// certificates, the agent token and offerd's auth file; secrets only in the EnvironmentFiles
/// (0640), never on a command line; every binary accepts what it is given.
#[tokio::test(flavor = "multi_thread")]
async fn site_yml_renders_the_secured_layout() {
    if !ansible_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let (prefix, units, config) = (root.join("prefix"), root.join("units"), root.join("etc"));
    let bin_dir = bin("offerd").parent().expect("target dir").to_path_buf();
    const AGENT_TOKEN: &str = "agent-token-4f1c9d";
    const MANAGEMENT: &str = "management-token-8e2a7b";
    const ETCD: &str = "http://10.0.0.10:2379,http://10.0.0.11:2379,http://10.0.0.12:2379";
    const CATALOGS: &str = "https://10.0.0.10:8500,https://10.0.0.11:8500,https://10.0.0.12:8500";
    let vars = serde_json::json!({
        "cairn_prefix": prefix,
        "cairn_unit_dir": units,
        "cairn_config_dir": config,
        "cairn_bin_dir": bin_dir,
        "cairn_manage_services": false,
        "cairn_become": false,
        "cairn_catalog_url": CATALOGS,
        "cairn_etcd_endpoints": ETCD,
        "cairn_offerd_url": "https://10.0.0.10:5050",
        "cairn_node_name": "secure-node",
        "cairn_agent_token": AGENT_TOKEN,
        "cairn_acl_enabled": true,
        "cairn_acl_default_policy": "deny",
        "cairn_acl_initial_management_token": MANAGEMENT,
        "cairn_tls_cert": "/etc/cairn/tls/host.pem",
        "cairn_tls_key": "/etc/cairn/tls/host-key.pem",
        "cairn_tls_client_ca": "/etc/cairn/tls/ca.pem",
        "cairn_ca_cert": "/etc/cairn/tls/ca.pem",
        "cairn_client_cert": "/etc/cairn/tls/client.pem",
        "cairn_client_key": "/etc/cairn/tls/client-key.pem",
        "cairn_offerd_auth_file": "/etc/cairn/offerd-auth.toml",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    });
    let vars_file = root.join("vars.json");
    std::fs::write(&vars_file, vars.to_string()).expect("vars file");
    run_playbook(&vars_file, root);

    let spec = Specifiers {
        state: root.join("state").display().to_string(),
        host: "secure-node".into(),
    };
    for (unit_name, binary) in UNITS {
        let unit = Unit::parse(
            &std::fs::read_to_string(units.join(format!("{unit_name}.service"))).expect("unit"),
        );
        let env_path = config.join(format!("{unit_name}.env"));
        let mode = std::fs::metadata(&env_path)
            .expect("env file")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o007,
            0,
            "{} is readable by others",
            env_path.display()
        );
        let rendered = std::fs::read_to_string(&env_path).expect("env file");
        let file_env = parse_env_file(&rendered);
        let get = |k: &str| {
            file_env
                .iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v.as_str())
        };
        let mut env = unit.environment();
        env.extend(file_env.clone());
        let argv = unit.exec_start(&env, &spec);
        let joined = argv.join(" ");
        for secret in [AGENT_TOKEN, MANAGEMENT] {
            assert!(
                !joined.contains(secret),
                "{unit_name}: a secret on the command line: {joined}"
            );
        }
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .expect("running the installed binary");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{unit_name} ({binary}): {argv:?}"
        );
        let server_tls = "--tls-cert /etc/cairn/tls/host.pem --tls-key /etc/cairn/tls/host-key.pem --tls-client-ca /etc/cairn/tls/ca.pem";
        match *unit_name {
            "catalogd" => {
                assert!(
                    joined.contains("--acl-enabled --acl-default-policy deny"),
                    "{joined}"
                );
                assert!(joined.contains(server_tls), "{joined}");
                assert!(joined.contains(&format!("--etcd {ETCD}")), "{joined}");
                assert_eq!(
                    get("CATALOGD_ACL_INITIAL_MANAGEMENT_TOKEN"),
                    Some(MANAGEMENT)
                );
            }
            "offerd" | "taskrun" => {
                assert!(joined.contains(server_tls), "{joined}");
                assert_eq!(get("CAIRN_AGENT_TOKEN"), Some(AGENT_TOKEN), "{unit_name}");
                assert_eq!(get("CAIRN_CATALOG"), Some(CATALOGS), "{unit_name}");
                if *unit_name == "offerd" {
                    assert!(
                        joined.contains("--auth-file /etc/cairn/offerd-auth.toml"),
                        "{joined}"
                    );
                }
            }
            _ => {}
        }
        if *unit_name != "catalogd" {
            assert_eq!(
                get("CONSUL_CACERT"),
                Some("/etc/cairn/tls/ca.pem"),
                "{unit_name}"
            );
            assert_eq!(
                get("CONSUL_CLIENT_CERT"),
                Some("/etc/cairn/tls/client.pem"),
                "{unit_name}"
            );
            assert_eq!(
                get("CONSUL_CLIENT_KEY"),
                Some("/etc/cairn/tls/client-key.pem"),
                "{unit_name}"
            );
        }
    }
}
