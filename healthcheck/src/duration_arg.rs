//! The duration flags' dialect: a bare number is seconds (Nagios style), anything else a Go
//! duration.

/// `1.5` means seconds (Nagios style); anything else is a Go duration (`500ms`, `2m`).
pub fn seconds_or_duration(s: &str) -> String {
    let t = s.trim();
    if !t.is_empty() && t.parse::<f64>().is_ok() {
        format!("{t}s")
    } else {
        t.to_string()
    }
}
