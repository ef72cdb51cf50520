//! File checks for cron heartbeats and spool files: the file exists, is not older than
//! `max_age` (WARNING past `warn_age`), and its size is within bounds.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::spec::{CheckError, CheckSpec, bad, duration};
use crate::status::{CheckResult, Perf, Status};

/// A validated file check.
#[derive(Clone, Debug)]
pub struct FileCheck {
    pub label: String,
    pub path: PathBuf,
    pub max_age: Option<Duration>,
    pub warn_age: Option<Duration>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
}

impl FileCheck {
    pub(crate) fn from_spec(spec: &CheckSpec, label: String) -> Result<FileCheck, CheckError> {
        let (min, max) = (spec.min_size, spec.max_size);
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return bad(format!("min size {lo} is larger than max size {hi}"));
        }
        Ok(FileCheck {
            label,
            path: PathBuf::from(spec.target.trim()),
            max_age: duration("max_age", &spec.max_age)?,
            warn_age: duration("warn_age", &spec.warn_age)?,
            min_size: min,
            max_size: max,
        })
    }

    pub(crate) async fn run(&self) -> CheckResult {
        let path = self.path.display();
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return CheckResult::new(
                    &self.label,
                    Status::Critical,
                    format!("{path}: no such file"),
                );
            }
            Err(e) => {
                return CheckResult::new(&self.label, Status::Critical, format!("{path}: {e}"));
            }
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        let size = meta.len();
        let mut age_perf = Perf::new("age", age.as_secs_f64().floor(), "s");
        age_perf.warn = self.warn_age.map(|d| d.as_secs_f64());
        age_perf.crit = self.max_age.map(|d| d.as_secs_f64());
        let mut size_perf = Perf::new("size", size as f64, "B");
        size_perf.min = Some(0.0);
        let summary = format!("{path}: {size} bytes, modified {} s ago", age.as_secs());
        let (status, why) = if self.max_age.is_some_and(|m| age > m) {
            (
                Status::Critical,
                format!(
                    "older than {} s",
                    self.max_age.unwrap_or_default().as_secs()
                ),
            )
        } else if self.min_size.is_some_and(|m| size < m) {
            (
                Status::Critical,
                format!("smaller than {} bytes", self.min_size.unwrap_or_default()),
            )
        } else if self.max_size.is_some_and(|m| size > m) {
            (
                Status::Critical,
                format!("larger than {} bytes", self.max_size.unwrap_or_default()),
            )
        } else if self.warn_age.is_some_and(|w| age > w) {
            (
                Status::Warning,
                format!(
                    "older than {} s",
                    self.warn_age.unwrap_or_default().as_secs()
                ),
            )
        } else {
            (Status::Ok, String::new())
        };
        let msg = if why.is_empty() {
            summary
        } else {
            format!("{summary}, {why}")
        };
        CheckResult::new(&self.label, status, msg)
            .with_perf(age_perf)
            .with_perf(size_perf)
    }
}
