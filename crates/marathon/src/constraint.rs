//! Marathon placement constraints: `["hostname", "UNIQUE"]`, `["rack", "GROUP_BY", "3"]`,
//! `["zone", "LIKE", "z[12]"]`. They travel as JSON arrays of strings, as in Marathon's app JSON;
//! this module checks their shape, the scheduler in offerd evaluates them.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A constraint operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    Unique,
    Cluster,
    GroupBy,
    Like,
    Unlike,
    MaxPer,
    Is,
}

impl Operator {
    pub const ALL: [Operator; 7] = [
        Operator::Unique,
        Operator::Cluster,
        Operator::GroupBy,
        Operator::Like,
        Operator::Unlike,
        Operator::MaxPer,
        Operator::Is,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Unique => "UNIQUE",
            Operator::Cluster => "CLUSTER",
            Operator::GroupBy => "GROUP_BY",
            Operator::Like => "LIKE",
            Operator::Unlike => "UNLIKE",
            Operator::MaxPer => "MAX_PER",
            Operator::Is => "IS",
        }
    }

    pub fn parse(s: &str) -> Option<Operator> {
        Operator::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One constraint: a field (`hostname` or an agent attribute), an operator and maybe a value.
/// Deserializing checks only the array shape and the operator; value rules are in validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub field: String,
    pub operator: Operator,
    pub value: Option<String>,
}

/// Marathon's colon form: `hostname:UNIQUE`, `rack:LIKE:r[12]`.
impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.field, self.operator)?;
        match &self.value {
            Some(v) => write!(f, ":{v}"),
            None => Ok(()),
        }
    }
}

impl Constraint {
    /// `hostname` and `@hostname` both mean the agent's node name.
    pub fn is_hostname(&self) -> bool {
        self.field == "hostname" || self.field == "@hostname"
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = vec![self.field.as_str(), self.operator.as_str()];
        if let Some(value) = &self.value {
            v.push(value);
        }
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parts = Vec::<String>::deserialize(d)?;
        if !(2..=3).contains(&parts.len()) {
            return Err(D::Error::custom(
                "a constraint is [field, operator] or [field, operator, value]",
            ));
        }
        let operator = Operator::parse(&parts[1]).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown constraint operator {:?} (known: UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS)",
                parts[1]
            ))
        })?;
        if parts[0].is_empty() {
            return Err(D::Error::custom("constraint field must not be empty"));
        }
        let mut parts = parts.into_iter();
        let field = parts.next().unwrap_or_default();
        parts.next();
        Ok(Constraint {
            field,
            operator,
            value: parts.next(),
        })
    }
}
