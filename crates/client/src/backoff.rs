//! Retry delays for a failing watch: exponential from `min` to `max`, with ±25 % jitter so that
//! many clients that lost the same server do not come back in lockstep. The schedule is a pure
//! function of the attempt number and a random draw, so it is tested without sleeping.

use std::time::Duration;

/// An exponential backoff schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub min: Duration,
    /// Largest delay, jitter included.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1 after the first failure) for a random draw `r`
    /// in `[0, 1)`: `min * 2^(attempt-1)` capped at `max`, scaled by `0.75 + r/2`, then kept
    /// within `[min, max]`. Attempt 0 (no failure) waits nothing.
    pub fn delay_with(&self, attempt: u32, r: f64) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let max = self.max.max(self.min);
        let factor = 2u32.saturating_pow((attempt - 1).min(31));
        let base = self.min.saturating_mul(factor).min(max);
        let r = if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.5
        };
        base.mul_f64(0.75 + r / 2.0).clamp(self.min, max)
    }

    /// [`Backoff::delay_with`] with a fresh random draw.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_from_min_to_max() {
        let b = Backoff {
            min: MS(250),
            max: Duration::from_secs(30),
        };
        // r = 0.5 is the unjittered midpoint.
        let mid: Vec<_> = (1..=9).map(|a| b.delay_with(a, 0.5)).collect();
        assert_eq!(
            mid,
            vec![
                MS(250),
                MS(500),
                MS(1000),
                MS(2000),
                MS(4000),
                MS(8000),
                MS(16000),
                MS(30000),
                MS(30000)
            ]
        );
        assert_eq!(b.delay_with(0, 0.5), Duration::ZERO);
        assert_eq!(
            b.delay_with(u32::MAX, 0.5),
            MS(30000),
            "no overflow on long streaks"
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff {
            min: MS(250),
            max: Duration::from_secs(30),
        };
        assert_eq!(b.delay_with(1, 0.0), MS(250), "never below min");
        assert_eq!(b.delay_with(1, 0.999_999).as_millis(), 312);
        assert_eq!(b.delay_with(3, 0.0), MS(750));
        assert_eq!(b.delay_with(3, 1.0), MS(1250));
        assert_eq!(b.delay_with(20, 0.0), MS(22_500), "spread at the cap");
        assert_eq!(b.delay_with(20, 1.0), MS(30_000), "never above max");
        assert_eq!(b.delay_with(2, f64::NAN), MS(500));
        for attempt in 1..40 {
            let d = b.delay(attempt);
            assert!(d >= b.min && d <= b.max, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn max_below_min_means_min() {
        let b = Backoff {
            min: MS(100),
            max: MS(10),
        };
        assert_eq!(b.delay_with(5, 0.9), MS(100));
    }
}
