//! examples/systemd: every daemon's unit carries the operational settings operators rely on
//! (restart policy, clean SIGTERM stop, state directory, tasks that outlive taskrun), passes
//! `systemd-analyze verify` against the built binaries, and starts its binary with flags it
//! accepts, with the unit's defaults and with the overrides its comments document. The example
//! tmpl config renders against a real catalogd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn_tests::systemd::{Specifiers, Unit};
use cairn_tests::{Catalogd, bin, workspace_root};

/// Who a unit runs as.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Runs {
    /// `DynamicUser=yes`.
    Dynamic,
    /// root, on purpose (documented in the unit).
    Root,
}

struct Spec {
    unit: &'static str,
    bin: &'static str,
    /// `StateDirectory=cairn/<bin>` and `%S/cairn/<bin>` on the command line.
    stateful: bool,
    runs: Runs,
}

const UNITS: &[Spec] = &[
    Spec {
        unit: "catalogd",
        bin: "catalogd",
        stateful: true,
        runs: Runs::Dynamic,
    },
    Spec {
        unit: "offerd",
        bin: "offerd",
        stateful: true,
        runs: Runs::Dynamic,
    },
    Spec {
        unit: "taskrun",
        bin: "taskrun",
        stateful: true,
        runs: Runs::Root,
    },
    Spec {
        unit: "dnsbridge",
        bin: "dnsbridge",
        stateful: false,
        runs: Runs::Dynamic,
    },
    Spec {
        unit: "lbconf",
        bin: "lbconf",
        stateful: false,
        runs: Runs::Root,
    },
    Spec {
        unit: "tmpl",
        bin: "tmpl",
        stateful: false,
        runs: Runs::Root,
    },
    Spec {
        unit: "healthcheck-agent",
        bin: "healthcheck",
        stateful: false,
        runs: Runs::Dynamic,
    },
];

fn units_dir() -> PathBuf {
    workspace_root().join("examples/systemd")
}

fn unit_text(spec: &Spec) -> String {
    let path = units_dir().join(format!("{}.service", spec.unit));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn specifiers(state: &Path) -> Specifiers {
    Specifiers {
        state: state.display().to_string(),
        host: "test-host".into(),
    }
}

/// The overrides a unit's header comment documents (`#   KEY=value` for a KEY the unit sets).
fn documented_overrides(
    text: &str,
    defaults: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| defaults.contains_key(*k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn units_carry_the_operational_settings() {
    let found: Vec<String> = std::fs::read_dir(units_dir())
        .expect("examples/systemd")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".service"))
        .collect();
    assert_eq!(
        found.len(),
        UNITS.len(),
        "a test spec for every unit: {found:?}"
    );
    for spec in UNITS {
        let unit = Unit::parse(&unit_text(spec));
        let name = spec.unit;
        let get = |section: &str, key: &str| unit.get(section, key).unwrap_or_default().to_string();
        assert!(
            !get("Unit", "Description").is_empty(),
            "{name}: Description"
        );
        for key in ["After", "Wants"] {
            assert!(
                unit.all("Unit", key)
                    .iter()
                    .any(|v| v.split_whitespace().any(|u| u == "network-online.target")),
                "{name}: {key}=network-online.target"
            );
        }
        let expected = [
            ("Type", "exec".to_string()),
            ("EnvironmentFile", format!("-/etc/cairn/{name}.env")),
            ("Restart", "on-failure".into()),
            ("RestartSec", "2".into()),
            ("KillSignal", "SIGTERM".into()),
            ("TimeoutStopSec", "30".into()),
        ];
        for (key, value) in expected {
            assert_eq!(get("Service", key), value, "{name}: {key}");
        }
        assert_eq!(get("Install", "WantedBy"), "multi-user.target", "{name}");
        let exec = get("Service", "ExecStart");
        assert!(
            exec.starts_with(&format!("/usr/local/bin/{} ", spec.bin)),
            "{name}: {exec}"
        );
        if spec.stateful {
            assert_eq!(
                get("Service", "StateDirectory"),
                format!("cairn/{}", spec.bin)
            );
            assert!(
                exec.contains(&format!(" %S/cairn/{} ", spec.bin)),
                "{name}: {exec}"
            );
        } else {
            assert!(unit.get("Service", "StateDirectory").is_none(), "{name}");
        }
        match spec.runs {
            Runs::Dynamic => assert_eq!(get("Service", "DynamicUser"), "yes", "{name}"),
            Runs::Root => {
                assert!(unit.get("Service", "DynamicUser").is_none(), "{name}");
                assert!(unit.get("Service", "User").is_none(), "{name}");
            }
        }
        // Tasks survive a restart of their agent; nothing else keeps processes behind.
        let kill_mode = unit.get("Service", "KillMode");
        if name == "taskrun" {
            assert_eq!(kill_mode, Some("process"));
        } else {
            assert_eq!(kill_mode, None, "{name}");
        }
        // Works without an env file: every variable has a default, and a `${VAR}` (one word)
        // a non-empty one.
        let defaults = unit.environment();
        for (var, braced) in unit.exec_start_variables() {
            let value = defaults
                .get(&var)
                .unwrap_or_else(|| panic!("{name}: no Environment= default for {var}"));
            assert!(
                !braced || !value.is_empty(),
                "{name}: ${{{var}}} defaults to nothing"
            );
        }
    }
}

#[test]
fn exec_start_flags_are_accepted_by_the_binaries() {
    let state = tempfile::tempdir().expect("temp dir");
    for spec in UNITS {
        let text = unit_text(spec);
        let unit = Unit::parse(&text);
        let defaults = unit.environment();
        let overrides = documented_overrides(&text, &defaults);
        assert!(
            !overrides.is_empty(),
            "{}: no documented override",
            spec.unit
        );
        let mut with_overrides = defaults.clone();
        with_overrides.extend(overrides);
        for env in [&defaults, &with_overrides] {
            let argv = unit.exec_start(env, &specifiers(state.path()));
            assert_eq!(argv[0], format!("/usr/local/bin/{}", spec.bin));
            // clap checks every flag and value it meets before it gets to --help.
            let out = Command::new(bin(spec.bin))
                .args(&argv[1..])
                .arg("--help")
                .stdin(Stdio::null())
                .output()
                .expect("running the binary");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {argv:?} is refused: {}{}",
                spec.unit,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "systemd-analyze is missing (scripts/test installs Debian's systemd package)"
        );
        eprintln!("NOTICE: systemd-analyze is not installed; skipping `systemd-analyze verify`");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    // Documentation=man:<bin>(1): verify runs `man` on it; the pages are the binaries' own.
    let man_dir = tmp.path().join("man");
    std::fs::create_dir_all(man_dir.join("man1")).expect("man dir");
    let mut paths = Vec::new();
    for spec in UNITS {
        let page = Command::new(bin(spec.bin))
            .arg("man")
            .output()
            .expect("running <bin> man");
        assert!(page.status.success(), "{} man", spec.bin);
        std::fs::write(man_dir.join(format!("man1/{}.1", spec.bin)), page.stdout)
            .expect("writing the man page");
        // The units name /usr/local/bin; verify checks the binaries exist and are executable.
        let text = unit_text(spec).replace(
            &format!("/usr/local/bin/{} ", spec.bin),
            &format!("{} ", bin(spec.bin).display()),
        );
        let path = tmp.path().join(format!("{}.service", spec.unit));
        std::fs::write(&path, text).expect("writing the unit");
        paths.push(path);
    }
    let man_available = Command::new("sh")
        .args(["-c", "command -v man"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(if man_available {
            "--man=yes"
        } else {
            "--man=no"
        })
        .args(&paths)
        .env("MANPATH", &man_dir)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .env("SYSTEMD_LOG_COLOR", "0")
        .stdin(Stdio::null())
        .output()
        .expect("running systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown keys and unparsable values are only warnings: none may name our units.
    let about_ours: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            UNITS
                .iter()
                .any(|s| l.contains(&format!("{}.service", s.unit)))
        })
        .collect();
    assert!(
        about_ours.is_empty(),
        "systemd-analyze verify: {about_ours:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_tmpl_config_renders_the_catalog() {
    let catalog = Catalogd::start().await;
    let reg = serde_json::json!({
        "Node": "web-01", "Address": "10.1.2.3",
        "Service": { "Service": "web", "ID": "web-1", "Port": 8080 }
    });
    assert_eq!(
        catalog
            .http
            .put_json("/v1/catalog/register", &reg)
            .await
            .status,
        200
    );
    let config = units_dir().join("tmpl.toml");
    let out = tokio::process::Command::new(bin("tmpl"))
        .args([
            "watch",
            "--once",
            "--dry",
            "--catalog",
            &catalog.url,
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("running tmpl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("upstream web {"), "{stdout}");
    assert!(stdout.contains("    server 10.1.2.3:8080;"), "{stdout}");
}
