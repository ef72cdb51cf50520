//! A validated check: what [`CheckSpec::build`] makes of a spec, dispatching to each kind's
//! constructor, and what runs it.

use crate::context::Context;
use crate::dns::DnsCheck;
use crate::exec::ExecCheck;
use crate::file::FileCheck;
use crate::http::HttpCheck;
use crate::spec::{CheckError, CheckSpec, Kind, bad, duration};
use crate::status::CheckResult;
use crate::tcp::TcpCheck;
use crate::thresholds::Thresholds;

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
