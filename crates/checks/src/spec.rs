//! What a check is: the [`CheckSpec`] users write (CLI flags, batch JSON, Consul definitions all
//! become one); `check.rs` builds it into a validated [`Check`](crate::Check).

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_wire::{CheckDefinition, parse_go_duration};
use serde::{Deserialize, Serialize};

/// A check that cannot be built: reported as UNKNOWN with this reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CheckError(pub String);

pub(crate) fn bad<T>(msg: impl Into<String>) -> Result<T, CheckError> {
    Err(CheckError(msg.into()))
}

/// Kinds of check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Http,
    Tcp,
    Dns,
    Exec,
    File,
}

/// A check as written in a batch file (durations as Go strings: `"2s"`, `"500ms"`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CheckSpec {
    /// Label of the result (defaults to the kind in capitals).
    pub name: Option<String>,
    pub kind: Option<Kind>,
    /// URL (http), host:port (tcp), name (dns), path (file); unused for exec.
    pub target: String,
    pub timeout: Option<String>,
    /// How often the check runs when repeated (batch `--forever`, agent); unused for one run.
    pub interval: Option<String>,
    /// Response-time thresholds.
    pub warning: Option<String>,
    pub critical: Option<String>,
    // http
    pub method: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub expect_status: Option<String>,
    pub contains: Option<String>,
    pub regex: Option<String>,
    pub insecure: bool,
    pub follow_redirects: bool,
    // tcp
    pub send: Option<String>,
    pub expect: Option<String>,
    // dns
    pub server: Option<String>,
    pub record_type: Option<String>,
    pub answers: Vec<String>,
    // exec
    pub args: Vec<String>,
    // file
    pub max_age: Option<String>,
    pub warn_age: Option<String>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
}

pub(crate) fn duration(field: &str, v: &Option<String>) -> Result<Option<Duration>, CheckError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => parse_go_duration(s)
            .map(Some)
            .map_err(|e| CheckError(format!("{field}: {e}"))),
    }
}

impl CheckSpec {
    /// The spec of a check registered in Consul's form (`Definition` with HTTP, TCP or
    /// ScriptArgs); None for checks nothing runs (TTL, maintenance, externally updated).
    pub fn from_consul(name: &str, def: &CheckDefinition) -> Option<CheckSpec> {
        let timeout = (!def.timeout.is_empty()).then(|| def.timeout.clone());
        let interval = (!def.interval.is_empty()).then(|| def.interval.clone());
        let base = CheckSpec {
            name: Some(name.to_string()),
            timeout,
            interval,
            ..Default::default()
        };
        if !def.http.is_empty() {
            Some(CheckSpec {
                kind: Some(Kind::Http),
                target: def.http.clone(),
                method: (!def.method.is_empty()).then(|| def.method.clone()),
                headers: def
                    .header
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.first()?.clone())))
                    .collect(),
                body: (!def.body.is_empty()).then(|| def.body.clone()),
                insecure: def.tls_skip_verify,
                // Consul's HTTP checks follow redirects (Go's client default).
                follow_redirects: true,
                ..base
            })
        } else if !def.tcp.is_empty() {
            Some(CheckSpec {
                kind: Some(Kind::Tcp),
                target: def.tcp.clone(),
                ..base
            })
        } else if !def.script_args.is_empty() {
            Some(CheckSpec {
                kind: Some(Kind::Exec),
                args: def.script_args.clone(),
                ..base
            })
        } else {
            None
        }
    }

    /// The repeat interval, if one was given and valid.
    pub fn interval(&self) -> Option<Duration> {
        duration("interval", &self.interval).ok().flatten()
    }
}
