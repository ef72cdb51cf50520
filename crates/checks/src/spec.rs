//! What a check is: the [`CheckSpec`] users write (CLI flags, batch JSON, Consul definitions all
//! become one) and the validated [`Check`] it builds into.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_wire::{CheckDefinition, parse_go_duration};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::dns::DnsCheck;
use crate::exec::ExecCheck;
use crate::file::FileCheck;
use crate::http::HttpCheck;
use crate::status::CheckResult;
use crate::tcp::TcpCheck;
use crate::thresholds::Thresholds;

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

/// A validated check, ready to run any number of times.
#[derive(Clone, Debug)]
pub enum Check {
    Http(HttpCheck),
    Tcp(TcpCheck),
    Dns(DnsCheck),
    Exec(ExecCheck),
    File(FileCheck),
}

impl CheckSpec {
    /// Validates the spec; every problem is named (field and reason).
    pub fn build(&self) -> Result<Check, CheckError> {
        let Some(kind) = self.kind else {
            return bad("kind: missing (http, tcp, dns, exec or file)");
        };
        let timeout = duration("timeout", &self.timeout)?.unwrap_or(crate::DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return bad("timeout: must be greater than 0");
        }
        duration("interval", &self.interval)?;
        let thresholds = Thresholds {
            warning: duration("warning", &self.warning)?,
            critical: duration("critical", &self.critical)?,
        };
        let label = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{kind:?}").to_uppercase());
        let need_target = |what: &str| {
            if self.target.trim().is_empty() {
                bad(format!("target: missing {what}"))
            } else {
                Ok(())
            }
        };
        Ok(match kind {
            Kind::Http => {
                need_target("URL")?;
                Check::Http(HttpCheck::from_spec(self, label, timeout, thresholds)?)
            }
            Kind::Tcp => {
                need_target("host:port")?;
                Check::Tcp(TcpCheck::from_spec(self, label, timeout, thresholds)?)
            }
            Kind::Dns => {
                need_target("name")?;
                Check::Dns(DnsCheck::from_spec(self, label, timeout, thresholds)?)
            }
            Kind::Exec => Check::Exec(ExecCheck::from_spec(self, label, timeout)?),
            Kind::File => {
                need_target("path")?;
                Check::File(FileCheck::from_spec(self, label)?)
            }
        })
    }

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

impl Check {
    /// Runs the check once. Never fails: problems are CRITICAL/UNKNOWN results.
    pub async fn run(&self, ctx: &Context) -> CheckResult {
        let started = std::time::Instant::now();
        let mut result = match self {
            Check::Http(c) => c.run(ctx).await,
            Check::Tcp(c) => c.run().await,
            Check::Dns(c) => c.run().await,
            Check::Exec(c) => c.run().await,
            Check::File(c) => c.run().await,
        };
        result.duration = started.elapsed().as_secs_f64();
        result
    }

    pub fn label(&self) -> &str {
        match self {
            Check::Http(c) => &c.label,
            Check::Tcp(c) => &c.label,
            Check::Dns(c) => &c.label,
            Check::Exec(c) => &c.label,
            Check::File(c) => &c.label,
        }
    }
}
