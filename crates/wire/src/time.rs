//! Times as Consul's JSON writes them (Go's `time.Time`): RFC 3339 in UTC.

use std::time::SystemTime;

/// RFC 3339 with whole seconds (`2026-12-06T08:00:00Z`); empty for a clock outside years
/// 1..9999, which has no such form.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| format!("{t:.0}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn whole_seconds_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_255_200_999);
        assert_eq!(rfc3339_seconds(t), "2026-11-21T10:00:00Z");
    }
}
