//! The error type returned when a filter expression cannot be parsed.
//!
//! Every message starts with `filter:` and names the 1-based column (in characters) of the
//! offending token, so it can be returned verbatim in an HTTP 400 body.

/// Why [`Filter::parse`](crate::Filter::parse) rejected an expression.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The expression was empty or only whitespace.
    #[error("filter: the expression is empty")]
    Empty,

    /// A token other than the one the grammar needs at this point.
    #[error("filter: expected {expected} at column {column}, found {found}")]
    Expected {
        /// What the grammar needed, e.g. `a value after '=='`.
        expected: String,
        /// What was there instead, e.g. `end of input` or `')'`.
        found: String,
        /// 1-based character column of the unexpected token.
        column: usize,
    },

    /// A `"` or `` ` `` string with no closing quote.
    #[error("filter: unterminated string starting at column {column}")]
    UnterminatedString {
        /// 1-based character column of the opening quote.
        column: usize,
    },

    /// A malformed `\x`, `\u`, `\U` or octal escape in a double-quoted string.
    #[error("filter: invalid escape sequence '{sequence}' at column {column}")]
    InvalidEscape {
        /// The escape as written (as much of it as was present).
        sequence: String,
        /// 1-based character column of the backslash.
        column: usize,
    },

    /// A selector segment that is not a field name, e.g. `Service.Meta.a:b`.
    #[error("filter: invalid selector '{selector}' at column {column}: {reason}")]
    InvalidSelector {
        /// The selector as written.
        selector: String,
        /// 1-based character column of the bad segment.
        column: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// The value of a `matches` / `not matches` is not a valid regular expression.
    #[error("filter: invalid regex {regex:?} at column {column}: {error}")]
    InvalidRegex {
        /// The regular expression as given.
        regex: String,
        /// 1-based character column of the value.
        column: usize,
        /// What the `regex` crate reported.
        error: regex::Error,
    },

    /// Parentheses or `not`s nested deeper than the parser allows.
    #[error("filter: expression nested too deeply at column {column} (limit {limit})")]
    TooDeep {
        /// 1-based character column where the limit was exceeded.
        column: usize,
        /// The nesting limit.
        limit: usize,
    },
}
