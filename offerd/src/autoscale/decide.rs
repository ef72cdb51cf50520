//! The controller's rule, pure: from an app's policy, its instance counts and one reading of
//! its metric, what to do now. The rule is the target-value one Kubernetes' HorizontalPodAutoscaler
//! and the Nomad Autoscaler use:
//!
//! - the wanted count is `ceil(ready x value / target)`, clamped to `[min, max]`, and nothing
//!   changes while `value / target` is within `1 ± tolerance`;
//! - up at once: a wanted count above the current one is applied on the round that sees it;
//! - down only after the window: the count applied is the highest wanted over the last
//!   `scale_down_window`, and only once the controller has watched for a whole window (so a
//!   restarted leader never scales down on its first readings);
//! - nothing while the app deploys (its own or an operator's change), nothing for `cooldown`
//!   after a scale, nothing when the reading is missing or stale: the hold says why.
//!
//! `ready` (healthy running instances) is the base, not `instances`: while new instances start
//! the measured demand is spread over those that serve it, so a scale-up is not repeated for
//! instances that are already on their way.

use std::collections::VecDeque;

use cairn_marathon::autoscale::Policy;

/// Most recommendations remembered per app (the window at one round a second for over an hour).
const MAX_HISTORY: usize = 4096;

/// What the controller remembers of one app between rounds.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Wanted counts with when they were wanted (ms), oldest first.
    recommendations: VecDeque<(u64, u32)>,
    /// When this controller first looked at the app (ms): the scale-down window counts from here.
    watching_since_ms: Option<u64>,
    /// When it last scaled the app (ms).
    last_scale_ms: Option<u64>,
}

impl Memory {
    /// Notes a scale applied at `now_ms` (the cooldown starts).
    pub fn scaled(&mut self, now_ms: u64) {
        self.last_scale_ms = Some(now_ms);
    }
}

/// The app as the round sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed {
    /// The app's `instances`.
    pub instances: u32,
    /// Its running, healthy instances.
    pub ready: u32,
    /// Whether a deployment of the app is in progress.
    pub deploying: bool,
}

/// What the round decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Set `instances` to `to`.
    Scale { to: u32, reason: String },
    /// Leave the app as it is, because of `reason` (a hold: the controller cannot decide now).
    Hold { reason: String },
    /// Leave the app as it is: the metric is on target, or a lower count waits for its window.
    Steady { reason: String },
}

/// One round for one app: `reading` is the metric's value per instance, or why there is none.
pub fn decide(
    policy: &Policy,
    memory: &mut Memory,
    observed: Observed,
    reading: Result<f64, String>,
    now_ms: u64,
) -> Decision {
    let since = *memory.watching_since_ms.get_or_insert(now_ms);
    let Observed {
        instances,
        ready,
        deploying,
    } = observed;
    if deploying {
        return Decision::Hold {
            reason: "a deployment of the app is in progress".into(),
        };
    }
    if instances < policy.min {
        return Decision::Scale {
            to: policy.min,
            reason: format!("{instances} instances is below min {}", policy.min),
        };
    }
    if instances > policy.max {
        return Decision::Scale {
            to: policy.max,
            reason: format!("{instances} instances is above max {}", policy.max),
        };
    }
    if let Some(at) = memory.last_scale_ms {
        let until = at.saturating_add(millis(policy.cooldown));
        if now_ms < until {
            return Decision::Hold {
                reason: format!(
                    "cooldown after the last scale: {} s left",
                    (until - now_ms).div_ceil(1000)
                ),
            };
        }
    }
    let value = match reading {
        Ok(v) if v.is_finite() && v >= 0.0 => v,
        Ok(v) => {
            return Decision::Hold {
                reason: format!("metric value {v} is not a usable number"),
            };
        }
        Err(why) => return Decision::Hold { reason: why },
    };
    if ready == 0 {
        return Decision::Hold {
            reason: "no ready instance to measure".into(),
        };
    }
    let ratio = value / policy.target;
    let wanted = if (ratio - 1.0).abs() <= policy.tolerance {
        instances
    } else {
        // The small epsilon keeps 4 x 0.75 = 3.0000000000000004 at 3.
        let raw = (f64::from(ready) * ratio - 1e-9).ceil().max(0.0);
        (raw.min(f64::from(policy.max)) as u32).clamp(policy.min, policy.max)
    };
    let window = millis(policy.scale_down_window);
    remember(memory, now_ms, wanted, window);
    let shown = format!(
        "{value:.2} per instance against a target of {}",
        policy.target
    );
    if wanted > instances {
        return Decision::Scale {
            to: wanted,
            reason: format!("{shown}: {ready} ready instance(s) need {wanted}"),
        };
    }
    // The highest count wanted within the window: a dip must last the whole window.
    let stable = memory
        .recommendations
        .iter()
        .map(|&(_, n)| n)
        .max()
        .unwrap_or(wanted);
    if stable < instances {
        if now_ms.saturating_sub(since) < window {
            return Decision::Steady {
                reason: format!(
                    "{shown}: {stable} would do; scale-down waits for {} s of watching",
                    (since + window - now_ms).div_ceil(1000)
                ),
            };
        }
        return Decision::Scale {
            to: stable,
            reason: format!(
                "{shown}: at most {stable} needed over the last {} s",
                window / 1000
            ),
        };
    }
    if wanted < instances {
        return Decision::Steady {
            reason: format!(
                "{shown}: {wanted} would do, but {stable} were needed within the last {} s",
                window / 1000
            ),
        };
    }
    Decision::Steady {
        reason: format!("{shown}: on target"),
    }
}

/// Adds a recommendation and forgets those older than the window.
fn remember(memory: &mut Memory, now_ms: u64, wanted: u32, window_ms: u64) {
    let oldest = now_ms.saturating_sub(window_ms);
    while memory
        .recommendations
        .front()
        .is_some_and(|&(at, _)| at < oldest)
        || memory.recommendations.len() >= MAX_HISTORY
    {
        memory.recommendations.pop_front();
    }
    memory.recommendations.push_back((now_ms, wanted));
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cairn_marathon::autoscale::Metric;

    use super::*;

    fn policy() -> Policy {
        Policy {
            metric: Metric::Rps,
            target: 50.0,
            min: 1,
            max: 10,
            cooldown: Duration::from_secs(10),
            scale_down_window: Duration::from_secs(60),
            tolerance: 0.1,
        }
    }

    fn obs(instances: u32, ready: u32) -> Observed {
        Observed {
            instances,
            ready,
            deploying: false,
        }
    }

    fn scale_to(d: &Decision) -> Option<u32> {
        match d {
            Decision::Scale { to, .. } => Some(*to),
            _ => None,
        }
    }

    /// (instances, ready, value per instance) → the count it scales to at once, if any.
    #[test]
    fn scale_up_follows_the_target_value_rule() {
        let cases = [
            (1, 1, 170.0, Some(4)),     // 170 rps over one: ceil(3.4)
            (4, 4, 42.5, None),         // the same 170 over four: 0.85, but down waits
            (2, 2, 52.0, None),         // 1.04: within the tolerance
            (2, 2, 56.0, Some(3)),      // 1.12: ceil(2.24)
            (3, 3, 50.0, None),         // exactly on target
            (1, 1, 10_000.0, Some(10)), // clamped to max
            (4, 2, 100.0, None),        // 2 ready need 4: already asked for
            (4, 2, 150.0, Some(6)),     // 2 ready need 6
        ];
        for (instances, ready, value, want) in cases {
            let mut m = Memory::default();
            let d = decide(&policy(), &mut m, obs(instances, ready), Ok(value), 0);
            assert_eq!(scale_to(&d), want, "{instances}/{ready} at {value}: {d:?}");
        }
    }

    #[test]
    fn scale_down_waits_for_a_whole_window_of_lower_demand() {
        let p = policy();
        let mut m = Memory::default();
        // Read every 5 s: demand for 4 at t=0 and 5 s, then 1 instance's worth from t=10 s.
        for t in [0, 5] {
            let d = decide(&p, &mut m, obs(4, 4), Ok(50.0), t * 1000);
            assert_eq!(scale_to(&d), None, "t={t}: {d:?}");
        }
        for t in (10..=65).step_by(5) {
            let d = decide(&p, &mut m, obs(4, 4), Ok(10.0), t * 1000);
            assert!(matches!(d, Decision::Steady { .. }), "t={t}: {d:?}");
        }
        // At t=70 s the last reading wanting 4 (t=5 s) has left the 60 s window.
        let d = decide(&p, &mut m, obs(4, 4), Ok(10.0), 70_000);
        assert_eq!(scale_to(&d), Some(1), "{d:?}");
    }

    #[test]
    fn a_new_controller_watches_a_whole_window_before_scaling_down() {
        let p = policy();
        let mut m = Memory::default();
        let d = decide(&p, &mut m, obs(4, 4), Ok(5.0), 1_000_000);
        assert!(
            matches!(d, Decision::Steady { ref reason } if reason.contains("waits")),
            "{d:?}"
        );
        let d = decide(&p, &mut m, obs(4, 4), Ok(5.0), 1_060_000);
        assert_eq!(scale_to(&d), Some(1), "{d:?}");
    }

    #[test]
    fn holds_say_why_and_change_nothing() {
        let p = policy();
        let cases: [(Observed, Result<f64, String>, &str); 4] = [
            (
                Observed {
                    instances: 2,
                    ready: 2,
                    deploying: true,
                },
                Ok(500.0),
                "deployment",
            ),
            (
                obs(2, 2),
                Err("lbconf at http://lb:9101: connection refused".into()),
                "lbconf",
            ),
            (obs(2, 0), Ok(500.0), "no ready instance"),
            (obs(2, 2), Ok(f64::NAN), "not a usable number"),
        ];
        for (o, reading, fragment) in cases {
            let mut m = Memory::default();
            match decide(&p, &mut m, o, reading, 0) {
                Decision::Hold { reason } => assert!(reason.contains(fragment), "{reason}"),
                d => panic!("{o:?}: expected a hold, got {d:?}"),
            }
        }
    }

    #[test]
    fn cooldown_holds_after_a_scale_then_lets_go() {
        let p = policy();
        let mut m = Memory::default();
        assert_eq!(
            scale_to(&decide(&p, &mut m, obs(1, 1), Ok(170.0), 0)),
            Some(4)
        );
        m.scaled(0);
        let d = decide(&p, &mut m, obs(4, 1), Ok(170.0), 9_000);
        assert!(
            matches!(d, Decision::Hold { ref reason } if reason.contains("cooldown")),
            "{d:?}"
        );
        let d = decide(&p, &mut m, obs(4, 4), Ok(60.0), 10_000);
        assert_eq!(scale_to(&d), Some(5), "{d:?}");
    }

    #[test]
    fn counts_outside_min_and_max_are_brought_back_even_without_a_reading() {
        let p = Policy {
            min: 2,
            max: 5,
            ..policy()
        };
        let mut m = Memory::default();
        assert_eq!(
            scale_to(&decide(&p, &mut m, obs(0, 0), Err("no data".into()), 0)),
            Some(2)
        );
        assert_eq!(
            scale_to(&decide(&p, &mut m, obs(9, 9), Err("no data".into()), 0)),
            Some(5)
        );
    }

    #[test]
    fn steady_load_never_flaps() {
        // 170 rps with noise of ±5 % around it, read every 5 s for ten minutes, starting at 4.
        let p = policy();
        let mut m = Memory::default();
        let mut instances = 4;
        let mut scales = 0;
        for i in 0..120u64 {
            let noise = [0.95, 1.0, 1.05, 0.97, 1.03][(i % 5) as usize];
            let per = 170.0 * noise / f64::from(instances);
            if let Decision::Scale { to, .. } =
                decide(&p, &mut m, obs(instances, instances), Ok(per), i * 5000)
            {
                instances = to;
                m.scaled(i * 5000);
                scales += 1;
            }
        }
        assert_eq!((instances, scales), (4, 0));
    }
}
