//! Where in a body a serde error is, written as Metronome (and Marathon) write JSON paths:
//! `/run/placement/constraints(0)/operator`. serde names a missing field only in its message
//! (the path is the object that lacks it), so the field is appended: `/run`, not `/`.

use cairn_marathon::{ValidationError, Violation};

/// The 422 for a body that did not deserialize.
pub(crate) fn serde_error(e: serde_path_to_error::Error<serde_json::Error>) -> ValidationError {
    let message = e.inner().to_string();
    let mut path = cairn_marathon::marathon_path(e.path());
    if let Some(field) = missing_field(&message) {
        if path == "/" {
            path.clear();
        }
        path.push('/');
        path.push_str(field);
    }
    invalid(&path, message)
}

/// One violation as an error.
pub(crate) fn invalid(path: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::Invalid(vec![violation(path, message)])
}

pub(crate) fn violation(path: &str, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_string(),
        errors: vec![message.into()],
    }
}

/// Collects violations, one entry per path (as Marathon's 422 lists them).
#[derive(Default)]
pub(crate) struct Violations(Vec<Violation>);

impl Violations {
    pub(crate) fn add(&mut self, path: &str, message: impl Into<String>) {
        let message = message.into();
        match self.0.iter_mut().find(|v| v.path == path) {
            Some(v) => v.errors.push(message),
            None => self.0.push(violation(path, message)),
        }
    }

    pub(crate) fn extend(&mut self, other: Vec<Violation>) {
        for v in other {
            for e in v.errors {
                self.add(&v.path, e);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<Violation> {
        self.0
    }

    pub(crate) fn into_result<T>(self, ok: T) -> Result<T, ValidationError> {
        if self.0.is_empty() {
            Ok(ok)
        } else {
            Err(ValidationError::Invalid(self.0))
        }
    }
}

/// serde's "missing field `run`" → `run`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}
