//! Query parameters, decoded once and read by accessors named for the rule each follows, so that
//! catalogd (Consul's rules), offerd (Marathon's) and taskrun read a query string alike:
//!
//! - [`QueryParams::present`]: Consul's flags (`?recurse`, `?recurse=1`, `?keys=True`): the
//!   parameter counts when present, whatever its value;
//! - [`QueryParams::last_is_true`]: Marathon's flags (`?force`, `?force=true|True|1`): the last
//!   value says yes or no, and anything else is no;
//! - [`QueryParams::first`] / [`QueryParams::last`] / [`QueryParams::all`]: raw values (Go's
//!   `url.Values.Get` reads the first; offerd has always let the last win);
//! - [`QueryParams::u64`] and [`QueryParams::bool`]: typed values (the first one), where a value
//!   that does not parse is a [`ParamError`] naming the parameter. Each daemon maps that error to
//!   its own HTTP error (400).
//!
//! A handler takes a `QueryParams` argument (an axum extractor that cannot fail). Decoding is
//! `application/x-www-form-urlencoded` (`+` is a space, percent-escapes decoded,
//! invalid UTF-8 replaced), as Go's and Java's servers decode a query string.

/// A query parameter whose value does not parse; the text names the parameter and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("query parameter {name}: {value:?} is not an unsigned integer")]
    NotUnsigned { name: String, value: String },
    #[error("query parameter {name}: {value:?} is not a boolean (true, false, 1 or 0)")]
    NotBool { name: String, value: String },
}

/// A decoded query string: its `name=value` pairs in the order given (a name may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Decodes a raw query string (the part after `?`; `None` is an empty query).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|r| {
                url::form_urlencoded::parse(r.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        QueryParams { pairs }
    }

    /// Consul's flag rule: true when the parameter is present, whatever its value.
    pub fn present(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// Marathon's flag rule: true when the last value is empty (`?force`), `true` in any case or
    /// `1`; absent or any other value is false.
    pub fn last_is_true(&self, name: &str) -> bool {
        self.last(name)
            .is_some_and(|v| v.is_empty() || v.eq_ignore_ascii_case("true") || v == "1")
    }

    /// The first value of a parameter (Go's `url.Values.Get`).
    pub fn first(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of a parameter.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a parameter, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An unsigned integer (the first value, surrounding blanks ignored). Absent or empty is
    /// `None`, as Consul reads `?index=`; anything else that is not a number is an error.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, ParamError> {
        match self.first(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ParamError::NotUnsigned {
                name: name.to_string(),
                value: v.to_string(),
            }),
        }
    }

    /// A strict boolean (the first value): `true` or `1`, `false` or `0` (any case), and an
    /// empty value (`?follow`) is true; absent is `None`; anything else is an error.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ParamError> {
        let Some(v) = self.first(name) else {
            return Ok(None);
        };
        if v.is_empty() || v == "1" || v.eq_ignore_ascii_case("true") {
            Ok(Some(true))
        } else if v == "0" || v.eq_ignore_ascii_case("false") {
            Ok(Some(false))
        } else {
            Err(ParamError::NotBool {
                name: name.to_string(),
                value: v.to_string(),
            })
        }
    }
}

/// A handler takes the query as an argument; decoding cannot fail (bad escapes are replaced).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(QueryParams::parse(parts.uri.query()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> QueryParams {
        QueryParams::parse(Some(raw))
    }

    #[test]
    fn decoding() {
        // (raw query, expected pairs)
        let table: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("a", &[("a", "")]),
            ("a=", &[("a", "")]),
            ("a=1&b=2", &[("a", "1"), ("b", "2")]),
            ("a=1&a=2", &[("a", "1"), ("a", "2")]),
            ("k=a+b%2Fc", &[("k", "a b/c")]),
            ("%6Ee=v", &[("ne", "v")]),
            ("x=%FF", &[("x", "\u{FFFD}")]),
            ("&&a=1&", &[("a", "1")]),
            ("a=b=c", &[("a", "b=c")]),
        ];
        for (raw, pairs) in table {
            let want: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(q(raw).pairs, want, "{raw:?}");
        }
        assert_eq!(QueryParams::parse(None), QueryParams::default());
    }

    #[test]
    fn raw_values_and_flags() {
        // (raw query, present, last_is_true, first, last, all) for the parameter `f`
        type Row<'a> = (
            &'a str,
            bool,
            bool,
            Option<&'a str>,
            Option<&'a str>,
            &'a [&'a str],
        );
        let table: &[Row] = &[
            ("", false, false, None, None, &[]),
            ("g=1", false, false, None, None, &[]),
            ("f", true, true, Some(""), Some(""), &[""]),
            ("f=", true, true, Some(""), Some(""), &[""]),
            ("f=true", true, true, Some("true"), Some("true"), &["true"]),
            ("f=True", true, true, Some("True"), Some("True"), &["True"]),
            ("f=TRUE", true, true, Some("TRUE"), Some("TRUE"), &["TRUE"]),
            ("f=1", true, true, Some("1"), Some("1"), &["1"]),
            (
                "f=false",
                true,
                false,
                Some("false"),
                Some("false"),
                &["false"],
            ),
            ("f=0", true, false, Some("0"), Some("0"), &["0"]),
            ("f=yes", true, false, Some("yes"), Some("yes"), &["yes"]),
            ("f=1&f=0", true, false, Some("1"), Some("0"), &["1", "0"]),
            (
                "f=0&g=x&f=true",
                true,
                true,
                Some("0"),
                Some("true"),
                &["0", "true"],
            ),
            ("ff=1&F=1", false, false, None, None, &[]),
        ];
        for &(raw, present, last_is_true, first, last, all) in table {
            let p = q(raw);
            assert_eq!(p.present("f"), present, "present {raw:?}");
            assert_eq!(p.last_is_true("f"), last_is_true, "last_is_true {raw:?}");
            assert_eq!(p.first("f"), first, "first {raw:?}");
            assert_eq!(p.last("f"), last, "last {raw:?}");
            assert_eq!(p.all("f").collect::<Vec<_>>(), all, "all {raw:?}");
        }
    }

    #[test]
    fn unsigned_integers() {
        let bad = |v: &str| {
            Err(ParamError::NotUnsigned {
                name: "n".into(),
                value: v.into(),
            })
        };
        let table: &[(&str, Result<Option<u64>, ParamError>)] = &[
            ("", Ok(None)),
            ("n", Ok(None)),
            ("n=", Ok(None)),
            ("n=0", Ok(Some(0))),
            ("n=42", Ok(Some(42))),
            ("n=+42", Ok(Some(42))),
            ("n=%2042%20", Ok(Some(42))),
            ("n=18446744073709551615", Ok(Some(u64::MAX))),
            ("n=18446744073709551616", bad("18446744073709551616")),
            ("n=-1", bad("-1")),
            ("n=1.5", bad("1.5")),
            ("n=ten", bad("ten")),
            ("n=7&n=x", Ok(Some(7))),
            ("n=x&n=7", bad("x")),
        ];
        for (raw, want) in table {
            assert_eq!(&q(raw).u64("n"), want, "{raw:?}");
        }
        assert_eq!(
            q("index=abc").u64("index").unwrap_err().to_string(),
            r#"query parameter index: "abc" is not an unsigned integer"#
        );
    }

    #[test]
    fn booleans() {
        let bad = |v: &str| {
            Err(ParamError::NotBool {
                name: "b".into(),
                value: v.into(),
            })
        };
        let table: &[(&str, Result<Option<bool>, ParamError>)] = &[
            ("", Ok(None)),
            ("c=true", Ok(None)),
            ("b", Ok(Some(true))),
            ("b=", Ok(Some(true))),
            ("b=true", Ok(Some(true))),
            ("b=True", Ok(Some(true))),
            ("b=1", Ok(Some(true))),
            ("b=false", Ok(Some(false))),
            ("b=FALSE", Ok(Some(false))),
            ("b=0", Ok(Some(false))),
            ("b=yes", bad("yes")),
            ("b=t", bad("t")),
            ("b=2", bad("2")),
            ("b=%20true", bad(" true")),
            ("b=false&b=true", Ok(Some(false))),
        ];
        for (raw, want) in table {
            assert_eq!(&q(raw).bool("b"), want, "{raw:?}");
        }
        assert_eq!(
            q("follow=maybe").bool("follow").unwrap_err().to_string(),
            r#"query parameter follow: "maybe" is not a boolean (true, false, 1 or 0)"#
        );
    }
}
