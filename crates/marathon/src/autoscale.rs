//! An app's autoscaling policy, carried in its Marathon labels so strict Marathon clients, `offerd
//! apply` files and anything that round-trips an app definition keep it without knowing of it:
//!
//! | label | value | default |
//! |---|---|---|
//! | `cairn.autoscale.metric` | `rps` · `cpu` · `mem` · `prometheus:<PromQL>` | (required) |
//! | `cairn.autoscale.target` | the wanted value per instance (> 0) | (required) |
//! | `cairn.autoscale.min` | fewest instances | 1 |
//! | `cairn.autoscale.max` | most instances | (required) |
//! | `cairn.autoscale.cooldown` | no new decision this long after a scale (Go duration) | 30s |
//! | `cairn.autoscale.scale_down_window` | demand must stay lower this long to scale down | 5m |
//! | `cairn.autoscale.tolerance` | no change while value/target is within 1 ± this | 0.1 |
//!
//! The target's unit is the metric's: requests per second per instance for `rps`, percent of the
//! task's reservation (`cpus`, `mem`) for `cpu` and `mem`, and whatever the query returns per
//! instance for `prometheus:`. An app without any `cairn.autoscale.` label has no policy; an app
//! with some has them all checked, and each problem is a 422 violation at
//! `/labels/cairn.autoscale.<name>`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::violation::Violation;

/// Prefix of every autoscaling label.
pub const LABEL_PREFIX: &str = "cairn.autoscale.";
/// Longest PromQL query a label may carry.
pub const MAX_QUERY_LEN: usize = 4096;

const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
const DEFAULT_SCALE_DOWN_WINDOW: Duration = Duration::from_secs(300);
const DEFAULT_TOLERANCE: f64 = 0.1;
/// Longest cooldown or window a label may ask for (a day): past that a typo, not a policy.
const MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// What an app is scaled on.
#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    /// Requests per second per instance, as HAProxy counts them (through lbconf).
    Rps,
    /// CPU used, in percent of the task's `cpus`.
    Cpu,
    /// Resident memory, in percent of the task's `mem`.
    Mem,
    /// A PromQL query answering one number: the value per instance.
    Prometheus(String),
}

impl Metric {
    /// The label's spelling (`prometheus:` without its query).
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Rps => "rps",
            Metric::Cpu => "cpu",
            Metric::Mem => "mem",
            Metric::Prometheus(_) => "prometheus",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Prometheus(q) => write!(f, "prometheus:{q}"),
            m => f.write_str(m.name()),
        }
    }
}

/// An app's autoscaling policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub metric: Metric,
    pub target: f64,
    pub min: u32,
    pub max: u32,
    pub cooldown: Duration,
    pub scale_down_window: Duration,
    pub tolerance: f64,
}

impl Policy {
    /// The policy `labels` describe: `Ok(None)` when they hold no `cairn.autoscale.` label, every
    /// problem at once otherwise. `max_instances` bounds `max` (Marathon's own instance bound).
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        max_instances: i64,
    ) -> Result<Option<Policy>, Vec<Violation>> {
        let ours: BTreeMap<&str, &str> = labels
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(LABEL_PREFIX)?, v.as_str())))
            .collect();
        if ours.is_empty() {
            return Ok(None);
        }
        let mut bad = Vec::new();
        let mut fail = |name: &str, msg: String| {
            bad.push(Violation::new(
                &format!("/labels/{LABEL_PREFIX}{name}"),
                msg,
            ));
        };
        for name in ours.keys() {
            if !KNOWN.contains(name) {
                fail(
                    name,
                    format!(
                        "unknown autoscaling label (known: {})",
                        KNOWN
                            .iter()
                            .map(|k| format!("{LABEL_PREFIX}{k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        let metric = match ours.get("metric").map(|m| m.trim()) {
            None => {
                fail(
                    "metric",
                    "required: rps, cpu, mem or prometheus:<query>".into(),
                );
                None
            }
            Some("rps") => Some(Metric::Rps),
            Some("cpu") => Some(Metric::Cpu),
            Some("mem") => Some(Metric::Mem),
            Some(m) => match m.strip_prefix("prometheus:").map(str::trim) {
                Some("") => {
                    fail("metric", "prometheus: needs a PromQL query after it".into());
                    None
                }
                Some(q) if q.len() > MAX_QUERY_LEN => {
                    fail(
                        "metric",
                        format!("the query is {} bytes, at most {MAX_QUERY_LEN}", q.len()),
                    );
                    None
                }
                Some(q) => Some(Metric::Prometheus(q.to_string())),
                None => {
                    fail(
                        "metric",
                        format!("{m:?} is not rps, cpu, mem or prometheus:<query>"),
                    );
                    None
                }
            },
        };
        let target = match ours.get("target") {
            None => {
                fail("target", "required: the wanted value per instance".into());
                None
            }
            Some(t) => match t.trim().parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => Some(x),
                _ => {
                    fail("target", format!("must be a number > 0, got {t:?}"));
                    None
                }
            },
        };
        let mut count = |name: &str, default: Option<u32>| match (ours.get(name), default) {
            (None, Some(d)) => Some(d),
            (None, None) => {
                fail(name, "required: the most instances to scale to".into());
                None
            }
            (Some(v), _) => match v.trim().parse::<u32>() {
                Ok(n) if i64::from(n) <= max_instances => Some(n),
                Ok(n) => {
                    fail(name, format!("must be <= {max_instances}, got {n}"));
                    None
                }
                Err(_) => {
                    fail(name, format!("must be a whole number >= 0, got {v:?}"));
                    None
                }
            },
        };
        let min = count("min", Some(1));
        let max = count("max", None);
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            fail("max", format!("must be >= min ({lo}), got {hi}"));
        }
        if max == Some(0) {
            fail("max", "must be >= 1".into());
        }
        let mut period = |name: &str, default: Duration| match ours.get(name) {
            None => Some(default),
            Some(v) => match cairn_wire::parse_go_duration(v) {
                Ok(d) if d <= MAX_PERIOD => Some(d),
                Ok(_) => {
                    fail(name, format!("must be at most 24h, got {v:?}"));
                    None
                }
                Err(e) => {
                    fail(name, format!("{e} (a Go duration such as 30s or 5m)"));
                    None
                }
            },
        };
        let cooldown = period("cooldown", DEFAULT_COOLDOWN);
        let scale_down_window = period("scale_down_window", DEFAULT_SCALE_DOWN_WINDOW);
        let tolerance = match ours.get("tolerance") {
            None => Some(DEFAULT_TOLERANCE),
            Some(t) => match t.trim().parse::<f64>() {
                Ok(x) if (0.0..1.0).contains(&x) => Some(x),
                _ => {
                    fail(
                        "tolerance",
                        format!("must be a number in [0, 1), got {t:?}"),
                    );
                    None
                }
            },
        };
        match (
            metric,
            target,
            min,
            max,
            cooldown,
            scale_down_window,
            tolerance,
        ) {
            (
                Some(metric),
                Some(target),
                Some(min),
                Some(max),
                Some(cooldown),
                Some(scale_down_window),
                Some(tolerance),
            ) if bad.is_empty() => Ok(Some(Policy {
                metric,
                target,
                min,
                max,
                cooldown,
                scale_down_window,
                tolerance,
            })),
            _ => Err(bad),
        }
    }
}

/// The label names after the prefix.
const KNOWN: [&str; 7] = [
    "metric",
    "target",
    "min",
    "max",
    "cooldown",
    "scale_down_window",
    "tolerance",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{LABEL_PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn no_autoscaling_label_is_no_policy() {
        let mut l = BTreeMap::new();
        l.insert("SERVICE_NAME".to_string(), "web".to_string());
        assert_eq!(Policy::from_labels(&l, 10_000), Ok(None));
    }

    #[test]
    fn a_full_policy_is_read_with_its_defaults() {
        let p = Policy::from_labels(
            &labels(&[("metric", "rps"), ("target", "50"), ("max", "8")]),
            10_000,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            p,
            Policy {
                metric: Metric::Rps,
                target: 50.0,
                min: 1,
                max: 8,
                cooldown: Duration::from_secs(30),
                scale_down_window: Duration::from_secs(300),
                tolerance: 0.1,
            }
        );
        let p = Policy::from_labels(
            &labels(&[
                ("metric", "prometheus: avg(rate(x[1m]))"),
                ("target", "0.5"),
                ("min", "2"),
                ("max", "4"),
                ("cooldown", "10s"),
                ("scale_down_window", "1m"),
                ("tolerance", "0"),
            ]),
            10_000,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.metric, Metric::Prometheus("avg(rate(x[1m]))".into()));
        assert_eq!(p.metric.to_string(), "prometheus:avg(rate(x[1m]))");
        assert_eq!((p.min, p.max), (2, 4));
        assert_eq!(p.cooldown, Duration::from_secs(10));
        assert_eq!(p.scale_down_window, Duration::from_secs(60));
        assert_eq!(p.tolerance, 0.0);
    }

    /// Each bad policy, and the paths and message fragments of its violations.
    #[test]
    fn bad_policies_name_each_label_at_fault() {
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Pairs, Pairs)] = &[
            (&[("target", "50"), ("max", "3")], &[("metric", "required")]),
            (
                &[("metric", "qps"), ("target", "50"), ("max", "3")],
                &[("metric", "\"qps\" is not")],
            ),
            (
                &[("metric", "prometheus:"), ("target", "1"), ("max", "3")],
                &[("metric", "needs a PromQL query")],
            ),
            (
                &[("metric", "cpu"), ("target", "-5"), ("max", "3")],
                &[("target", "must be a number > 0")],
            ),
            (
                &[("metric", "cpu"), ("target", "NaN"), ("max", "3")],
                &[("target", "must be a number > 0")],
            ),
            (
                &[("metric", "cpu"), ("target", "50")],
                &[("max", "required")],
            ),
            (
                &[
                    ("metric", "cpu"),
                    ("target", "50"),
                    ("min", "5"),
                    ("max", "3"),
                ],
                &[("max", "must be >= min (5)")],
            ),
            (
                &[
                    ("metric", "cpu"),
                    ("target", "50"),
                    ("min", "0"),
                    ("max", "0"),
                ],
                &[("max", "must be >= 1")],
            ),
            (
                &[("metric", "cpu"), ("target", "50"), ("max", "20000")],
                &[("max", "must be <= 10000")],
            ),
            (
                &[("metric", "cpu"), ("target", "50"), ("max", "-1")],
                &[("max", "whole number")],
            ),
            (
                &[
                    ("metric", "mem"),
                    ("target", "80"),
                    ("max", "3"),
                    ("cooldown", "soon"),
                ],
                &[("cooldown", "Go duration")],
            ),
            (
                &[
                    ("metric", "mem"),
                    ("target", "80"),
                    ("max", "3"),
                    ("scale_down_window", "48h"),
                ],
                &[("scale_down_window", "at most 24h")],
            ),
            (
                &[
                    ("metric", "mem"),
                    ("target", "80"),
                    ("max", "3"),
                    ("tolerance", "1.5"),
                ],
                &[("tolerance", "[0, 1)")],
            ),
            (
                &[
                    ("metric", "mem"),
                    ("target", "80"),
                    ("max", "3"),
                    ("maximum", "4"),
                ],
                &[("maximum", "unknown autoscaling label")],
            ),
            (
                &[("min", "x")],
                &[
                    ("min", "whole number"),
                    ("metric", "required"),
                    ("target", "required"),
                    ("max", "required"),
                ],
            ),
        ];
        for (pairs, expected) in cases {
            let got = Policy::from_labels(&labels(pairs), 10_000)
                .expect_err(&format!("{pairs:?} must be refused"));
            for (name, fragment) in *expected {
                let path = format!("/labels/{LABEL_PREFIX}{name}");
                assert!(
                    got.iter()
                        .any(|v| v.path == path && v.errors.iter().any(|e| e.contains(fragment))),
                    "{pairs:?}: no violation at {path} containing {fragment:?} in {got:?}"
                );
            }
            assert_eq!(got.len(), expected.len(), "{pairs:?}: {got:?}");
        }
    }
}
