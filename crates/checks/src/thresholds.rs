//! Response-time thresholds: slower than `warning` is WARNING, slower than `critical` CRITICAL.

use std::time::Duration;

use crate::status::{Perf, Status};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Thresholds {
    pub warning: Option<Duration>,
    pub critical: Option<Duration>,
}

impl Thresholds {
    /// The status an otherwise good answer gets for taking `elapsed`, and why.
    pub fn judge(&self, elapsed: Duration) -> (Status, Option<String>) {
        if let Some(c) = self.critical.filter(|c| elapsed > *c) {
            return (
                Status::Critical,
                Some(format!(
                    "slower than the critical threshold of {:.3} s",
                    c.as_secs_f64()
                )),
            );
        }
        if let Some(w) = self.warning.filter(|w| elapsed > *w) {
            return (
                Status::Warning,
                Some(format!(
                    "slower than the warning threshold of {:.3} s",
                    w.as_secs_f64()
                )),
            );
        }
        (Status::Ok, None)
    }

    pub fn time_perf(&self, elapsed: Duration) -> Perf {
        Perf::time(elapsed, self.warning, self.critical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slower_than_a_threshold_degrades() {
        let t = Thresholds {
            warning: Some(Duration::from_millis(100)),
            critical: Some(Duration::from_millis(500)),
        };
        assert_eq!(t.judge(Duration::from_millis(50)).0, Status::Ok);
        assert_eq!(t.judge(Duration::from_millis(200)).0, Status::Warning);
        assert_eq!(t.judge(Duration::from_millis(600)).0, Status::Critical);
        assert_eq!(
            Thresholds::default().judge(Duration::from_secs(99)).0,
            Status::Ok
        );
    }
}
