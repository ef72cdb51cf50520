//! `completions <shell>` and `man` on every binary: the bash script parses and, sourced into a
//! real bash, completes the binary's subcommands; the zsh script is a `#compdef` file; the man
//! page is one roff page that `man` (or groff) renders with every subcommand in it; a shell
//! clap does not know is a usage error (Nagios UNKNOWN for healthcheck).

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use cairn_tests::bin;

/// Every binary with the subcommands its completions and man page must name.
const BINARIES: &[(&str, &[&str])] = &[
    (
        "catalogd",
        &[
            "serve",
            "kv",
            "services",
            "service",
            "nodes",
            "register",
            "deregister",
            "watch",
            "completions",
            "man",
        ],
    ),
    (
        "offerd",
        &[
            "serve",
            "apply",
            "apps",
            "tasks",
            "scale",
            "kill",
            "agents",
            "drain",
            "undrain",
            "completions",
            "man",
        ],
    ),
    ("taskrun", &["agent", "run", "completions", "man"]),
    ("dnsbridge", &["serve", "completions", "man"]),
    ("tmpl", &["render", "watch", "completions", "man"]),
    (
        "healthcheck",
        &[
            "http",
            "tcp",
            "dns",
            "exec",
            "file",
            "run",
            "agent",
            "completions",
            "man",
        ],
    ),
    ("lbconf", &["render", "watch", "completions", "man"]),
];

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("writing stdin");
    }
    drop(input);
    child.wait_with_output().expect("output")
}

/// `<bin> args...`, asserted to exit 0 with nothing on stderr; its stdout.
fn ok_stdout(name: &str, args: &[&str]) -> String {
    let out = run(Command::new(bin(name)).args(args), None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{name} {args:?} wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert!(!text.trim().is_empty(), "{name} {args:?} printed nothing");
    text
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the bash completion function offers after `<bin> ` (the first word).
fn bash_completes(name: &str, script_path: &std::path::Path) -> Vec<String> {
    let probe = format!(
        r#"set -e
source "$1"
spec=$(complete -p {name})
fn=$(printf '%s\n' "$spec" | sed -n 's/.*-F \([^ ]*\).*/\1/p')
test -n "$fn"
COMP_WORDS=({name} "")
COMP_CWORD=1
COMP_LINE="{name} "
COMP_POINT=${{#COMP_LINE}}
"$fn" {name} "" {name}
printf '%s\n' "${{COMPREPLY[@]}}"
"#
    );
    let out = run(
        Command::new("bash")
            .args(["-c", &probe, "probe"])
            .arg(script_path),
        None,
    );
    assert!(
        out.status.success(),
        "completing `{name} ` in bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completions_parse_and_complete_every_subcommand() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for (name, subcommands) in BINARIES {
        let script = ok_stdout(name, &["completions", "bash"]);
        let path = tmp.path().join(format!("{name}.bash"));
        std::fs::write(&path, &script).expect("writing the script");
        let syntax = run(Command::new("bash").arg("-n").arg(&path), None);
        assert!(
            syntax.status.success(),
            "bash -n rejects {name}'s completions: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
        let offered = bash_completes(name, &path);
        for sub in *subcommands {
            assert!(
                offered.iter().any(|w| w == sub),
                "`{name} <TAB>` does not offer {sub}: {offered:?}"
            );
        }
    }
}

#[test]
fn zsh_fish_elvish_powershell_completions_are_printed() {
    for (name, subcommands) in BINARIES {
        let zsh = ok_stdout(name, &["completions", "zsh"]);
        assert!(
            zsh.starts_with(&format!("#compdef {name}\n")),
            "{name}: {}",
            zsh.lines().next().unwrap_or_default()
        );
        for shell in ["fish", "elvish", "powershell"] {
            let script = ok_stdout(name, &["completions", shell]);
            for sub in *subcommands {
                assert!(
                    script.contains(sub),
                    "{name} {shell} completions lack {sub}"
                );
            }
        }
    }
}

/// The page rendered to plain text by `man -l -`, else groff; None when neither is installed.
fn render_man(page: &[u8]) -> Option<String> {
    let out = if have("man") {
        run(
            Command::new("man")
                .args(["-l", "-"])
                .env("MANWIDTH", "200")
                .env("MANPAGER", "cat")
                .env("PAGER", "cat")
                .env_remove("MAN_KEEP_FORMATTING"),
            Some(page),
        )
    } else if have("groff") {
        run(
            Command::new("groff").args(["-man", "-Tutf8", "-P-cbou", "-rLL=200n"]),
            Some(page),
        )
    } else {
        return None;
    };
    assert!(
        out.status.success(),
        "rendering the man page failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Justified lines stretch spaces: compare words.
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn man_pages_are_roff_and_render_with_every_subcommand() {
    let mut rendered_any = false;
    for (name, subcommands) in BINARIES {
        let page = ok_stdout(name, &["man"]);
        let title = format!(".TH {} 1 ", name.to_uppercase());
        assert!(
            page.lines().any(|l| l.starts_with(&title)),
            "{name}: no `{title}` line"
        );
        assert_eq!(
            page.lines().filter(|l| l.starts_with(".TH ")).count(),
            1,
            "{name}: one page, one title"
        );
        for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH COMMANDS"] {
            assert!(page.lines().any(|l| l == section), "{name}: no {section}");
        }
        for sub in *subcommands {
            assert!(
                page.contains(&format!(".SS \"{name} {sub}\"")),
                "{name}: no subsection for {sub}"
            );
        }
        assert!(
            !page.contains(&format!(".SS \"{name} wrap\"")),
            "{name}: hidden subcommand in the page"
        );
        let Some(text) = render_man(page.as_bytes()) else {
            continue;
        };
        rendered_any = true;
        assert!(text.contains(&name.to_uppercase()), "{name}: {text}");
        for sub in *subcommands {
            assert!(
                text.contains(&format!("{name} {sub}")),
                "{name}: the rendered page lacks `{name} {sub}`:\n{text}"
            );
        }
    }
    if !rendered_any {
        eprintln!("NOTICE: neither man nor groff is installed; man pages checked as roff only");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    for (name, _) in BINARIES {
        let out = run(
            Command::new(bin(name)).args(["completions", "nosuchshell"]),
            None,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if *name == "healthcheck" {
            // Nagios: bad arguments are UNKNOWN, on one stdout line.
            assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
            assert!(
                stdout.starts_with("HEALTHCHECK UNKNOWN - invalid value 'nosuchshell'"),
                "{stdout}"
            );
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{name}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        assert!(
            stderr.starts_with("error: invalid value 'nosuchshell'"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("bash"), "{name}: possible values: {stderr}");
    }
}
