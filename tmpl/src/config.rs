//! What tmpl runs: templates with their destinations, commands and quiescence, from `-t` flags or
//! a config file (TOML or JSON, `[[template]]` entries as consul-template's `template {}` blocks).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_wire::parse_go_duration;
use serde::Deserialize;

use crate::output::Destination;

/// Quiescence: render after `min` of calm, but never later than `max` after the first change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wait {
    pub min: Duration,
    pub max: Duration,
}

impl Wait {
    /// `MIN:MAX` or `MIN` (then MAX = 4 x MIN, as consul-template), Go durations.
    pub fn parse(s: &str) -> Result<Wait, String> {
        let (min, max) = match s.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let min = parse_go_duration(min).map_err(|e| format!("wait: {e}"))?;
        let max = match max {
            Some(b) => parse_go_duration(b).map_err(|e| format!("wait: {e}"))?,
            None => min * 4,
        };
        if max < min {
            return Err(format!("wait {s:?}: max is shorter than min"));
        }
        Ok(Wait { min, max })
    }
}

/// One template to keep rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateConfig {
    pub source: PathBuf,
    pub destination: Destination,
    pub command: Option<String>,
    pub command_timeout: Duration,
    /// Per-template quiescence (else the global one).
    pub wait: Option<Wait>,
}

/// Default command timeout, as consul-template's.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl TemplateConfig {
    /// `IN:OUT[:COMMAND]` (the command may itself contain colons).
    pub fn from_flag(spec: &str) -> Result<TemplateConfig, String> {
        let mut parts = spec.splitn(3, ':');
        let source = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("-t {spec:?}: missing template path"))?;
        let dest = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("-t {spec:?}: expected IN:OUT[:COMMAND]"))?;
        let command = parts
            .next()
            .map(str::to_string)
            .filter(|c| !c.trim().is_empty());
        Ok(TemplateConfig {
            source: PathBuf::from(source),
            destination: Destination {
                path: PathBuf::from(dest),
                perms: None,
                backup: false,
                create_dirs: true,
            },
            command,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            wait: None,
        })
    }
}

/// The config file's shape.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    catalog: Option<String>,
    wait: Option<String>,
    #[serde(default)]
    template: Vec<FileTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTemplate {
    source: PathBuf,
    destination: PathBuf,
    command: Option<String>,
    command_timeout: Option<String>,
    /// Octal string such as "0640", or a number.
    perms: Option<toml::Value>,
    #[serde(default)]
    backup: bool,
    wait: Option<String>,
    #[serde(default = "yes")]
    create_dest_dirs: bool,
}

fn yes() -> bool {
    true
}

/// Everything a config file sets.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub catalog: Option<String>,
    pub wait: Option<Wait>,
    pub templates: Vec<TemplateConfig>,
}

fn perms(v: &toml::Value, at: &str) -> Result<u32, String> {
    let parsed = match v {
        toml::Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        toml::Value::Integer(i) => u32::try_from(*i)
            .ok()
            .and_then(|i| u32::from_str_radix(&i.to_string(), 8).ok()),
        _ => None,
    };
    parsed
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{at}.perms: {v} is not an octal file mode like \"0644\""))
}

/// Reads a config file; TOML unless it ends in `.json`. Relative template paths are taken
/// relative to the file's directory.
pub fn load(path: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: FileConfig = if path.extension().is_some_and(|e| e == "json") {
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let t = toml::Value::try_from(v).map_err(|e| format!("{}: {e}", path.display()))?;
        t.try_into()
            .map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let mut templates = Vec::new();
    for (i, t) in file.template.into_iter().enumerate() {
        let at = format!("{}: template[{i}]", path.display());
        let command_timeout = match &t.command_timeout {
            Some(s) => parse_go_duration(s).map_err(|e| format!("{at}.command_timeout: {e}"))?,
            None => DEFAULT_COMMAND_TIMEOUT,
        };
        templates.push(TemplateConfig {
            source: rel(t.source),
            destination: Destination {
                path: rel(t.destination),
                perms: t.perms.as_ref().map(|p| perms(p, &at)).transpose()?,
                backup: t.backup,
                create_dirs: t.create_dest_dirs,
            },
            command: t.command.filter(|c| !c.trim().is_empty()),
            command_timeout,
            wait: t
                .wait
                .as_deref()
                .map(Wait::parse)
                .transpose()
                .map_err(|e| format!("{at}.{e}"))?,
        });
    }
    Ok(Loaded {
        catalog: file.catalog,
        wait: file
            .wait
            .as_deref()
            .map(Wait::parse)
            .transpose()
            .map_err(|e| format!("{}: {e}", path.display()))?,
        templates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_waits_and_files() {
        let t = TemplateConfig::from_flag(
            "in.tmpl:/etc/haproxy/haproxy.cfg:systemctl reload haproxy && echo a:b",
        )
        .unwrap();
        assert_eq!(
            t.command.as_deref(),
            Some("systemctl reload haproxy && echo a:b")
        );
        assert!(TemplateConfig::from_flag("in.tmpl").is_err());
        assert_eq!(
            Wait::parse("2s:10s").unwrap(),
            Wait {
                min: Duration::from_secs(2),
                max: Duration::from_secs(10)
            }
        );
        assert_eq!(Wait::parse("1s").unwrap().max, Duration::from_secs(4));
        assert!(Wait::parse("5s:1s").is_err());
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("tmpl.toml");
        std::fs::write(&toml_path, "wait = \"1s:3s\"\n[[template]]\nsource = \"a.tmpl\"\ndestination = \"out/a\"\nperms = \"0640\"\ncommand = \"true\"\ncommand_timeout = \"5s\"\n").unwrap();
        let loaded = load(&toml_path).unwrap();
        assert_eq!(loaded.templates[0].destination.perms, Some(0o640));
        assert_eq!(loaded.templates[0].source, dir.path().join("a.tmpl"));
        assert_eq!(loaded.wait.unwrap().min, Duration::from_secs(1));
        let json_path = dir.path().join("tmpl.json");
        std::fs::write(
            &json_path,
            r#"{"template": [{"source": "b.tmpl", "destination": "b", "backup": true}]}"#,
        )
        .unwrap();
        assert!(load(&json_path).unwrap().templates[0].destination.backup);
        std::fs::write(&json_path, r#"{"template": [{"source": "b.tmpl"}]}"#).unwrap();
        assert!(load(&json_path).unwrap_err().contains("destination"));
    }
}
