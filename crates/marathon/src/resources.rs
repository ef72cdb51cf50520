//! Mesos resource and attribute strings: `cpus:2;mem:2048;disk:10000;ports:[31000-32000]` and
//! `rack:a;zone:z1`. Agents are configured with them and offerd reports them back, so parsing is
//! strict and every error names the part that is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An inclusive range of host ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub begin: u16,
    pub end: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.end - self.begin) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.begin..=self.end).contains(&port)
    }
}

/// Scalar resources and port ranges of an agent (mem and disk in MB, as Mesos).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    #[serde(default)]
    pub ports: Vec<PortRange>,
}

/// Agent attributes (`rack:a;zone:z1`), matched by constraints.
pub type Attributes = BTreeMap<String, String>;

/// A resource or attribute string that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{part:?}: {reason}")]
pub struct ResourceError {
    pub part: String,
    pub reason: String,
}

fn err(part: &str, reason: impl Into<String>) -> ResourceError {
    ResourceError {
        part: part.to_string(),
        reason: reason.into(),
    }
}

impl Resources {
    /// Mesos' default agent resources when nothing is given (ports 31000-32000).
    pub fn default_ports() -> Vec<PortRange> {
        vec![PortRange {
            begin: 31000,
            end: 32000,
        }]
    }

    /// Total number of ports in all ranges.
    pub fn port_count(&self) -> usize {
        self.ports.iter().map(PortRange::len).sum()
    }
}

fn parse_scalar(part: &str, value: &str) -> Result<f64, ResourceError> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| err(part, "is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(err(part, "must be a non-negative number"));
    }
    Ok(v)
}

fn parse_port(part: &str, s: &str) -> Result<u16, ResourceError> {
    let p: u16 = s
        .trim()
        .parse()
        .map_err(|_| err(part, format!("{s:?} is not a port number (1-65535)")))?;
    if p == 0 {
        return Err(err(part, "port 0 is not a usable host port"));
    }
    Ok(p)
}

fn parse_ranges(part: &str, value: &str) -> Result<Vec<PortRange>, ResourceError> {
    let inner = value
        .trim()
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| err(part, "port ranges are written [begin-end,begin-end]"))?;
    let mut ranges = Vec::new();
    for r in inner.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let (b, e) = r
            .split_once('-')
            .ok_or_else(|| err(part, format!("{r:?} is not a begin-end range")))?;
        let (begin, end) = (parse_port(part, b)?, parse_port(part, e)?);
        if begin > end {
            return Err(err(part, format!("range {r:?} ends before it begins")));
        }
        ranges.push(PortRange { begin, end });
    }
    ranges.sort();
    for w in ranges.windows(2) {
        if w[1].begin <= w[0].end {
            return Err(err(part, "port ranges overlap"));
        }
    }
    Ok(ranges)
}

impl FromStr for Resources {
    type Err = ResourceError;

    /// Parses `cpus:2;mem:2048;disk:10000;ports:[31000-32000]`. Missing scalars are 0 and missing
    /// ports are Mesos' default range; unknown names and repeated names are errors.
    fn from_str(s: &str) -> Result<Self, ResourceError> {
        let mut res = Resources {
            ports: Resources::default_ports(),
            ..Default::default()
        };
        let mut seen = Vec::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once(':')
                .ok_or_else(|| err(part, "expected name:value"))?;
            let name = name.trim();
            if seen.contains(&name) {
                return Err(err(part, format!("{name} is given twice")));
            }
            seen.push(name);
            match name {
                "cpus" => res.cpus = parse_scalar(part, value)?,
                "mem" => res.mem = parse_scalar(part, value)?,
                "disk" => res.disk = parse_scalar(part, value)?,
                "ports" => res.ports = parse_ranges(part, value)?,
                other => {
                    return Err(err(
                        part,
                        format!("unknown resource {other:?} (known: cpus, mem, disk, ports)"),
                    ));
                }
            }
        }
        Ok(res)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpus:{};mem:{};disk:{};ports:[",
            self.cpus, self.mem, self.disk
        )?;
        for (i, r) in self.ports.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}-{}", r.begin, r.end)?;
        }
        f.write_str("]")
    }
}

/// Parses `rack:a;zone:z1`.
pub fn parse_attributes(s: &str) -> Result<Attributes, ResourceError> {
    let mut attrs = Attributes::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once(':')
            .ok_or_else(|| err(part, "expected name:value"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(err(part, "empty attribute name"));
        }
        if attrs.insert(name.to_string(), value.to_string()).is_some() {
            return Err(err(part, format!("{name} is given twice")));
        }
    }
    Ok(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mesos_resource_strings() {
        let r: Resources = "cpus:2;mem:2048;disk:10000;ports:[21000-24000,30000-34000]"
            .parse()
            .unwrap();
        assert_eq!(r.cpus, 2.0);
        assert_eq!(r.mem, 2048.0);
        assert_eq!(r.port_count(), 3001 + 4001);
        assert_eq!(
            r.to_string(),
            "cpus:2;mem:2048;disk:10000;ports:[21000-24000,30000-34000]"
        );
        let d: Resources = "cpus:1".parse().unwrap();
        assert_eq!(d.ports, Resources::default_ports());
    }

    #[test]
    fn names_the_bad_part() {
        for (input, needle) in [
            ("cpus:two", "not a number"),
            ("cpus:-1", "non-negative"),
            ("gpus:1", "unknown resource"),
            ("ports:31000-32000", "[begin-end"),
            ("ports:[32000-31000]", "ends before"),
            ("ports:[1-10,5-20]", "overlap"),
            ("ports:[0-10]", "port 0"),
            ("cpus:1;cpus:2", "twice"),
            ("mem", "name:value"),
        ] {
            let e = input.parse::<Resources>().unwrap_err();
            assert!(e.to_string().contains(needle), "{input}: {e}");
        }
    }

    #[test]
    fn parses_attributes() {
        let a = parse_attributes("rack:a; zone:z1").unwrap();
        assert_eq!(a["rack"], "a");
        assert_eq!(a["zone"], "z1");
        assert!(parse_attributes("rack").is_err());
        assert!(parse_attributes("rack:a;rack:b").is_err());
    }
}
