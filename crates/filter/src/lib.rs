//! `cairn-filter`: Consul's `?filter=` expression language (HashiCorp go-bexpr) evaluated over
//! the `serde_json::Value` items an endpoint returns.
//!
//! ```
//! use cairn_filter::Filter;
//!
//! let filter = Filter::parse(r#"Service.Service == web and "prod" in Service.Tags"#)?;
//! let entry = serde_json::json!({"Service": {"Service": "web", "Tags": ["prod"]}});
//! assert!(filter.matches(&entry));
//! # Ok::<(), cairn_filter::FilterError>(())
//! ```
//!
//! This file owns the public API; `lexer`, `parser` and `eval` do the work.

mod ast;
mod error;
mod eval;
mod lexer;
mod parser;

use std::fmt;

pub use error::FilterError;

/// A parsed filter expression, ready to test items with [`Filter::matches`].
#[derive(Debug, Clone)]
pub struct Filter {
    expr: ast::Expr,
}

impl Filter {
    /// Parses a go-bexpr expression such as `Service.Meta.env == prod and not (Port == 80)`.
    ///
    /// Regular expressions (`matches`) are compiled here, so evaluation cannot fail.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        Ok(Filter {
            expr: parser::parse(expr)?,
        })
    }

    /// Whether `item` satisfies the expression.
    pub fn matches(&self, item: &serde_json::Value) -> bool {
        eval::eval(&self.expr, item)
    }
}

/// Renders the normalized expression, fully parenthesized with every value quoted, e.g.
/// `(Service.Tags contains "prod" and Port != "80")`.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}
