//! systemd unit files read the way systemd reads them, for the tests of `examples/systemd` and of
//! the Ansible playbook that installs them: the keys of a unit, its `Environment=` defaults, an
//! `EnvironmentFile`, and the argv `ExecStart=` runs once specifiers and variables are expanded
//! (`${VAR}` is one word, `$VAR` alone is split at whitespace into zero or more words). No
//! systemd runs in a container, so this is how the tests see what a unit would start.

use std::collections::BTreeMap;

/// A parsed unit file: every `key=value` with its section, in file order.
#[derive(Debug, Clone, Default)]
pub struct Unit {
    pub entries: Vec<(String, String, String)>,
}

impl Unit {
    /// Parses unit file text: `[Section]` headers, `Key=Value` lines, `#`/`;` comments,
    /// trailing-backslash continuations.
    pub fn parse(text: &str) -> Unit {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            let full = format!("{pending}{line}");
            pending.clear();
            if let Some(name) = full.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let Some((k, v)) = full.split_once('=') {
                entries.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
            }
        }
        Unit { entries }
    }

    /// Every value of `key` in `section`, in order.
    pub fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The last value of `key` in `section` (the one systemd uses for single-valued keys).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    /// The variables the `Environment=` lines of `[Service]` set.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for value in self.all("Service", "Environment") {
            for word in split_quoted(value) {
                if let Some((k, v)) = word.split_once('=') {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
        env
    }

    /// The argv `ExecStart=` runs with `env` (specifiers `%S`, `%H`, `%%` replaced from
    /// `specifiers` first).
    pub fn exec_start(
        &self,
        env: &BTreeMap<String, String>,
        specifiers: &Specifiers,
    ) -> Vec<String> {
        let line = self.get("Service", "ExecStart").unwrap_or_default();
        let mut argv = Vec::new();
        for word in split_quoted(line) {
            let word = specifiers.apply(&word);
            if let Some(name) = word.strip_prefix('$').filter(|n| is_name(n)) {
                let value = env.get(name).map(String::as_str).unwrap_or_default();
                argv.extend(value.split_whitespace().map(str::to_string));
            } else {
                argv.push(substitute_braced(&word, env));
            }
        }
        argv
    }

    /// Names of the variables `ExecStart=` uses: (name, braced).
    pub fn exec_start_variables(&self) -> Vec<(String, bool)> {
        let line = self.get("Service", "ExecStart").unwrap_or_default();
        let mut vars = Vec::new();
        for word in split_quoted(line) {
            if let Some(name) = word.strip_prefix('$').filter(|n| is_name(n)) {
                vars.push((name.to_string(), false));
            }
            let mut rest = word.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                vars.push((after[..end].to_string(), true));
                rest = &after[end + 1..];
            }
        }
        vars
    }
}

/// Values of the specifiers a unit uses.
#[derive(Debug, Clone)]
pub struct Specifiers {
    /// `%S`: the state directory root (/var/lib for system units).
    pub state: String,
    /// `%H`: the host name.
    pub host: String,
}

impl Specifiers {
    fn apply(&self, word: &str) -> String {
        let mut out = String::new();
        let mut chars = word.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('S') => out.push_str(&self.state),
                Some('H') => out.push_str(&self.host),
                Some('%') => out.push('%'),
                Some(other) => panic!("specifier %{other} in {word:?} is not handled by the tests"),
                None => out.push('%'),
            }
        }
        out
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn substitute_braced(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push_str(
                    env.get(&after[..end])
                        .map(String::as_str)
                        .unwrap_or_default(),
                );
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits at whitespace, keeping double- or single-quoted parts (quotes removed) in one word.
fn split_quoted(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Parses an `EnvironmentFile`: `KEY=value` or `KEY="value"` (with `\` escapes) per line,
/// `#`/`;` comments.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let value = split_quoted(v).join(" ");
            env.insert(k.trim().to_string(), value);
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_expands_like_systemd() {
        let unit = Unit::parse(
            "[Service]\nEnvironment=A=x\nEnvironment=\"B=two words\"\nEnvironment=\"OPTS=--a 1 --b\"\n\
             Environment=EMPTY=\nExecStart=/bin/p --dir %S/p --a ${A} --b ${B} $OPTS $EMPTY --host %H\n",
        );
        let spec = Specifiers {
            state: "/var/lib".into(),
            host: "h1".into(),
        };
        let argv = unit.exec_start(&unit.environment(), &spec);
        assert_eq!(
            argv,
            [
                "/bin/p",
                "--dir",
                "/var/lib/p",
                "--a",
                "x",
                "--b",
                "two words",
                "--a",
                "1",
                "--b",
                "--host",
                "h1"
            ]
        );
        assert_eq!(
            unit.exec_start_variables(),
            [
                ("A".to_string(), true),
                ("B".to_string(), true),
                ("OPTS".to_string(), false),
                ("EMPTY".to_string(), false)
            ]
        );
    }

    #[test]
    fn env_files_unquote_and_unescape() {
        let env = parse_env_file("# c\nA=\"x \\\"y\\\" \\$z\"\nB=plain\n");
        assert_eq!(env["A"], "x \"y\" $z");
        assert_eq!(env["B"], "plain");
    }
}
