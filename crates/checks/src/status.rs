//! Nagios statuses, performance data and the one-line result every check produces.

use std::fmt;
use std::time::Duration;

use cairn_wire::CheckStatus;
use serde::{Deserialize, Serialize};

/// A Nagios plugin status; the discriminant is the exit code.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Status {
    pub fn exit_code(self) -> i32 {
        self as i32
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// A plugin exit code as Nagios reads it: anything outside 0..=3 is UNKNOWN.
    pub fn from_exit_code(code: i32) -> Status {
        match code {
            0 => Status::Ok,
            1 => Status::Warning,
            2 => Status::Critical,
            _ => Status::Unknown,
        }
    }

    /// Consul's mapping: 0 passing, 1 warning, anything else critical.
    pub fn to_consul(self) -> CheckStatus {
        match self {
            Status::Ok => CheckStatus::Passing,
            Status::Warning => CheckStatus::Warning,
            Status::Critical | Status::Unknown => CheckStatus::Critical,
        }
    }

    /// Severity for "worst of": UNKNOWN ranks between WARNING and CRITICAL, as Nagios orders
    /// host/service problems.
    fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    /// The worse of two statuses.
    pub fn worst(self, other: Status) -> Status {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One performance datum: `'label'=value[UOM];warn;crit;min;max`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uom: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Perf {
    pub fn new(label: &str, value: f64, uom: &str) -> Perf {
        Perf {
            label: label.into(),
            value,
            uom: uom.into(),
            warn: None,
            crit: None,
            min: None,
            max: None,
        }
    }

    /// Response time in seconds with optional thresholds and a minimum of 0, as check_http prints it.
    pub fn time(elapsed: Duration, warn: Option<Duration>, crit: Option<Duration>) -> Perf {
        Perf {
            warn: warn.map(|d| d.as_secs_f64()),
            crit: crit.map(|d| d.as_secs_f64()),
            min: Some(0.0),
            ..Perf::new("time", elapsed.as_secs_f64(), "s")
        }
    }

    /// Parses a plugin's perfdata section; items that do not parse are skipped.
    pub fn parse_all(text: &str) -> Vec<Perf> {
        split_perf_items(text)
            .into_iter()
            .filter_map(|item| Perf::parse(&item))
            .collect()
    }

    fn parse(item: &str) -> Option<Perf> {
        let (label, rest) = item.rsplit_once('=')?;
        let label = label.trim().trim_matches('\'').replace("''", "'");
        let mut fields = rest.split(';');
        let raw = fields.next()?;
        let num_end = raw
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
            .unwrap_or(raw.len());
        let value: f64 = raw[..num_end].parse().ok()?;
        let uom = raw[num_end..].to_string();
        // Threshold fields may be ranges (`10:20`); keep the plain numbers only.
        let mut num = || fields.next().and_then(|f| f.trim().parse::<f64>().ok());
        Some(Perf {
            label,
            value,
            uom,
            warn: num(),
            crit: num(),
            min: num(),
            max: num(),
        })
    }
}

/// Splits perfdata on spaces outside quoted labels.
fn split_perf_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    items.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.6}").trim_end_matches('0').to_string()
    }
}

impl fmt::Display for Perf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needs_quotes = self.label.contains([' ', '=', '\'']);
        if needs_quotes {
            write!(f, "'{}'", self.label.replace('\'', "''"))?;
        } else {
            f.write_str(&self.label)?;
        }
        let value = if self.uom == "s" {
            format!("{:.6}", self.value)
        } else {
            fmt_num(self.value)
        };
        write!(f, "={value}{}", self.uom)?;
        let secs = self.uom == "s";
        let threshold = |v: Option<f64>| {
            v.map(|v| if secs { format!("{v:.3}") } else { fmt_num(v) })
                .unwrap_or_default()
        };
        let bound = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
        let tail = [
            threshold(self.warn),
            threshold(self.crit),
            bound(self.min),
            bound(self.max),
        ];
        // Trailing empty fields are dropped, as plugins do.
        let keep = tail
            .iter()
            .rposition(|s| !s.is_empty())
            .map_or(0, |i| i + 1);
        for field in &tail[..keep] {
            write!(f, ";{field}")?;
        }
        Ok(())
    }
}

/// What one check run found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckResult {
    /// Name of the check (batch) or its kind (`HTTP`, `TCP`, ...).
    pub label: String,
    pub status: Status,
    /// Human text, without the label and status.
    pub message: String,
    pub perfdata: Vec<Perf>,
    /// Wall time of the run, in seconds.
    pub duration: f64,
}

impl CheckResult {
    pub fn new(label: &str, status: Status, message: impl Into<String>) -> CheckResult {
        CheckResult {
            label: label.into(),
            status,
            message: message.into(),
            perfdata: Vec::new(),
            duration: 0.0,
        }
    }

    pub fn with_perf(mut self, perf: Perf) -> CheckResult {
        self.perfdata.push(perf);
        self
    }

    /// The Nagios line: `LABEL STATUS - text | perfdata`.
    pub fn nagios_line(&self) -> String {
        let mut line = format!(
            "{} {} - {}",
            self.label,
            self.status,
            self.message.replace(['\n', '|'], " ")
        );
        if !self.perfdata.is_empty() {
            let perf: Vec<String> = self.perfdata.iter().map(Perf::to_string).collect();
            line.push_str(" | ");
            line.push_str(&perf.join(" "));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfdata_in_the_standard_form() {
        let p = Perf::time(
            Duration::from_millis(12),
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(2)),
        );
        assert_eq!(p.to_string(), "time=0.012000s;1.000;2.000;0");
        let mut size = Perf::new("size", 1234.0, "B");
        size.min = Some(0.0);
        assert_eq!(size.to_string(), "size=1234B;;;0");
        assert_eq!(
            Perf::new("free space", 3.5, "%").to_string(),
            "'free space'=3.5%"
        );
    }

    #[test]
    fn plugin_perfdata_parses() {
        let items = Perf::parse_all("load1=0.120;5.000;10.000;0; 'disk /'=81%;90;95 junk");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].label, "load1");
        assert_eq!(items[0].warn, Some(5.0));
        assert_eq!(items[1].label, "disk /");
        assert_eq!(items[1].uom, "%");
    }

    #[test]
    fn statuses_map_like_nagios_and_consul() {
        assert_eq!(Status::from_exit_code(3), Status::Unknown);
        assert_eq!(Status::from_exit_code(42), Status::Unknown);
        assert_eq!(Status::Unknown.to_consul(), CheckStatus::Critical);
        assert_eq!(Status::Warning.to_consul(), CheckStatus::Warning);
        assert_eq!(
            Status::Ok.worst(Status::Unknown).worst(Status::Warning),
            Status::Unknown
        );
        assert_eq!(Status::Unknown.worst(Status::Critical), Status::Critical);
        let line = CheckResult::new("HTTP", Status::Ok, "200 OK")
            .with_perf(Perf::new("size", 5.0, "B"))
            .nagios_line();
        assert_eq!(line, "HTTP OK - 200 OK | size=5B");
    }
}
