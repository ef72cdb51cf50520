//! Syntax tree of a parsed filter, and its canonical (fully parenthesized) rendering.
//!
//! The tree is normalized while parsing: `in`/`contains` become [`Test::Contains`], and each
//! negated operator (`!=`, `not in`, `not contains`, `not matches`, `is empty`) is stored as its
//! positive test with `negated` set, because it is evaluated as `not (positive test)`.

use std::fmt;

use regex::Regex;

/// A boolean expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// True if any operand is true (two or more operands).
    Or(Vec<Expr>),
    /// True if every operand is true (two or more operands).
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

/// One `selector op value` comparison.
#[derive(Debug, Clone)]
pub(crate) struct Match {
    pub(crate) selector: Selector,
    pub(crate) test: Test,
    /// Evaluate as the negation of `test`.
    pub(crate) negated: bool,
}

/// The positive form of a match operator.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// `==` (negated: `!=`).
    Equal(String),
    /// `contains` / `in` (negated: `not contains` / `not in`).
    Contains(String),
    /// `matches` (negated: `not matches`).
    Matches(Regex),
    /// `is not empty` (negated: `is empty`).
    NotEmpty,
}

/// A path of field names / map keys / array indexes, e.g. `Service.Meta["env"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector(pub(crate) Vec<String>);

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            let plain = segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
                && segment
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || i > 0);
            match (plain, i) {
                (true, 0) => write!(f, "{segment}")?,
                (true, _) => write!(f, ".{segment}")?,
                (false, _) => write!(f, "[{segment:?}]")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sel = &self.selector;
        let not = if self.negated { "not " } else { "" };
        match &self.test {
            Test::Equal(v) if self.negated => write!(f, "{sel} != {v:?}"),
            Test::Equal(v) => write!(f, "{sel} == {v:?}"),
            Test::Contains(v) => write!(f, "{sel} {not}contains {v:?}"),
            Test::Matches(re) => write!(f, "{sel} {not}matches {:?}", re.as_str()),
            Test::NotEmpty if self.negated => write!(f, "{sel} is empty"),
            Test::NotEmpty => write!(f, "{sel} is not empty"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[Expr], op: &str| {
            write!(f, "(")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{item}")?;
            }
            write!(f, ")")
        };
        match self {
            Expr::Or(items) => join(f, items, "or"),
            Expr::And(items) => join(f, items, "and"),
            Expr::Not(inner) => write!(f, "not {inner}"),
            Expr::Match(m) => write!(f, "{m}"),
        }
    }
}
