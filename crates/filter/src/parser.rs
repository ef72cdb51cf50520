//! Recursive-descent parser for the go-bexpr grammar, producing an [`Expr`].
//!
//! ```text
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | "(" or ")" | match
//! match   := selector ("==" | "!=" | ["not"] "contains" | ["not"] "matches") value
//!          | selector "is" ["not"] "empty"
//!          | value ["not"] "in" selector
//! selector:= ident ("." (ident | digits) | ["."] "[" string "]")*
//! value   := string | bare word (`web`, `80`, `-1.5`, `true`, `v1.2`)
//! ```
//!
//! Keywords are lowercase and case-sensitive. Both sides of an operator are first read as a
//! generic [`Term`]; the operator then decides which side is the selector and which the value.

use regex::Regex;

use crate::ast::{Expr, Match, Selector, Test};
use crate::error::FilterError;
use crate::lexer::{Token, TokenKind, tokenize};

/// Maximum nesting of parentheses and `not`s, so hostile input cannot overflow the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// The operators, for "expected an operator" messages.
const OPERATORS: &str = "an operator (==, !=, in, not in, contains, not contains, matches, \
                         not matches, is empty, is not empty)";

/// Parses a whole filter expression.
pub(crate) fn parse(input: &str) -> Result<Expr, FilterError> {
    let tokens = tokenize(input)?;
    if tokens.first().is_none_or(|t| t.kind == TokenKind::End) {
        return Err(FilterError::Empty);
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = parser.parse_or("an expression")?;
    if parser.peek().kind != TokenKind::End {
        return Err(parser.expected("'and', 'or' or end of input"));
    }
    Ok(expr)
}

/// One segment of a bare term, remembering where it was written.
#[derive(Debug)]
struct Segment {
    name: String,
    column: usize,
    /// Written as `["name"]`, so any characters are allowed.
    bracketed: bool,
}

/// One side of a match expression before the operator says whether it is a selector or a value.
#[derive(Debug)]
enum Term {
    Quoted {
        text: String,
        column: usize,
    },
    Bare {
        segments: Vec<Segment>,
        /// The term as written, e.g. `Service.Meta["env"]` or `1.5`.
        raw: String,
        /// Column of the first `[`, if any.
        bracket: Option<usize>,
    },
}

impl Term {
    fn describe(&self) -> String {
        match self {
            Term::Quoted { text, .. } => format!("string {text:?}"),
            Term::Bare { raw, .. } => format!("'{raw}'"),
        }
    }

    /// Uses the term as a selector; `role` says where, e.g. `before '=='`.
    fn into_selector(self, role: &str) -> Result<Selector, FilterError> {
        let (segments, raw) = match self {
            Term::Quoted { ref text, column } => {
                return Err(FilterError::Expected {
                    expected: format!("a selector {role}"),
                    found: format!("string {text:?}"),
                    column,
                });
            }
            Term::Bare { segments, raw, .. } => (segments, raw),
        };
        for (i, segment) in segments.iter().enumerate() {
            if segment.bracketed {
                continue;
            }
            let reason = if i == 0 {
                (!is_identifier(&segment.name)).then(|| {
                    format!(
                        "a selector must start with a field name, not '{}'",
                        segment.name
                    )
                })
            } else {
                (!is_identifier(&segment.name) && !is_index(&segment.name)).then(|| {
                    format!(
                        "'{0}' is not a field name; write keys like this as [\"{0}\"]",
                        segment.name
                    )
                })
            };
            if let Some(reason) = reason {
                return Err(FilterError::InvalidSelector {
                    selector: raw,
                    column: segment.column,
                    reason,
                });
            }
        }
        Ok(Selector(segments.into_iter().map(|s| s.name).collect()))
    }

    /// Uses the term as a value; `expected` names it for errors, e.g. `a value after '=='`.
    fn into_value(self, expected: &str) -> Result<String, FilterError> {
        match self {
            Term::Quoted { text, .. } => Ok(text),
            Term::Bare {
                bracket: Some(column),
                ..
            } => Err(FilterError::Expected {
                expected: format!("{expected} (quote values that contain '[')"),
                found: "'['".to_owned(),
                column,
            }),
            Term::Bare { raw, .. } => Ok(raw),
        }
    }
}

/// `[A-Za-z_][A-Za-z0-9_/-]*`
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '-'))
}

/// `[0-9]+`, an array index.
fn is_index(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_digit())
}

struct Parser {
    /// Never empty; the last token is [`TokenKind::End`].
    tokens: Vec<Token>,
    /// Index of the next token; never past the `End` token.
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.pos.min(last)]
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::End {
            self.pos += 1;
        }
        token
    }

    fn at_word(&self, word: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Word(w) if w == word)
    }

    /// An error saying the next token is not `expected`.
    fn expected(&self, expected: impl Into<String>) -> FilterError {
        let token = self.peek();
        FilterError::Expected {
            expected: expected.into(),
            found: token.describe(),
            column: token.column,
        }
    }

    /// Consumes the keyword `word` or fails with `expected`.
    fn keyword(&mut self, word: &str, expected: &str) -> Result<(), FilterError> {
        if !self.at_word(word) {
            return Err(self.expected(expected));
        }
        self.bump();
        Ok(())
    }

    fn nest(&mut self, column: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::TooDeep {
                column,
                limit: MAX_DEPTH,
            });
        }
        Ok(())
    }

    fn parse_or(&mut self, what: &str) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_and(what)?];
        while self.at_word("or") {
            self.bump();
            items.push(self.parse_and("an expression after 'or'")?);
        }
        Ok(flatten(items, Expr::Or))
    }

    fn parse_and(&mut self, what: &str) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_not(what)?];
        while self.at_word("and") {
            self.bump();
            items.push(self.parse_not("an expression after 'and'")?);
        }
        Ok(flatten(items, Expr::And))
    }

    fn parse_not(&mut self, what: &str) -> Result<Expr, FilterError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Word(w) if w == "not" => {
                self.bump();
                self.nest(token.column)?;
                let inner = self.parse_not("an expression after 'not'")?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            TokenKind::LParen => {
                self.bump();
                self.nest(token.column)?;
                let inner = self.parse_or("an expression after '('")?;
                if self.peek().kind != TokenKind::RParen {
                    return Err(
                        self.expected(format!("')' to close the '(' from column {}", token.column))
                    );
                }
                self.bump();
                self.depth -= 1;
                Ok(inner)
            }
            _ => self.parse_match(what).map(Expr::Match),
        }
    }

    fn parse_match(&mut self, what: &str) -> Result<Match, FilterError> {
        let first = self.parse_term(what)?;
        let op = self.peek().clone();
        let (selector, test, negated) = match &op.kind {
            TokenKind::Equal | TokenKind::NotEqual => {
                self.bump();
                let symbol = op.describe();
                let selector = first.into_selector(&format!("before {symbol}"))?;
                let value = self.parse_value(&format!("a value after {symbol}"))?;
                (selector, Test::Equal(value), op.kind == TokenKind::NotEqual)
            }
            TokenKind::Word(w) if w == "contains" || w == "matches" => {
                self.bump();
                let (test, _) = self.selector_op_value(w, false)?;
                (first.into_selector(&format!("before '{w}'"))?, test, false)
            }
            TokenKind::Word(w) if w == "is" => {
                self.bump();
                let selector = first.into_selector("before 'is'")?;
                if self.at_word("not") {
                    self.bump();
                    self.keyword("empty", "'empty' after 'is not'")?;
                    (selector, Test::NotEmpty, false)
                } else {
                    self.keyword("empty", "'empty' or 'not empty' after 'is'")?;
                    (selector, Test::NotEmpty, true)
                }
            }
            TokenKind::Word(w) if w == "in" => {
                self.bump();
                let value = first.into_value("a value before 'in'")?;
                let selector = self.parse_selector("'in'")?;
                (selector, Test::Contains(value), false)
            }
            TokenKind::Word(w) if w == "not" => {
                self.bump();
                let next = self.peek().clone();
                match &next.kind {
                    TokenKind::Word(w) if w == "in" => {
                        self.bump();
                        let value = first.into_value("a value before 'not in'")?;
                        let selector = self.parse_selector("'not in'")?;
                        (selector, Test::Contains(value), true)
                    }
                    TokenKind::Word(w) if w == "contains" || w == "matches" => {
                        self.bump();
                        let (test, op) = self.selector_op_value(w, true)?;
                        (first.into_selector(&format!("before '{op}'"))?, test, true)
                    }
                    _ => {
                        return Err(self.expected("'in', 'contains' or 'matches' after 'not'"));
                    }
                }
            }
            _ => {
                return Err(self.expected(format!("{OPERATORS} after {}", first.describe())));
            }
        };
        Ok(Match {
            selector,
            test,
            negated,
        })
    }

    /// Parses the value after `contains` / `matches` (already consumed); returns the test and
    /// the operator as written.
    fn selector_op_value(
        &mut self,
        word: &str,
        negated: bool,
    ) -> Result<(Test, String), FilterError> {
        let op = if negated {
            format!("not {word}")
        } else {
            word.to_owned()
        };
        let column = self.peek().column;
        let value = self.parse_value(&format!("a value after '{op}'"))?;
        let test = if word == "matches" {
            let regex = Regex::new(&value).map_err(|error| FilterError::InvalidRegex {
                regex: value.clone(),
                column,
                error,
            })?;
            Test::Matches(regex)
        } else {
            Test::Contains(value)
        };
        Ok((test, op))
    }

    fn parse_value(&mut self, expected: &str) -> Result<String, FilterError> {
        self.parse_term(expected)?.into_value(expected)
    }

    /// Parses the selector after `op` (e.g. `'in'`).
    fn parse_selector(&mut self, op: &str) -> Result<Selector, FilterError> {
        self.parse_term(&format!("a selector after {op}"))?
            .into_selector(&format!("after {op}"))
    }

    /// Reads a quoted string, or a bare word with any directly attached `.x` / `["k"]` parts.
    fn parse_term(&mut self, expected: &str) -> Result<Term, FilterError> {
        let token = self.peek().clone();
        let first = match token.kind {
            TokenKind::Str(text) => {
                self.bump();
                return Ok(Term::Quoted {
                    text,
                    column: token.column,
                });
            }
            TokenKind::Word(word) => word,
            _ => return Err(self.expected(expected)),
        };
        self.bump();
        let mut raw = first.clone();
        let mut segments = vec![Segment {
            name: first,
            column: token.column,
            bracketed: false,
        }];
        let mut bracket = None;
        loop {
            let next = self.peek().clone();
            if next.space_before {
                break;
            }
            match next.kind {
                TokenKind::Dot => {
                    self.bump();
                    raw.push('.');
                    let after = self.peek().clone();
                    match after.kind {
                        TokenKind::Word(word) if !after.space_before => {
                            self.bump();
                            raw.push_str(&word);
                            segments.push(Segment {
                                name: word,
                                column: after.column,
                                bracketed: false,
                            });
                        }
                        TokenKind::LBracket if !after.space_before => {}
                        _ => return Err(self.expected("a field name or '[' after '.'")),
                    }
                }
                TokenKind::LBracket => {
                    self.bump();
                    bracket.get_or_insert(next.column);
                    let key = self.peek().clone();
                    let TokenKind::Str(name) = key.kind else {
                        return Err(self.expected("a quoted key after '['"));
                    };
                    self.bump();
                    if self.peek().kind != TokenKind::RBracket {
                        return Err(self.expected(format!(
                            "']' to close the '[' from column {}",
                            next.column
                        )));
                    }
                    self.bump();
                    raw.push_str(&format!("[{name:?}]"));
                    segments.push(Segment {
                        name,
                        column: key.column,
                        bracketed: true,
                    });
                }
                _ => break,
            }
        }
        Ok(Term::Bare {
            segments,
            raw,
            bracket,
        })
    }
}

/// One operand stays as is; more become an `Or` / `And` node.
fn flatten(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1
        && let Some(only) = items.pop()
    {
        return only;
    }
    make(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical rendering of a successful parse.
    fn canon(input: &str) -> String {
        match parse(input) {
            Ok(expr) => expr.to_string(),
            Err(err) => panic!("parse({input:?}) failed: {err}"),
        }
    }

    fn err(input: &str) -> String {
        match parse(input) {
            Ok(expr) => panic!("parse({input:?}) unexpectedly gave {expr}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn every_match_operator() {
        assert_eq!(canon("a == b"), r#"a == "b""#);
        assert_eq!(canon("a != b"), r#"a != "b""#);
        assert_eq!(canon("b in a"), r#"a contains "b""#);
        assert_eq!(canon("b not in a"), r#"a not contains "b""#);
        assert_eq!(canon("a contains b"), r#"a contains "b""#);
        assert_eq!(canon("a not contains b"), r#"a not contains "b""#);
        assert_eq!(canon("a matches b"), r#"a matches "b""#);
        assert_eq!(canon("a not matches b"), r#"a not matches "b""#);
        assert_eq!(canon("a is empty"), "a is empty");
        assert_eq!(canon("a is not empty"), "a is not empty");
    }

    #[test]
    fn equality_needs_no_spaces() {
        assert_eq!(canon("a==b"), r#"a == "b""#);
        assert_eq!(canon("a!=\"b\""), r#"a != "b""#);
        assert_eq!(canon("Service.Port==80"), r#"Service.Port == "80""#);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            canon("a == 1 or b == 2 and c == 3"),
            r#"(a == "1" or (b == "2" and c == "3"))"#
        );
        assert_eq!(
            canon("a == 1 and b == 2 or c == 3"),
            r#"((a == "1" and b == "2") or c == "3")"#
        );
    }

    #[test]
    fn not_binds_tighter_than_and() {
        assert_eq!(
            canon("not a == 1 and b == 2"),
            r#"(not a == "1" and b == "2")"#
        );
        assert_eq!(canon("not not a == 1"), r#"not not a == "1""#);
    }

    #[test]
    fn parentheses_group() {
        assert_eq!(
            canon("(a == 1 or b == 2) and c == 3"),
            r#"((a == "1" or b == "2") and c == "3")"#
        );
        assert_eq!(
            canon("not (a == 1 or b == 2)"),
            r#"not (a == "1" or b == "2")"#
        );
        assert_eq!(canon("not(a == 1)"), r#"not a == "1""#);
        assert_eq!(canon("((( a == 1 )))"), r#"a == "1""#);
    }

    #[test]
    fn chains_are_flattened() {
        assert_eq!(
            canon("a == 1 or b == 2 or c == 3"),
            r#"(a == "1" or b == "2" or c == "3")"#
        );
        assert_eq!(
            canon("a == 1 and b == 2 and c == 3"),
            r#"(a == "1" and b == "2" and c == "3")"#
        );
    }

    #[test]
    fn value_quoting_styles() {
        assert_eq!(canon(r#"a == "x y""#), r#"a == "x y""#);
        assert_eq!(canon(r#"a == "say \"hi\"""#), r#"a == "say \"hi\"""#);
        assert_eq!(canon(r"a == `C:\dir`"), r#"a == "C:\\dir""#);
        assert_eq!(canon("a == -1"), r#"a == "-1""#);
        assert_eq!(canon("a == 1.5"), r#"a == "1.5""#);
        assert_eq!(canon("a == v1.2.3"), r#"a == "v1.2.3""#);
        assert_eq!(canon("a == 10.0.0.1"), r#"a == "10.0.0.1""#);
        assert_eq!(canon("a == true"), r#"a == "true""#);
        assert_eq!(canon("a == web:v1"), r#"a == "web:v1""#);
        assert_eq!(canon(r#""x y" in a"#), r#"a contains "x y""#);
    }

    #[test]
    fn selector_forms() {
        assert_eq!(canon("Service.Meta.env == x"), r#"Service.Meta.env == "x""#);
        assert_eq!(
            canon(r#"Service.Meta["some key"] == x"#),
            r#"Service.Meta["some key"] == "x""#
        );
        assert_eq!(canon(r#"Meta.["x"] == y"#), r#"Meta.x == "y""#);
        assert_eq!(canon(r#"Meta[ "a" ].b == y"#), r#"Meta.a.b == "y""#);
        assert_eq!(
            canon(r#"Meta["a"]["b c"] is empty"#),
            r#"Meta.a["b c"] is empty"#
        );
        assert_eq!(canon(r#"Meta[`x.y`] == 1"#), r#"Meta["x.y"] == "1""#);
        assert_eq!(canon("Meta.some-key == 1"), r#"Meta.some-key == "1""#);
        assert_eq!(canon("Checks.0.Status == ok"), r#"Checks.0.Status == "ok""#);
        assert_eq!(canon("_private == 1"), r#"_private == "1""#);
    }

    #[test]
    fn keywords_are_case_sensitive() {
        assert_eq!(
            err("a == 1 AND b == 2"),
            "filter: expected 'and', 'or' or end of input at column 8, found 'AND'"
        );
        assert!(err("a IS empty").starts_with("filter: expected an operator"));
        assert_eq!(
            err("a is EMPTY"),
            "filter: expected 'empty' or 'not empty' after 'is' at column 6, found 'EMPTY'"
        );
    }

    #[test]
    fn keyword_like_selectors_are_plain_words() {
        assert_eq!(canon("notes == x"), r#"notes == "x""#);
        assert_eq!(canon("a == and"), r#"a == "and""#);
        assert_eq!(canon("index in inside"), r#"inside contains "index""#);
    }

    #[test]
    fn missing_value_names_the_operator_and_column() {
        assert_eq!(
            err("Service.Tag =="),
            "filter: expected a value after '==' at column 15, found end of input"
        );
        assert_eq!(
            err("a != )"),
            "filter: expected a value after '!=' at column 6, found ')'"
        );
        assert_eq!(
            err("a contains"),
            "filter: expected a value after 'contains' at column 11, found end of input"
        );
        assert_eq!(
            err("a not matches"),
            "filter: expected a value after 'not matches' at column 14, found end of input"
        );
    }

    #[test]
    fn wrong_operand_kinds() {
        assert_eq!(
            err(r#""x" == a"#),
            r#"filter: expected a selector before '==' at column 1, found string "x""#
        );
        assert_eq!(
            err(r#"x in "a""#),
            r#"filter: expected a selector after 'in' at column 6, found string "a""#
        );
        assert_eq!(
            err("x not in"),
            "filter: expected a selector after 'not in' at column 9, found end of input"
        );
        assert_eq!(
            err(r#"Meta["x"] in a"#),
            "filter: expected a value before 'in' (quote values that contain '[') at column 5, \
             found '['"
        );
        assert_eq!(
            err(r#"a == Meta["x"]"#),
            "filter: expected a value after '==' (quote values that contain '[') at column 10, \
             found '['"
        );
    }

    #[test]
    fn invalid_selectors() {
        assert_eq!(
            err("Meta.a:b == 1"),
            "filter: invalid selector 'Meta.a:b' at column 6: 'a:b' is not a field name; \
             write keys like this as [\"a:b\"]"
        );
        assert_eq!(
            err("80 == Port"),
            "filter: invalid selector '80' at column 1: a selector must start with a field \
             name, not '80'"
        );
        assert_eq!(
            err("a in -b"),
            "filter: invalid selector '-b' at column 6: a selector must start with a field \
             name, not '-b'"
        );
    }

    #[test]
    fn malformed_selectors() {
        assert_eq!(
            err("Meta[x] == 1"),
            "filter: expected a quoted key after '[' at column 6, found 'x'"
        );
        assert_eq!(
            err(r#"Meta["x" == 1"#),
            "filter: expected ']' to close the '[' from column 5 at column 10, found '=='"
        );
        assert_eq!(
            err("a. == 1"),
            "filter: expected a field name or '[' after '.' at column 4, found '=='"
        );
        assert_eq!(
            err("a..b == 1"),
            "filter: expected a field name or '[' after '.' at column 3, found '.'"
        );
        assert_eq!(
            err(r#"Meta ["x"] == 1"#),
            format!("filter: expected {OPERATORS} after 'Meta' at column 6, found '['")
        );
    }

    #[test]
    fn incomplete_expressions() {
        assert_eq!(
            err("a b"),
            format!("filter: expected {OPERATORS} after 'a' at column 3, found 'b'")
        );
        assert_eq!(
            err("a == b and"),
            "filter: expected an expression after 'and' at column 11, found end of input"
        );
        assert_eq!(
            err("a == b or or"),
            format!("filter: expected {OPERATORS} after 'or' at column 13, found end of input")
        );
        assert_eq!(
            err("not"),
            "filter: expected an expression after 'not' at column 4, found end of input"
        );
        assert_eq!(
            err("== b"),
            "filter: expected an expression at column 1, found '=='"
        );
        assert_eq!(
            err("a is"),
            "filter: expected 'empty' or 'not empty' after 'is' at column 5, found end of input"
        );
        assert_eq!(
            err("a is not"),
            "filter: expected 'empty' after 'is not' at column 9, found end of input"
        );
        assert_eq!(
            err("a not b"),
            "filter: expected 'in', 'contains' or 'matches' after 'not' at column 7, found 'b'"
        );
    }

    #[test]
    fn unbalanced_parentheses() {
        assert_eq!(
            err("(a == b"),
            "filter: expected ')' to close the '(' from column 1 at column 8, found end of input"
        );
        assert_eq!(
            err("a == b)"),
            "filter: expected 'and', 'or' or end of input at column 7, found ')'"
        );
        assert_eq!(
            err("()"),
            "filter: expected an expression after '(' at column 2, found ')'"
        );
    }

    #[test]
    fn bad_regex_is_named() {
        let message = err(r#"a matches "(web""#);
        assert!(
            message.starts_with(r#"filter: invalid regex "(web" at column 11: "#),
            "{message}"
        );
    }

    #[test]
    fn empty_expression() {
        assert_eq!(err(""), "filter: the expression is empty");
        assert_eq!(err(" \t\n"), "filter: the expression is empty");
    }

    #[test]
    fn nesting_is_limited() {
        let deep = format!("{}a == 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(canon(&deep), r#"a == "1""#);
        let too_deep = format!(
            "{}a == 1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            err(&too_deep),
            format!(
                "filter: expression nested too deeply at column {} (limit {MAX_DEPTH})",
                MAX_DEPTH + 1
            )
        );
        let nots = format!("{}a == 1", "not ".repeat(MAX_DEPTH + 1));
        assert!(err(&nots).contains("nested too deeply"));
    }

    #[test]
    fn long_flat_chains_are_fine() {
        let long = vec!["a == 1"; 10_000].join(" or ");
        assert!(parse(&long).is_ok());
    }
}
