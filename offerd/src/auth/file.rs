//! The `--auth-file`: principals and node-bound agent tokens, in TOML.
//!
//! ```toml
//! [[principal]]
//! name = "ci"              # shown in logs (never the secret)
//! token = "s3cret"         # Authorization: Bearer s3cret (or X-Consul-Token, or token=)
//! role = "deployer"        # admin | deployer | viewer
//! paths = ["/team-a/"]     # deployers only: the app id prefixes they may change
//!
//! [[principal]]
//! name = "alice"
//! user = "alice"           # HTTP Basic, as Marathon's --http_credentials
//! password = "pw"
//! role = "viewer"
//!
//! [[agent]]
//! node = "n1"              # this token may act as agent n1 only
//! token = "n1-s3cret"
//! ```
//!
//! Rules (a file breaking one is refused whole, with a message naming the entry, never a
//! secret): names unique; each principal has exactly one of `token` or `user` + `password`, none
//! empty; tokens unique across principals and agents, users unique; a deployer has `paths`,
//! others have none; a path is absolute, made of Marathon id segments (lowercase letters,
//! digits, `-`, `.`; not `.` or `..`), and means the group: `/team-a` and `/team-a/` both cover
//! `/team-a/x` and `/team-a/b/c`, not `/team-ab`. Agent nodes are unique, their tokens non-empty.
//!
//! The file's mode: writable by group or others is refused (anyone who can write it can make
//! themselves admin); readable by them is allowed with a warning, as ssh treats key files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use cairn_http::Secret;

use super::{AgentEntry, AuthConfig, Credential, Principal, Role};

/// One `[[principal]]` as written. Secrets are read as any TOML value, so that a wrong type is
/// reported without its value (serde's messages quote what they got).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalForm {
    name: Option<String>,
    token: Option<toml::Value>,
    user: Option<String>,
    password: Option<toml::Value>,
    role: Option<String>,
    paths: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentForm {
    node: Option<String>,
    token: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default)]
    principal: Vec<PrincipalForm>,
    #[serde(default)]
    agent: Vec<AgentForm>,
}

/// Reads and checks the file at `path`. `Ok` carries warnings for the log (a file readable by
/// others); `Err` is one line naming the file and the problem.
pub fn load(path: &Path) -> Result<(AuthConfig, Vec<String>), String> {
    let shown = path.display();
    let mut warnings = Vec::new();
    let meta = std::fs::metadata(path).map_err(|e| format!("auth file {shown}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(format!(
                "auth file {shown}: writable by group or others (mode {mode:04o}): anyone who can write it can make themselves admin; chmod 600 it"
            ));
        }
        if mode & 0o044 != 0 {
            warnings.push(format!(
                "auth file {shown} is readable by group or others (mode {mode:04o}): its secrets are theirs too; chmod 600 it"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(|e| format!("auth file {shown}: {e}"))?;
    let cfg = parse(&text).map_err(|e| format!("auth file {shown}: {e}"))?;
    Ok((cfg, warnings))
}

/// Parses and checks the file's text (see the module documentation for the rules).
pub fn parse(text: &str) -> Result<AuthConfig, String> {
    let form: FileForm = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let mut principals = Vec::new();
    let mut names: HashMap<String, ()> = HashMap::new();
    let mut users: HashMap<String, ()> = HashMap::new();
    // Every token with its owner, to refuse one token for two owners.
    let mut tokens: Vec<(Secret, String)> = Vec::new();
    for (i, p) in form.principal.into_iter().enumerate() {
        let name = match p.name {
            Some(n) if !n.trim().is_empty() => n,
            _ => return Err(format!("principal {}: name is missing", i + 1)),
        };
        if name.chars().any(char::is_control) {
            return Err(format!(
                "principal {}: name must not hold control characters",
                i + 1
            ));
        }
        let me = format!("principal {name:?}");
        if names.insert(name.clone(), ()).is_some() {
            return Err(format!(
                "{me}: the name is given twice (names must be unique)"
            ));
        }
        let credential = match (p.token, p.user, p.password) {
            (Some(t), None, None) => {
                let token =
                    secret(t).ok_or_else(|| format!("{me}: token must be a non-empty string"))?;
                if let Some((_, owner)) = tokens.iter().find(|(s, _)| s.same_as(&token)) {
                    return Err(format!("{me}: has the same token as {owner}"));
                }
                tokens.push((token.clone(), me.clone()));
                Credential::Token(token)
            }
            (None, Some(user), Some(pw)) => {
                if user.is_empty() {
                    return Err(format!("{me}: user must not be empty"));
                }
                if user.contains(':') || user.chars().any(char::is_control) {
                    return Err(format!(
                        "{me}: user must not hold ':' or control characters (HTTP Basic)"
                    ));
                }
                if users.insert(user.clone(), ()).is_some() {
                    return Err(format!("{me}: user {user:?} is given twice"));
                }
                let password = secret(pw)
                    .ok_or_else(|| format!("{me}: password must be a non-empty string"))?;
                Credential::Basic { user, password }
            }
            (None, None, None) => {
                return Err(format!("{me}: give a token, or a user and a password"));
            }
            (Some(_), _, _) => {
                return Err(format!(
                    "{me}: give a token, or a user and a password, not both"
                ));
            }
            (None, Some(_), None) => return Err(format!("{me}: user needs a password")),
            (None, None, Some(_)) => return Err(format!("{me}: password needs a user")),
        };
        let role = match p.role.as_deref() {
            None => return Err(format!("{me}: role is missing (admin, deployer or viewer)")),
            Some("admin") => Role::Admin,
            Some("deployer") => Role::Deployer,
            Some("viewer") => Role::Viewer,
            Some(other) => {
                return Err(format!(
                    "{me}: role {other:?} is not one of admin, deployer, viewer"
                ));
            }
        };
        let paths = match (role, p.paths) {
            (Role::Deployer, None) => {
                return Err(format!(
                    "{me}: a deployer needs paths (the app id prefixes it may change)"
                ));
            }
            (Role::Deployer, Some(paths)) if paths.is_empty() => {
                return Err(format!(
                    "{me}: a deployer needs paths (the app id prefixes it may change)"
                ));
            }
            (Role::Deployer, Some(paths)) => paths
                .iter()
                .map(|p| normalize_path(p).map_err(|why| format!("{me}: path {p:?} {why}")))
                .collect::<Result<Vec<_>, _>>()?,
            (_, None) => Vec::new(),
            (Role::Admin, Some(_)) => {
                return Err(format!(
                    "{me}: paths are for deployers only (an admin may change every app)"
                ));
            }
            (Role::Viewer, Some(_)) => {
                return Err(format!(
                    "{me}: paths are for deployers only (a viewer reads every app and changes none)"
                ));
            }
        };
        principals.push(Arc::new(Principal {
            name,
            role,
            paths,
            credential,
        }));
    }
    let mut agents = Vec::new();
    let mut nodes: HashMap<String, ()> = HashMap::new();
    for (i, a) in form.agent.into_iter().enumerate() {
        let node = match a.node {
            Some(n) if !n.trim().is_empty() => n,
            _ => return Err(format!("agent {}: node is missing", i + 1)),
        };
        let me = format!("agent {node:?}");
        if nodes.insert(node.clone(), ()).is_some() {
            return Err(format!(
                "{me}: the node is given twice (one token per node)"
            ));
        }
        let token = a
            .token
            .and_then(secret)
            .ok_or_else(|| format!("{me}: token must be a non-empty string"))?;
        if let Some((_, owner)) = tokens.iter().find(|(s, _)| s.same_as(&token)) {
            return Err(format!("{me}: has the same token as {owner}"));
        }
        tokens.push((token.clone(), me));
        agents.push(AgentEntry { node, token });
    }
    Ok(AuthConfig { principals, agents })
}

fn secret(v: toml::Value) -> Option<Secret> {
    match v {
        toml::Value::String(s) if !s.is_empty() => Some(Secret::new(&s)),
        _ => None,
    }
}

/// `/team-a` or `/team-a/` → `/team-a/`; `/` stays.
fn normalize_path(p: &str) -> Result<String, &'static str> {
    let Some(inner) = p.strip_prefix('/') else {
        return Err("must be absolute (start with /)");
    };
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return Ok("/".into());
    }
    for seg in inner.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok {
            return Err(
                "is not an app group: segments of lowercase letters, digits, '-' and '.', not empty, '.' or '..'",
            );
        }
    }
    Ok(format!("/{inner}/"))
}

/// A TOML error as `line L, column C: what`, without toml's excerpt of the source line (which
/// may hold a secret).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {msg}")
        }
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_file() {
        let cfg = parse(
            r#"
            [[principal]]
            name = "ci"
            token = "tok-ci"
            role = "deployer"
            paths = ["/team-a", "/team-b/web/", "/"]

            [[principal]]
            name = "alice"
            user = "alice"
            password = "pw:with:colons"
            role = "viewer"

            [[principal]]
            name = "root"
            token = "tok-root"
            role = "admin"

            [[agent]]
            node = "n1"
            token = "tok-n1"
            "#,
        )
        .expect("valid");
        assert_eq!(cfg.principals.len(), 3);
        let ci = &cfg.principals[0];
        assert_eq!(ci.role, Role::Deployer);
        assert_eq!(ci.paths, ["/team-a/", "/team-b/web/", "/"]);
        assert_eq!(cfg.principals[1].role, Role::Viewer);
        assert_eq!(cfg.agents[0].node, "n1");
        // No secret in any Debug form.
        let shown = format!("{cfg:?}");
        for s in ["tok-ci", "pw:with", "tok-root", "tok-n1"] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        assert!(shown.contains("alice") && shown.contains("ci"), "{shown}");
        // An empty file: no principals, no agents.
        let empty = parse("").expect("valid");
        assert!(empty.principals.is_empty() && empty.agents.is_empty());
    }

    #[test]
    fn invalid_files_and_their_messages() {
        let p = |body: &str| format!("[[principal]]\n{body}\n");
        let cases: Vec<(String, &str)> =
            vec![
            ("[[principal]\nname = 1".into(), "line 1, column 1"),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"admin\"\ncolour = \"red\""),
                "line 5, column 1: unknown field `colour`",
            ),
            (p("token = \"t\"\nrole = \"admin\""), "principal 1: name is missing"),
            (p("name = \" \"\ntoken = \"t\"\nrole = \"admin\""), "principal 1: name is missing"),
            (
                p("name = \"a\"\nrole = \"admin\""),
                "principal \"a\": give a token, or a user and a password",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"\nrole = \"admin\""),
                "principal \"a\": give a token, or a user and a password, not both",
            ),
            (
                p("name = \"a\"\nuser = \"u\"\nrole = \"admin\""),
                "principal \"a\": user needs a password",
            ),
            (
                p("name = \"a\"\npassword = \"p\"\nrole = \"admin\""),
                "principal \"a\": password needs a user",
            ),
            (
                p("name = \"a\"\ntoken = \"\"\nrole = \"admin\""),
                "principal \"a\": token must be a non-empty string",
            ),
            (
                p("name = \"a\"\ntoken = 123456\nrole = \"admin\""),
                "principal \"a\": token must be a non-empty string",
            ),
            (
                p("name = \"a\"\nuser = \"u\"\npassword = \"\"\nrole = \"admin\""),
                "principal \"a\": password must be a non-empty string",
            ),
            (
                p("name = \"a\"\nuser = \"u:v\"\npassword = \"p\"\nrole = \"admin\""),
                "principal \"a\": user must not hold ':'",
            ),
            (
                p("name = \"a\"\ntoken = \"t\""),
                "principal \"a\": role is missing (admin, deployer or viewer)",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"root\""),
                "principal \"a\": role \"root\" is not one of admin, deployer, viewer",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"deployer\""),
                "principal \"a\": a deployer needs paths",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"deployer\"\npaths = []"),
                "principal \"a\": a deployer needs paths",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"admin\"\npaths = [\"/x/\"]"),
                "principal \"a\": paths are for deployers only (an admin may change every app)",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"viewer\"\npaths = [\"/x/\"]"),
                "principal \"a\": paths are for deployers only (a viewer",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"deployer\"\npaths = [\"team-a/\"]"),
                "principal \"a\": path \"team-a/\" must be absolute (start with /)",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"deployer\"\npaths = [\"/a/../b/\"]"),
                "principal \"a\": path \"/a/../b/\" is not an app group",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"deployer\"\npaths = [\"/a//b/\"]"),
                "principal \"a\": path \"/a//b/\" is not an app group",
            ),
            (
                p("name = \"a\"\ntoken = \"t\"\nrole = \"deployer\"\npaths = [\"/Team-A/\"]"),
                "principal \"a\": path \"/Team-A/\" is not an app group",
            ),
            (
                format!(
                    "{}{}",
                    p("name = \"a\"\ntoken = \"t1\"\nrole = \"admin\""),
                    p("name = \"a\"\ntoken = \"t2\"\nrole = \"admin\"")
                ),
                "principal \"a\": the name is given twice",
            ),
            (
                format!(
                    "{}{}",
                    p("name = \"a\"\ntoken = \"same\"\nrole = \"admin\""),
                    p("name = \"b\"\ntoken = \"same\"\nrole = \"viewer\"")
                ),
                "principal \"b\": has the same token as principal \"a\"",
            ),
            (
                format!(
                    "{}{}",
                    p("name = \"a\"\nuser = \"u\"\npassword = \"p1\"\nrole = \"admin\""),
                    p("name = \"b\"\nuser = \"u\"\npassword = \"p2\"\nrole = \"viewer\"")
                ),
                "principal \"b\": user \"u\" is given twice",
            ),
            ("[[agent]]\ntoken = \"t\"".into(), "agent 1: node is missing"),
            (
                "[[agent]]\nnode = \"n1\"".into(),
                "agent \"n1\": token must be a non-empty string",
            ),
            (
                "[[agent]]\nnode = \"n1\"\ntoken = \"a\"\n[[agent]]\nnode = \"n1\"\ntoken = \"b\""
                    .into(),
                "agent \"n1\": the node is given twice",
            ),
            (
                format!(
                    "{}[[agent]]\nnode = \"n1\"\ntoken = \"same\"\n",
                    p("name = \"a\"\ntoken = \"same\"\nrole = \"admin\"")
                ),
                "agent \"n1\": has the same token as principal \"a\"",
            ),
            ("[[agents]]\nnode = \"n1\"".into(), "unknown field `agents`"),
        ];
        for (text, want) in cases {
            let err = match parse(&text) {
                Ok(cfg) => panic!("accepted:\n{text}\n{cfg:?}"),
                Err(e) => e,
            };
            assert!(
                err.contains(want),
                "file:\n{text}\nwant {want:?}\ngot  {err:?}"
            );
        }
    }

    #[test]
    fn errors_never_quote_secrets() {
        // A syntax error on a secret's line, and a secret of the wrong type.
        for text in [
            "[[principal]]\nname = \"a\"\ntoken = \"s3cret-unterminated\nrole = \"admin\"\n",
            "[[principal]]\nname = \"a\"\npassword = 987654321\nuser = \"u\"\nrole = \"admin\"\n",
            "[[agent]]\nnode = \"n\"\ntoken = [\"s3cret-in-a-list\"]\n",
        ] {
            let err = parse(text).expect_err("invalid");
            for s in ["s3cret", "987654321"] {
                assert!(!err.contains(s), "{err}");
            }
        }
    }

    #[test]
    fn file_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("auth.toml");
        std::fs::write(
            &path,
            "[[principal]]\nname = \"a\"\ntoken = \"t\"\nrole = \"admin\"\n",
        )
        .expect("write");
        let chmod = |mode| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        chmod(0o600);
        let (_, warnings) = load(&path).expect("0600 is fine");
        assert!(warnings.is_empty(), "{warnings:?}");
        chmod(0o644);
        let (_, warnings) = load(&path).expect("0644 is allowed");
        assert!(
            warnings[0].contains("readable by group or others (mode 0644)"),
            "{warnings:?}"
        );
        chmod(0o620);
        let err = load(&path).expect_err("group-writable is refused");
        assert!(
            err.contains("writable by group or others (mode 0620)"),
            "{err}"
        );
        let err = load(&dir.path().join("missing.toml")).expect_err("missing");
        assert!(err.contains("missing.toml"), "{err}");
    }
}
