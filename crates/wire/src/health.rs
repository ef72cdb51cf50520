//! Check statuses and their aggregation (critical > warning > passing), exactly Consul's strings.

use serde::{Deserialize, Serialize};

/// A check's status. `maintenance` only appears in aggregation and in maintenance-mode checks.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    #[default]
    Critical,
    Maintenance,
}

/// A status string that is none of Consul's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown check status {0:?}: expected passing, warning or critical")]
pub struct UnknownStatus(pub String);

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
            CheckStatus::Maintenance => "maintenance",
        }
    }

    /// Severity rank used by aggregation.
    fn rank(self) -> u8 {
        match self {
            CheckStatus::Passing => 0,
            CheckStatus::Warning => 1,
            CheckStatus::Critical => 2,
            CheckStatus::Maintenance => 3,
        }
    }
}

impl std::str::FromStr for CheckStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "passing" => Ok(CheckStatus::Passing),
            "warning" => Ok(CheckStatus::Warning),
            "critical" => Ok(CheckStatus::Critical),
            "maintenance" => Ok(CheckStatus::Maintenance),
            other => Err(UnknownStatus(other.to_string())),
        }
    }
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Worst status of a set of checks; no checks at all counts as passing, as in Consul.
pub fn aggregate_status(statuses: impl IntoIterator<Item = CheckStatus>) -> CheckStatus {
    statuses
        .into_iter()
        .max_by_key(|s| s.rank())
        .unwrap_or(CheckStatus::Passing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_wins() {
        use CheckStatus::*;
        assert_eq!(aggregate_status([]), Passing);
        assert_eq!(aggregate_status([Passing, Warning]), Warning);
        assert_eq!(aggregate_status([Warning, Critical, Passing]), Critical);
        assert_eq!(aggregate_status([Critical, Maintenance]), Maintenance);
        assert!("ok".parse::<CheckStatus>().is_err());
    }
}
