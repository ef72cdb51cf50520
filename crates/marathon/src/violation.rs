//! What is wrong with an app definition, in Marathon's 422 form: one [`Violation`] per invalid
//! field (Marathon's detail path, `/healthChecks(0)/protocol`, and its messages) and the
//! [`ValidationError`] that carries them. Every rule of the crate reports through these, so they
//! sit below the modules that hold the rules.

use serde::Serialize;
use serde_json::Value;

/// One invalid field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub path: String,
    pub errors: Vec<String>,
}

impl Violation {
    /// One message about the field at `path`.
    pub(crate) fn new(path: &str, msg: impl Into<String>) -> Violation {
        Violation {
            path: path.into(),
            errors: vec![msg.into()],
        }
    }
}

/// Why a body is not an app.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Not JSON at all (HTTP 400).
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// JSON, but not a valid app (HTTP 422).
    #[error("Object is not valid: {}", describe(.0))]
    Invalid(Vec<Violation>),
}

fn describe(v: &[Violation]) -> String {
    v.iter()
        .map(|v| format!("{}: {}", v.path, v.errors.join("; ")))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ValidationError {
    /// Marathon's error body.
    pub fn body(&self) -> Value {
        match self {
            ValidationError::Syntax(m) => {
                serde_json::json!({ "message": format!("Invalid JSON: {m}") })
            }
            ValidationError::Invalid(details) => serde_json::json!({
                "message": "Object is not valid",
                "details": details,
            }),
        }
    }

    /// The violations (empty for a syntax error).
    pub fn violations(&self) -> &[Violation] {
        match self {
            ValidationError::Syntax(_) => &[],
            ValidationError::Invalid(v) => v,
        }
    }

    /// The same violations with `prefix` in front of every path (`/0` for bulk updates).
    pub fn prefixed(self, prefix: &str) -> Self {
        match self {
            ValidationError::Invalid(v) => ValidationError::Invalid(
                v.into_iter()
                    .map(|mut x| {
                        x.path = format!("{prefix}{}", x.path);
                        x
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Marathon writes array positions as `(n)`: `/healthChecks(0)/protocol` (Metronome too).
pub fn marathon_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("({index})")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('/');
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str("/?"),
        }
    }
    if out.is_empty() { "/".to_string() } else { out }
}
