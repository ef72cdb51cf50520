//! The text of a policy as a tree: HCL version 1 (the dialect Consul's `hashicorp/hcl` v1
//! decoder reads) and JSON, both turned into the same [`Item`] list.
//!
//! Why not `hcl-rs`: it reads HCL 2, which refuses forms Consul accepts and its own tests use,
//! such as two attributes in a one-line block (`service "web" { policy = "write" intentions =
//! "read" }`), a closing brace on the attribute's line, or two assignments on one line. Policies
//! written for Consul must parse here as they do there, so this module follows HCL 1's scanner
//! and parser (`hcl/scanner`, `hcl/parser`): newlines are plain whitespace, items in an object
//! may be separated by commas, `a "b" { }` is the same as `a = { b = { } }`, and errors are
//! reported as `At line:column: message` like HCL 1's `PosError`.
//!
//! Like HCL 1, a text whose first non-blank character is `{` is read as JSON.

use std::fmt;

/// A place in the source: 1-based line and column (in characters) and the byte offset, as HCL 1
/// reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pos {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One key of an item: an identifier or a quoted string, with its decoded text and where it
/// stood. `raw` keeps the quotes, because HCL 1 quotes keys that way in its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub text: String,
    pub raw: String,
    pub pos: Pos,
}

/// `keys... = value` or `keys... { object }` (the latter stored as an object value).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub keys: Vec<Key>,
    pub value: Value,
}

/// A value as HCL 1 types it: the decoder's errors name these types, so they are kept apart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    String(String),
    Heredoc(String),
    /// An integer literal, kept as written: HCL 1 decodes it into a string field verbatim.
    Number(String),
    Float(String),
    Bool(bool),
    /// JSON's `null`; HCL 1 has no such literal.
    Null,
    List(Vec<Value>),
    Object(Vec<Item>),
}

/// A syntax error: `At line:column: message`, HCL 1's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "At {}: {}", self.pos, self.message)
    }
}

/// Parses a whole policy text into its top-level items.
pub(crate) fn parse(text: &str) -> Result<Vec<Item>, SyntaxError> {
    if text.trim_start().starts_with('{') {
        JsonParser::new(text).document()
    } else {
        HclParser::new(text).document()
    }
}

/// A character cursor that tracks HCL 1's line/column/offset.
struct Cursor<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
    column: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            offset: 0,
            line: 1,
            column: 1,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            offset: self.offset,
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.text[self.offset..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.offset += ch.len_utf8();
        if ch == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(ch)
    }

    fn rest(&self) -> &'a str {
        &self.text[self.offset..]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    Ident,
    String,
    Heredoc,
    Number,
    Float,
    Bool,
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Comma,
    Assign,
    Period,
    Add,
    Sub,
    Eof,
}

impl TokenKind {
    /// The name HCL 1 prints for a token type.
    fn name(self) -> &'static str {
        match self {
            TokenKind::Ident => "IDENT",
            TokenKind::String => "STRING",
            TokenKind::Heredoc => "HEREDOC",
            TokenKind::Number => "NUMBER",
            TokenKind::Float => "FLOAT",
            TokenKind::Bool => "BOOL",
            TokenKind::LBrace => "LBRACE",
            TokenKind::RBrace => "RBRACE",
            TokenKind::LBrack => "LBRACK",
            TokenKind::RBrack => "RBRACK",
            TokenKind::Comma => "COMMA",
            TokenKind::Assign => "ASSIGN",
            TokenKind::Period => "PERIOD",
            TokenKind::Add => "ADD",
            TokenKind::Sub => "SUB",
            TokenKind::Eof => "EOF",
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    /// The source text of the token (quotes included for strings).
    raw: String,
    /// The decoded value for strings and heredocs; the raw text otherwise.
    value: String,
    pos: Pos,
}

fn is_letter(ch: char) -> bool {
    ch.is_ascii_alphabetic() || ch == '_' || (!ch.is_ascii() && ch.is_alphabetic())
}

fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (!ch.is_ascii() && ch.is_numeric())
}

/// HCL 1's scanner: comments and whitespace (newlines included) separate tokens and nothing else.
struct Scanner<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Scanner<'a> {
    fn error(pos: Pos, message: &str) -> SyntaxError {
        SyntaxError {
            pos,
            message: message.to_string(),
        }
    }

    fn next_token(&mut self) -> Result<Token, SyntaxError> {
        loop {
            self.skip_whitespace();
            let pos = self.cursor.pos();
            let start = self.cursor.offset;
            let Some(ch) = self.cursor.bump() else {
                return Ok(Token {
                    kind: TokenKind::Eof,
                    raw: String::new(),
                    value: String::new(),
                    pos,
                });
            };
            let kind = match ch {
                c if is_letter(c) => {
                    while self
                        .cursor
                        .peek()
                        .is_some_and(|c| is_letter(c) || is_digit(c) || c == '-' || c == '.')
                    {
                        self.cursor.bump();
                    }
                    let word = &self.cursor.text[start..self.cursor.offset];
                    if word == "true" || word == "false" {
                        TokenKind::Bool
                    } else {
                        TokenKind::Ident
                    }
                }
                c if c.is_ascii_digit() => self.number(c)?,
                '"' => {
                    let value = self.string(pos)?;
                    let raw = self.cursor.text[start..self.cursor.offset].to_string();
                    return Ok(Token {
                        kind: TokenKind::String,
                        raw,
                        value,
                        pos,
                    });
                }
                '#' => {
                    self.line_comment();
                    continue;
                }
                '/' => {
                    match self.cursor.peek() {
                        Some('/') => self.line_comment(),
                        Some('*') => self.block_comment(pos)?,
                        _ => return Err(Self::error(pos, "expected '/' for comment")),
                    }
                    continue;
                }
                '.' => {
                    if self.cursor.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.digits();
                        self.exponent();
                        TokenKind::Float
                    } else {
                        TokenKind::Period
                    }
                }
                '<' => {
                    let value = self.heredoc(pos)?;
                    let raw = self.cursor.text[start..self.cursor.offset].to_string();
                    return Ok(Token {
                        kind: TokenKind::Heredoc,
                        raw,
                        value,
                        pos,
                    });
                }
                '[' => TokenKind::LBrack,
                ']' => TokenKind::RBrack,
                '{' => TokenKind::LBrace,
                '}' => TokenKind::RBrace,
                ',' => TokenKind::Comma,
                '=' => TokenKind::Assign,
                '+' => TokenKind::Add,
                '-' => match self.cursor.peek() {
                    Some(c) if c.is_ascii_digit() => {
                        self.cursor.bump();
                        self.number(c)?
                    }
                    _ => TokenKind::Sub,
                },
                _ => {
                    return Err(Self::error(
                        pos,
                        &format!("illegal char {}", go_quote_char(ch)),
                    ));
                }
            };
            let raw = self.cursor.text[start..self.cursor.offset].to_string();
            return Ok(Token {
                kind,
                value: raw.clone(),
                raw,
                pos,
            });
        }
    }

    fn skip_whitespace(&mut self) {
        while self
            .cursor
            .peek()
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
        {
            self.cursor.bump();
        }
    }

    fn line_comment(&mut self) {
        while let Some(ch) = self.cursor.peek() {
            if ch == '\n' {
                break;
            }
            self.cursor.bump();
        }
    }

    fn block_comment(&mut self, start: Pos) -> Result<(), SyntaxError> {
        self.cursor.bump(); // the '*'
        loop {
            match self.cursor.bump() {
                None => return Err(Self::error(start, "comment not terminated")),
                Some('*') if self.cursor.peek() == Some('/') => {
                    self.cursor.bump();
                    return Ok(());
                }
                Some(_) => {}
            }
        }
    }

    fn digits(&mut self) {
        while self.cursor.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.cursor.bump();
        }
    }

    /// An optional exponent; returns whether one was read.
    fn exponent(&mut self) -> bool {
        if !matches!(self.cursor.peek(), Some('e' | 'E')) {
            return false;
        }
        self.cursor.bump();
        if matches!(self.cursor.peek(), Some('+' | '-')) {
            self.cursor.bump();
        }
        self.digits();
        true
    }

    /// The rest of a number whose first digit was read: decimal, octal, hex, fraction, exponent.
    fn number(&mut self, first: char) -> Result<TokenKind, SyntaxError> {
        if first == '0' && matches!(self.cursor.peek(), Some('x' | 'X')) {
            self.cursor.bump();
            while self.cursor.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.cursor.bump();
            }
            return Ok(TokenKind::Number);
        }
        self.digits();
        let mut kind = TokenKind::Number;
        if self.cursor.peek() == Some('.')
            && self
                .cursor
                .peek_second()
                .is_some_and(|c| c.is_ascii_digit())
        {
            self.cursor.bump();
            self.digits();
            kind = TokenKind::Float;
        }
        if self.exponent() {
            kind = TokenKind::Float;
        }
        Ok(kind)
    }

    /// A quoted string whose opening quote was read; returns its decoded value. As in HCL 1,
    /// quotes and escapes inside `${ ... }` belong to the interpolation and are kept verbatim.
    fn string(&mut self, start: Pos) -> Result<String, SyntaxError> {
        let mut value = String::new();
        let mut braces = 0usize;
        loop {
            let Some(ch) = self.cursor.bump() else {
                return Err(Self::error(start, "literal not terminated"));
            };
            if ch == '\n' && braces == 0 {
                return Err(Self::error(start, "literal not terminated"));
            }
            if ch == '"' && braces == 0 {
                return Ok(value);
            }
            if braces == 0 && ch == '$' && self.cursor.peek() == Some('{') {
                braces += 1;
                self.cursor.bump();
                value.push_str("${");
                continue;
            }
            if braces > 0 {
                if ch == '{' {
                    braces += 1;
                } else if ch == '}' {
                    braces -= 1;
                }
                value.push(ch);
                continue;
            }
            if ch == '\\' {
                let escape_pos = self.cursor.pos();
                value.push(self.escape(escape_pos)?);
            } else {
                value.push(ch);
            }
        }
    }

    fn escape(&mut self, pos: Pos) -> Result<char, SyntaxError> {
        let illegal = || Self::error(pos, "illegal char escape");
        let ch = self.cursor.bump().ok_or_else(illegal)?;
        let hex = |scanner: &mut Self, count: usize| -> Result<char, SyntaxError> {
            let mut code = 0u32;
            for _ in 0..count {
                let digit = scanner
                    .cursor
                    .bump()
                    .and_then(|c| c.to_digit(16))
                    .ok_or_else(illegal)?;
                code = code * 16 + digit;
            }
            char::from_u32(code).ok_or_else(illegal)
        };
        Ok(match ch {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\\' => '\\',
            '"' => '"',
            'x' => hex(self, 2)?,
            'u' => hex(self, 4)?,
            'U' => hex(self, 8)?,
            '0'..='7' => {
                let mut code = ch.to_digit(8).ok_or_else(illegal)?;
                for _ in 0..2 {
                    let digit = self
                        .cursor
                        .bump()
                        .and_then(|c| c.to_digit(8))
                        .ok_or_else(illegal)?;
                    code = code * 8 + digit;
                }
                char::from_u32(code).ok_or_else(illegal)?
            }
            _ => return Err(illegal()),
        })
    }

    /// `<<ANCHOR` or `<<-ANCHOR`, a newline, lines, then a line holding only the anchor. The
    /// value is the lines with their newlines; `<<-` removes the indentation they share.
    fn heredoc(&mut self, start: Pos) -> Result<String, SyntaxError> {
        if self.cursor.bump() != Some('<') {
            return Err(Self::error(start, "heredoc expected second '<'"));
        }
        let indented = self.cursor.peek() == Some('-');
        if indented {
            self.cursor.bump();
        }
        let anchor_start = self.cursor.offset;
        while self
            .cursor
            .peek()
            .is_some_and(|c| is_letter(c) || is_digit(c))
        {
            self.cursor.bump();
        }
        let anchor = self.cursor.text[anchor_start..self.cursor.offset].to_string();
        if anchor.is_empty() {
            return Err(Self::error(start, "zero-length heredoc anchor"));
        }
        if self.cursor.peek() == Some('\r') {
            self.cursor.bump();
        }
        if self.cursor.bump() != Some('\n') {
            return Err(Self::error(start, "invalid characters in heredoc anchor"));
        }
        let mut lines: Vec<&str> = Vec::new();
        loop {
            let rest = self.cursor.rest();
            if rest.is_empty() {
                return Err(Self::error(start, "heredoc not terminated"));
            }
            let line_end = rest.find('\n').unwrap_or(rest.len());
            let line = &rest[..line_end];
            let trimmed = line.trim_end_matches('\r');
            let is_anchor = if indented {
                trimmed.trim_start() == anchor
            } else {
                trimmed == anchor
            };
            for _ in line.chars() {
                self.cursor.bump();
            }
            if is_anchor {
                break;
            }
            lines.push(line);
            self.cursor.bump(); // the newline
        }
        let indent = if indented {
            lines
                .iter()
                .filter(|line| !line.trim().is_empty())
                .map(|line| line.len() - line.trim_start_matches([' ', '\t']).len())
                .min()
                .unwrap_or(0)
        } else {
            0
        };
        let mut value = String::new();
        for line in lines {
            value.push_str(
                line.get(indent..)
                    .unwrap_or(line.trim_start_matches([' ', '\t'])),
            );
            value.push('\n');
        }
        Ok(value)
    }
}

/// HCL 1's recursive-descent parser over [`Scanner`] tokens, with one token of look-ahead.
struct HclParser<'a> {
    scanner: Scanner<'a>,
    peeked: Option<Token>,
}

/// The parser's "ran out of input" signal: HCL 1 ends the item list quietly on it in some
/// places (an assignment with no value at the end of the text is dropped, not refused).
enum Stop {
    Eof,
    Error(SyntaxError),
}

impl From<SyntaxError> for Stop {
    fn from(error: SyntaxError) -> Self {
        Stop::Error(error)
    }
}

impl<'a> HclParser<'a> {
    fn new(text: &'a str) -> Self {
        HclParser {
            scanner: Scanner {
                cursor: Cursor::new(text),
            },
            peeked: None,
        }
    }

    fn next(&mut self) -> Result<Token, SyntaxError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.scanner.next_token(),
        }
    }

    fn peek(&mut self) -> Result<&Token, SyntaxError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.scanner.next_token()?);
        }
        match &self.peeked {
            Some(token) => Ok(token),
            None => unreachable!("peeked was just filled"),
        }
    }

    fn document(mut self) -> Result<Vec<Item>, SyntaxError> {
        let (items, _) = self.object_list(false)?;
        Ok(items)
    }

    /// Items until the end of input, or a closing brace when inside an object. Returns the items
    /// and whether the list ended at a closing brace.
    fn object_list(&mut self, in_object: bool) -> Result<(Vec<Item>, bool), SyntaxError> {
        let mut items = Vec::new();
        loop {
            let kind = self.peek()?.kind;
            if kind == TokenKind::Eof {
                return Ok((items, false));
            }
            if in_object && kind == TokenKind::RBrace {
                return Ok((items, true));
            }
            match self.object_item() {
                Ok(item) => items.push(item),
                Err(Stop::Eof) => return Ok((items, false)),
                Err(Stop::Error(error)) => return Err(error),
            }
            if in_object && self.peek()?.kind == TokenKind::Comma {
                self.next()?;
            }
        }
    }

    fn object_item(&mut self) -> Result<Item, Stop> {
        let mut keys: Vec<Key> = Vec::new();
        let separator = loop {
            let token = self.next()?;
            match token.kind {
                TokenKind::Ident | TokenKind::String => {
                    keys.push(Key {
                        text: token.value,
                        raw: token.raw,
                        pos: token.pos,
                    });
                }
                TokenKind::Assign => {
                    if keys.len() > 1 {
                        return Err(Stop::Error(SyntaxError {
                            pos: token.pos,
                            message: "nested object expected: LBRACE got: ASSIGN".to_string(),
                        }));
                    }
                    if keys.is_empty() {
                        return Err(Stop::Error(SyntaxError {
                            pos: token.pos,
                            message: "no object keys found!".to_string(),
                        }));
                    }
                    break token;
                }
                TokenKind::LBrace => {
                    if keys.is_empty() {
                        return Err(Stop::Error(SyntaxError {
                            pos: token.pos,
                            message: "expected: IDENT | STRING got: LBRACE".to_string(),
                        }));
                    }
                    break token;
                }
                TokenKind::Eof if keys.is_empty() => return Err(Stop::Eof),
                TokenKind::Eof | TokenKind::RBrace if !keys.is_empty() => {
                    let names: Vec<&str> = keys.iter().map(|key| key.raw.as_str()).collect();
                    return Err(Stop::Error(SyntaxError {
                        pos: token.pos,
                        message: format!(
                            "key '{}' expected start of object ('{{') or assignment ('=')",
                            names.join(" ")
                        ),
                    }));
                }
                other => {
                    return Err(Stop::Error(SyntaxError {
                        pos: token.pos,
                        message: format!(
                            "expected: IDENT | STRING | ASSIGN | LBRACE got: {}",
                            other.name()
                        ),
                    }));
                }
            }
        };
        let value = if separator.kind == TokenKind::Assign {
            self.value()?
        } else {
            Value::Object(self.object_body()?)
        };
        Ok(Item { keys, value })
    }

    /// The value after `=`.
    fn value(&mut self) -> Result<Value, Stop> {
        let token = self.next()?;
        match token.kind {
            TokenKind::Number
            | TokenKind::Float
            | TokenKind::Bool
            | TokenKind::String
            | TokenKind::Heredoc => Ok(literal(token)),
            TokenKind::LBrace => Ok(Value::Object(self.object_body()?)),
            TokenKind::LBrack => Ok(self.list()?),
            TokenKind::Eof => Err(Stop::Eof),
            _ => Err(Stop::Error(unknown_token(&token))),
        }
    }

    /// The items of an object whose `{` was read, and its closing brace.
    fn object_body(&mut self) -> Result<Vec<Item>, SyntaxError> {
        let (items, _) = self.object_list(true)?;
        let token = self.next()?;
        if token.kind != TokenKind::RBrace {
            return Err(SyntaxError {
                pos: token.pos,
                message: format!("object expected closing RBRACE got: {}", token.kind.name()),
            });
        }
        Ok(items)
    }

    /// A list whose `[` was read.
    fn list(&mut self) -> Result<Value, SyntaxError> {
        let mut values = Vec::new();
        let mut need_comma = false;
        loop {
            let token = self.next()?;
            if need_comma && !matches!(token.kind, TokenKind::Comma | TokenKind::RBrack) {
                return Err(SyntaxError {
                    pos: token.pos,
                    message: format!(
                        "error parsing list, expected comma or list end, got: {}",
                        token.kind.name()
                    ),
                });
            }
            match token.kind {
                TokenKind::Bool
                | TokenKind::Number
                | TokenKind::Float
                | TokenKind::String
                | TokenKind::Heredoc => {
                    values.push(literal(token));
                    need_comma = true;
                }
                TokenKind::Comma => need_comma = false,
                TokenKind::LBrace => {
                    let items = self.object_body().map_err(|error| SyntaxError {
                        pos: token.pos,
                        message: format!("error while trying to parse object within list: {error}"),
                    })?;
                    values.push(Value::Object(items));
                    need_comma = true;
                }
                TokenKind::LBrack => {
                    values.push(self.list()?);
                    need_comma = true;
                }
                TokenKind::RBrack => return Ok(Value::List(values)),
                other => {
                    return Err(SyntaxError {
                        pos: token.pos,
                        message: format!("unexpected token while parsing list: {}", other.name()),
                    });
                }
            }
        }
    }
}

fn literal(token: Token) -> Value {
    match token.kind {
        TokenKind::Number => Value::Number(token.raw),
        TokenKind::Float => Value::Float(token.raw),
        TokenKind::Bool => Value::Bool(token.raw == "true"),
        TokenKind::Heredoc => Value::Heredoc(token.value),
        _ => Value::String(token.value),
    }
}

/// HCL 1 prints the whole token struct (`%+v`) for a value it cannot start with.
fn unknown_token(token: &Token) -> SyntaxError {
    SyntaxError {
        pos: token.pos,
        message: format!(
            "Unknown token: {{Type:{} Pos:{{Filename: Offset:{} Line:{} Column:{}}} Text:{} JSON:false}}",
            token.kind.name(),
            token.pos.offset,
            token.pos.line,
            token.pos.column,
            token.raw
        ),
    }
}

fn go_quote_char(ch: char) -> String {
    let mut quoted = String::from("'");
    match ch {
        '\'' => quoted.push_str("\\'"),
        c if c.is_control() => quoted.push_str(&format!("\\x{:02x}", c as u32)),
        c => quoted.push(c),
    }
    quoted.push('\'');
    quoted
}

/// JSON into the same tree: every object member becomes a one-key item. Duplicate members are
/// kept (the decoder refuses duplicated attributes, as Consul's decoder does).
struct JsonParser<'a> {
    cursor: Cursor<'a>,
}

impl<'a> JsonParser<'a> {
    fn new(text: &'a str) -> Self {
        JsonParser {
            cursor: Cursor::new(text),
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: self.cursor.pos(),
            message: message.into(),
        }
    }

    fn skip_whitespace(&mut self) {
        while self
            .cursor
            .peek()
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
        {
            self.cursor.bump();
        }
    }

    fn document(mut self) -> Result<Vec<Item>, SyntaxError> {
        self.skip_whitespace();
        let items = match self.value()? {
            Value::Object(items) => items,
            _ => return Err(self.error("JSON policy must be an object")),
        };
        self.skip_whitespace();
        if self.cursor.peek().is_some() {
            return Err(self.error("unexpected content after the JSON object"));
        }
        Ok(items)
    }

    fn expect(&mut self, wanted: char) -> Result<(), SyntaxError> {
        self.skip_whitespace();
        match self.cursor.peek() {
            Some(ch) if ch == wanted => {
                self.cursor.bump();
                Ok(())
            }
            Some(ch) => Err(self.error(format!("expected '{wanted}', got '{ch}'"))),
            None => Err(self.error(format!("expected '{wanted}', got end of input"))),
        }
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        self.skip_whitespace();
        match self.cursor.peek() {
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some('"') => Ok(Value::String(self.string()?)),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.cursor.offset;
                while self.cursor.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                    self.cursor.bump();
                }
                match &self.cursor.text[start..self.cursor.offset] {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    word => Err(self.error(format!("invalid JSON literal {word:?}"))),
                }
            }
            Some(c) => Err(self.error(format!("unexpected character '{c}'"))),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn object(&mut self) -> Result<Value, SyntaxError> {
        self.expect('{')?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.cursor.peek() == Some('}') {
            self.cursor.bump();
            return Ok(Value::Object(items));
        }
        loop {
            self.skip_whitespace();
            let pos = self.cursor.pos();
            let key_start = self.cursor.offset;
            if self.cursor.peek() != Some('"') {
                return Err(self.error("expected a string object key"));
            }
            let text = self.string()?;
            let raw = self.cursor.text[key_start..self.cursor.offset].to_string();
            self.expect(':')?;
            let value = self.value()?;
            items.push(Item {
                keys: vec![Key { text, raw, pos }],
                value,
            });
            self.skip_whitespace();
            match self.cursor.bump() {
                Some(',') => continue,
                Some('}') => return Ok(Value::Object(items)),
                _ => return Err(self.error("expected ',' or '}' in object")),
            }
        }
    }

    fn array(&mut self) -> Result<Value, SyntaxError> {
        self.expect('[')?;
        let mut values = Vec::new();
        self.skip_whitespace();
        if self.cursor.peek() == Some(']') {
            self.cursor.bump();
            return Ok(Value::List(values));
        }
        loop {
            values.push(self.value()?);
            self.skip_whitespace();
            match self.cursor.bump() {
                Some(',') => continue,
                Some(']') => return Ok(Value::List(values)),
                _ => return Err(self.error("expected ',' or ']' in array")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.cursor.offset;
        let mut float = false;
        while let Some(c) = self.cursor.peek() {
            match c {
                '0'..='9' | '-' | '+' => {}
                '.' | 'e' | 'E' => float = true,
                _ => break,
            }
            self.cursor.bump();
        }
        let text = self.cursor.text[start..self.cursor.offset].to_string();
        if text.parse::<f64>().is_err() {
            return Err(self.error(format!("invalid JSON number {text:?}")));
        }
        Ok(if float {
            Value::Float(text)
        } else {
            Value::Number(text)
        })
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.cursor.bump(); // the opening quote
        let mut value = String::new();
        loop {
            match self.cursor.bump() {
                None => return Err(self.error("unterminated JSON string")),
                Some('"') => return Ok(value),
                Some('\\') => {
                    let escaped = match self.cursor.bump() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('u') => self.unicode_escape()?,
                        _ => return Err(self.error("invalid escape in JSON string")),
                    };
                    value.push(escaped);
                }
                Some(c) if (c as u32) < 0x20 => {
                    return Err(self.error("control character in JSON string"));
                }
                Some(c) => value.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut code = 0u32;
        for _ in 0..4 {
            let digit = self.cursor.bump().and_then(|c| c.to_digit(16));
            code =
                code * 16 + digit.ok_or_else(|| self.error("invalid \\u escape in JSON string"))?;
        }
        Ok(code)
    }

    /// `\uXXXX`, joining a UTF-16 surrogate pair into one character.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.cursor.bump() != Some('\\') || self.cursor.bump() != Some('u') {
                return Err(self.error("unpaired surrogate in JSON string"));
            }
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("unpaired surrogate in JSON string"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape in JSON string"))
    }
}
