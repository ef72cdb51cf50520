//! examples/ansible: the real `ansible-playbook` runs site.yml on this machine (`-c local`) into
//! temporary directories against a real cluster: binaries and units installed, one env file per
//! daemon rendered from the variables (and accepted by the binary its unit starts), the apps
//! directory deployed with `offerd apply` and running, and a second run changes nothing. The
//! high-availability inventory (inventory.ha.example.yml) renders etcd's configuration and the
//! replicas' flags on every control host, and what it renders runs: a real etcd member started
//! from its /etc/default/etcd, catalogd and offerd from their units electing themselves on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn_tests::cluster::{Cluster, ClusterOpts, sleep_app};
use cairn_tests::daemon::Daemon;
use cairn_tests::systemd::{Specifiers, Unit, parse_env_file};
use cairn_tests::{bin, wait_for, workspace_root};

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

/// One run of the playbook on this machine: its whole output, asserted to have succeeded with no
/// failures.
fn run_playbook(vars: &Path, scratch: &Path) -> String {
    run_playbook_on("localhost,", &["localhost"], vars, scratch)
}

/// One run of the playbook on the hosts of `inventory`, every one of them this machine (`-c
/// local`, the paths in `vars` apart per host): its whole output, asserted to have succeeded on
/// each of `hosts` with no failures.
fn run_playbook_on(inventory: &str, hosts: &[&str], vars: &Path, scratch: &Path) -> String {
    let out = Command::new("ansible-playbook")
        .args(["-i", inventory, "-c", "local"])
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
    for host in hosts {
        let recap = text
            .lines()
            .skip_while(|l| !l.starts_with("PLAY RECAP"))
            .find(|l| l.split_whitespace().next() == Some(host))
            .unwrap_or_else(|| panic!("no recap for {host}:\n{text}"));
        assert!(recap.contains(" failed=0 "), "{recap}\n{text}");
        assert!(recap.contains(" unreachable=0 "), "{recap}\n{text}");
    }
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
        // One machine, no cairn_etcd_endpoints: the embedded stores, exactly as before HA.
        assert!(
            !argv
                .iter()
                .any(|a| a.starts_with("--etcd") || a == "--advertise-addr"),
            "{unit_name}: {joined}"
        );
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
    let bin_dir = wrapper_bin_dir(root);
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

/// The hosts of inventory.ha.example.yml, the control hosts with their addresses, and the
/// addresses it gives every client.
const HA_HOSTS: &[&str] = &["ctl-01", "ctl-02", "ctl-03", "web-01", "web-02"];
const HA_CONTROL: &[(&str, &str)] = &[
    ("ctl-01", "10.0.0.10"),
    ("ctl-02", "10.0.0.11"),
    ("ctl-03", "10.0.0.12"),
];
const HA_ETCD: &str = "http://10.0.0.10:2379,http://10.0.0.11:2379,http://10.0.0.12:2379";
const HA_CATALOGS: &str = "http://10.0.0.10:8500,http://10.0.0.11:8500,http://10.0.0.12:8500";
const HA_OFFERDS: &str = "http://10.0.0.10:5050,http://10.0.0.11:5050,http://10.0.0.12:5050";

/// A `cairn_bin_dir` of scripts that exec the built binaries. The HA layout installs onto five
/// hosts at once, and five copies of every debug binary (hundreds of MB each) would cost more
/// than the rest of the test; what a unit starts is still the real binary, with the flags the
/// playbook rendered. The secured layout uses it too: only the first test installs the binaries
/// themselves, so the suite copies them once.
fn wrapper_bin_dir(root: &Path) -> PathBuf {
    let dir = root.join("built");
    std::fs::create_dir_all(&dir).expect("wrapper dir");
    for name in BINARIES {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\nexec '{}' \"$@\"\n", bin(name).display()),
        )
        .expect("wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

/// Variables installing every host of an inventory into `root/<host>/` on this machine, etcd
/// included (its package already installed, no systemd to start it).
fn per_host_vars(root: &Path, bin_dir: &Path) -> serde_json::Value {
    let host = |p: &str| format!("{}/{{{{ inventory_hostname }}}}/{p}", root.display());
    serde_json::json!({
        "cairn_prefix": host("prefix"),
        "cairn_unit_dir": host("units"),
        "cairn_config_dir": host("etc"),
        "cairn_bin_dir": bin_dir,
        "cairn_manage_services": false,
        "cairn_become": false,
        "etcd_install_package": false,
        "etcd_user": "",
        "etcd_config_file": host("etcd/default-etcd"),
        "etcd_data_dir": host("etcd/data"),
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    })
}

/// A unit as the playbook installed it on the host whose root is `dir`: the unit, its
/// EnvironmentFile's variables, and the argv it would start.
fn rendered(dir: &Path, unit_name: &str) -> (Unit, BTreeMap<String, String>, Vec<String>) {
    let unit_path = dir.join("units").join(format!("{unit_name}.service"));
    let unit = Unit::parse(
        &std::fs::read_to_string(&unit_path)
            .unwrap_or_else(|e| panic!("{}: {e}", unit_path.display())),
    );
    let env_path = dir.join("etc").join(format!("{unit_name}.env"));
    let file_env = parse_env_file(
        &std::fs::read_to_string(&env_path)
            .unwrap_or_else(|e| panic!("{}: {e}", env_path.display())),
    );
    let mut env = unit.environment();
    env.extend(file_env.clone());
    let spec = Specifiers {
        state: dir.join("state").display().to_string(),
        host: "ha-host".into(),
    };
    let argv = unit.exec_start(&env, &spec);
    (unit, file_env, argv)
}

/// The value after `name` in `argv`.
fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    let at = argv.iter().position(|a| a == name)?;
    argv.get(at + 1).map(String::as_str)
}

fn accepts(argv: &[String]) {
    // clap checks every flag and value it meets before it gets to --help.
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("running the installed binary");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// inventory.ha.example.yml itself, each of its five hosts installed into its own directory:
/// on each control host an etcd member configured for the three-member cluster, catalogd and
/// offerd as replicas on it advertising this host's address, ordered after etcd but not bound
/// to it; every client on every host given all three replicas; on the nodes (no
/// cairn_etcd_endpoints) nothing of etcd.
#[test]
fn inventory_ha_example_renders_etcd_and_the_replicas() {
    if !ansible_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let bin_dir = wrapper_bin_dir(root);
    let vars_file = root.join("vars.json");
    std::fs::write(&vars_file, per_host_vars(root, &bin_dir).to_string()).expect("vars file");
    let inventory = workspace_root().join("examples/ansible/inventory.ha.example.yml");
    run_playbook_on(&inventory.display().to_string(), HA_HOSTS, &vars_file, root);

    let initial_cluster = HA_CONTROL
        .iter()
        .map(|(host, addr)| format!("{host}=http://{addr}:2380"))
        .collect::<Vec<_>>()
        .join(",");
    let mut tokens = BTreeSet::new();
    let mut client_urls = Vec::new();
    for host in HA_HOSTS {
        let dir = root.join(host);
        let control = HA_CONTROL
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, addr)| *addr);
        for (unit_name, _) in UNITS {
            let (unit, env, argv) = rendered(&dir, unit_name);
            let joined = argv.join(" ");
            let get = |k: &str| env.get(k).map(String::as_str);
            if *unit_name != "catalogd" {
                assert_eq!(
                    get("CAIRN_CATALOG"),
                    Some(HA_CATALOGS),
                    "{host} {unit_name}"
                );
            }
            if *unit_name == "taskrun" {
                assert_eq!(get("CAIRN_OFFERD"), Some(HA_OFFERDS), "{host} {unit_name}");
            }
            let port = match *unit_name {
                "catalogd" => 8500,
                "offerd" => 5050,
                _ => continue,
            };
            assert!(
                unit.all("Unit", "After")
                    .iter()
                    .any(|v| v.split_whitespace().any(|u| u == "etcd.service")),
                "{host} {unit_name}: not ordered after etcd.service"
            );
            // A replica keeps serving when the local etcd member dies: no unit dependency.
            for key in ["Requires", "Requisite", "BindsTo", "PartOf"] {
                assert!(
                    !unit.all("Unit", key).iter().any(|v| v.contains("etcd")),
                    "{host} {unit_name}: {key}= on etcd"
                );
            }
            assert!(!env.contains_key("CAIRN_ETCD"), "{host} {unit_name}");
            match control {
                Some(addr) => {
                    assert_eq!(flag(&argv, "--etcd"), Some(HA_ETCD), "{host}: {joined}");
                    assert_eq!(
                        flag(&argv, "--advertise-addr"),
                        Some(format!("{addr}:{port}").as_str()),
                        "{host}: {joined}"
                    );
                    accepts(&argv);
                }
                None => assert!(
                    !argv
                        .iter()
                        .any(|a| a.starts_with("--etcd") || a == "--advertise-addr"),
                    "{host}: {joined}"
                ),
            }
        }

        let etcd_dir = dir.join("etcd");
        let Some(addr) = control else {
            assert!(!etcd_dir.exists(), "{host} is no etcd member");
            continue;
        };
        let config = parse_env_file(
            &std::fs::read_to_string(etcd_dir.join("default-etcd")).expect("etcd config"),
        );
        let get = |k: &str| config.get(k).map(String::as_str).unwrap_or_default();
        assert_eq!(get("ETCD_NAME"), *host);
        assert_eq!(
            get("ETCD_DATA_DIR"),
            etcd_dir.join("data").display().to_string()
        );
        assert_eq!(get("ETCD_INITIAL_CLUSTER"), initial_cluster, "{host}");
        assert_eq!(get("ETCD_INITIAL_CLUSTER_STATE"), "new", "{host}");
        let peer = format!("http://{addr}:2380");
        assert_eq!(get("ETCD_LISTEN_PEER_URLS"), peer, "{host}");
        assert_eq!(get("ETCD_INITIAL_ADVERTISE_PEER_URLS"), peer, "{host}");
        let client = format!("http://{addr}:2379");
        assert_eq!(get("ETCD_ADVERTISE_CLIENT_URLS"), client, "{host}");
        assert_eq!(
            get("ETCD_LISTEN_CLIENT_URLS"),
            format!("{client},http://127.0.0.1:2379"),
            "{host}"
        );
        // What cairn's replicas need of etcd (README, "High availability").
        assert_eq!(get("ETCD_MAX_TXN_OPS"), "10000", "{host}");
        assert_eq!(get("ETCD_MAX_REQUEST_BYTES"), "10485760", "{host}");
        assert!(
            !config
                .keys()
                .any(|k| k.contains("CERT") || k.contains("CA_FILE")),
            "{host}: TLS without certificates: {config:?}"
        );
        tokens.insert(get("ETCD_INITIAL_CLUSTER_TOKEN").to_string());
        client_urls.push(client);
    }
    assert_eq!(tokens.len(), 1, "one cluster token: {tokens:?}");
    assert!(!tokens.iter().any(String::is_empty));
    // The members serve exactly the endpoints the replicas were given.
    assert_eq!(client_urls.join(","), HA_ETCD);
}

/// `N` distinct free loopback ports (bound together, then released).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a loopback port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("bound").port())
}

/// A process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcdctl(endpoint: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout", "2s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The HA layout on one control host, run: the real etcd started the way Debian's etcd.service
/// starts it (`etcd` with the rendered /etc/default/etcd as its environment) forms a healthy
/// one-member cluster under the rendered name, and catalogd and offerd started from their
/// rendered units become the leaders on it under the advertised addresses the playbook gave them.
#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_ha_layout_runs_on_a_real_etcd() {
    if !ansible_available()
        || !cairn_etcd::testing::etcd_available("the_rendered_ha_layout_runs_on_a_real_etcd")
    {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let bin_dir = wrapper_bin_dir(root);
    let [etcd_client, etcd_peer, catalogd_port, offerd_port] = free_ports();
    let inventory = root.join("inventory.json");
    std::fs::write(
        &inventory,
        serde_json::json!({"all": {"children": {
            "control": {"hosts": {"solo": {}}},
            "etcd": {"children": {"control": {}}},
        }}})
        .to_string(),
    )
    .expect("inventory");
    let mut vars = per_host_vars(root, &bin_dir);
    // The host's address is another loopback address than the one the daemons listen on: the
    // leaders' names then show that --advertise-addr reached them (their default is the bound
    // address), and etcd listens on both (the host's, and loopback for etcdctl).
    let etcd_url = format!("http://127.0.0.2:{etcd_client}");
    vars.as_object_mut().expect("an object").extend(
        serde_json::json!({
            "cairn_node_address": "127.0.0.2",
            "cairn_services": ["catalogd", "offerd"],
            "cairn_catalogd_http_addr": format!("127.0.0.1:{catalogd_port}"),
            "cairn_offerd_http_addr": format!("127.0.0.1:{offerd_port}"),
            "cairn_catalog_url": format!("http://127.0.0.1:{catalogd_port}"),
            "cairn_offerd_url": format!("http://127.0.0.1:{offerd_port}"),
            "cairn_etcd_endpoints": etcd_url,
            "etcd_client_port": etcd_client,
            "etcd_peer_port": etcd_peer,
        })
        .as_object()
        .expect("an object")
        .clone(),
    );
    let vars_file = root.join("vars.json");
    std::fs::write(&vars_file, vars.to_string()).expect("vars file");
    run_playbook_on(
        &inventory.display().to_string(),
        &["solo"],
        &vars_file,
        root,
    );

    let dir = root.join("solo");
    let config = parse_env_file(
        &std::fs::read_to_string(dir.join("etcd/default-etcd")).expect("etcd config"),
    );
    assert_eq!(
        config.get("ETCD_ADVERTISE_CLIENT_URLS"),
        Some(&etcd_url),
        "{config:?}"
    );
    let etcd_log = root.join("etcd.log");
    let log = std::fs::File::create(&etcd_log).expect("etcd log");
    let mut etcd = Command::new("etcd");
    // Only the rendered file configures it, as in the unit (whose ExecStart adds no flags).
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("ETCD")) {
        etcd.env_remove(key);
    }
    let _etcd = Killed(
        etcd.envs(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("starting etcd"),
    );
    let etcd_log_text = || std::fs::read_to_string(&etcd_log).unwrap_or_default();
    wait_for(
        "etcdctl endpoint health",
        Duration::from_secs(30),
        etcd_log_text,
        async || etcdctl(&etcd_url, &["endpoint", "health"]),
    )
    .await;
    let members = etcdctl(&etcd_url, &["member", "list"]).expect("etcdctl member list");
    assert!(
        members.contains(&format!(", solo, http://127.0.0.2:{etcd_peer}, {etcd_url}")),
        "{members}"
    );

    let (_, _, argv) = rendered(&dir, "catalogd");
    let catalogd = Daemon::start_program(
        "catalogd",
        PathBuf::from(&argv[0]),
        argv[1..].to_vec(),
        format!("http://127.0.0.1:{catalogd_port}"),
        "/v1/status/leader",
        root.join("catalogd.log"),
    )
    .await;
    let advertised = format!("127.0.0.2:{catalogd_port}");
    wait_for(
        "catalogd to lead under its advertised address",
        Duration::from_secs(30),
        || catalogd.log_text(),
        async || {
            let r = catalogd.http.get("/v1/status/leader").await;
            (r.json::<String>() == advertised).then_some(())
        },
    )
    .await;

    let (_, _, argv) = rendered(&dir, "offerd");
    let offerd = Daemon::start_program(
        "offerd",
        PathBuf::from(&argv[0]),
        argv[1..].to_vec(),
        format!("http://127.0.0.1:{offerd_port}"),
        "/ping",
        root.join("offerd.log"),
    )
    .await;
    let advertised = format!("127.0.0.2:{offerd_port}");
    wait_for(
        "offerd to lead under its advertised address",
        Duration::from_secs(30),
        || offerd.log_text(),
        async || {
            let r = offerd.http.try_send("GET", "/v2/leader", None).await.ok()?;
            (r.status == 200 && r.value()["leader"] == advertised.as_str()).then_some(())
        },
    )
    .await;
    // Both keep their state in the etcd the playbook configured, under their own prefixes.
    let keys =
        etcdctl(&etcd_url, &["get", "--prefix", "/cairn/", "--keys-only"]).expect("etcdctl get");
    for prefix in ["/cairn/catalogd/", "/cairn/offerd/"] {
        assert!(
            keys.lines().any(|k| k.starts_with(prefix)),
            "{prefix}: {keys}"
        );
    }
}
