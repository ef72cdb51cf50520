//! Lexer: splits a filter expression into tokens, each tagged with its 1-based column and whether
//! whitespace preceded it (the parser needs that to keep `Meta["k"]` and `a.b` glued together).
//!
//! Quoted strings are decoded here: `` `raw` `` strings verbatim, `"..."` strings with Go-style
//! escapes. Unknown escapes such as `\d` are kept as written so regular expressions survive.

use crate::error::FilterError;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Equal,
    NotEqual,
    /// A bare word: identifier, keyword, number or unquoted value.
    Word(String),
    /// A quoted string, already unescaped.
    Str(String),
    /// End of input; always the last token.
    End,
}

/// One token and where it sits in the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    /// 1-based character column of the token's first character.
    pub(crate) column: usize,
    /// Whether whitespace (or the start of input) separates it from the previous token.
    pub(crate) space_before: bool,
}

impl Token {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            TokenKind::LParen => "'('".to_owned(),
            TokenKind::RParen => "')'".to_owned(),
            TokenKind::LBracket => "'['".to_owned(),
            TokenKind::RBracket => "']'".to_owned(),
            TokenKind::Dot => "'.'".to_owned(),
            TokenKind::Equal => "'=='".to_owned(),
            TokenKind::NotEqual => "'!='".to_owned(),
            TokenKind::Word(word) => format!("'{word}'"),
            TokenKind::Str(text) => format!("string {text:?}"),
            TokenKind::End => "end of input".to_owned(),
        }
    }
}

/// Characters that end a bare word.
fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '[' | ']' | '.' | '"' | '`' | '=' | '!')
}

/// Tokenizes `input`; the result always ends with a [`TokenKind::End`] token.
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut space_before = true;
    while let Some(&c) = chars.get(i) {
        let column = i + 1;
        if c.is_whitespace() {
            space_before = true;
            i += 1;
            continue;
        }
        let kind = match c {
            '(' | ')' | '[' | ']' | '.' => {
                i += 1;
                match c {
                    '(' => TokenKind::LParen,
                    ')' => TokenKind::RParen,
                    '[' => TokenKind::LBracket,
                    ']' => TokenKind::RBracket,
                    _ => TokenKind::Dot,
                }
            }
            '=' | '!' => {
                if chars.get(i + 1) != Some(&'=') {
                    return Err(FilterError::Expected {
                        expected: format!("'{c}='"),
                        found: format!("'{c}'"),
                        column,
                    });
                }
                i += 2;
                if c == '=' {
                    TokenKind::Equal
                } else {
                    TokenKind::NotEqual
                }
            }
            '`' => {
                let Some(len) = chars[i + 1..].iter().position(|&ch| ch == '`') else {
                    return Err(FilterError::UnterminatedString { column });
                };
                let text = chars[i + 1..i + 1 + len].iter().collect();
                i += len + 2;
                TokenKind::Str(text)
            }
            '"' => {
                let (text, next) = lex_quoted(&chars, i)?;
                i = next;
                TokenKind::Str(text)
            }
            _ => {
                let start = i;
                while chars.get(i).is_some_and(|&ch| is_word_char(ch)) {
                    i += 1;
                }
                TokenKind::Word(chars[start..i].iter().collect())
            }
        };
        tokens.push(Token {
            kind,
            column,
            space_before,
        });
        space_before = false;
    }
    tokens.push(Token {
        kind: TokenKind::End,
        column: chars.len() + 1,
        space_before: true,
    });
    Ok(tokens)
}

/// Decodes the double-quoted string whose opening quote is at `chars[start]`; returns the text
/// and the index just past the closing quote.
fn lex_quoted(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let unterminated = FilterError::UnterminatedString { column: start + 1 };
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(unterminated);
        };
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                let Some(&escape) = chars.get(i + 1) else {
                    return Err(unterminated);
                };
                let backslash = i;
                i += 2;
                let simple = match escape {
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '\'' => Some('\''),
                    'n' => Some('\n'),
                    't' => Some('\t'),
                    'r' => Some('\r'),
                    'a' => Some('\u{07}'),
                    'b' => Some('\u{08}'),
                    'f' => Some('\u{0c}'),
                    'v' => Some('\u{0b}'),
                    _ => None,
                };
                if let Some(ch) = simple {
                    out.push(ch);
                    continue;
                }
                let (digits, radix, max) = match escape {
                    'x' => (2, 16, 0x7f),
                    'u' => (4, 16, u32::MAX),
                    'U' => (8, 16, u32::MAX),
                    '0'..='7' => (3, 8, 0x7f),
                    other => {
                        // Not a Go escape: keep it verbatim so regexes like "\d+" work.
                        out.push('\\');
                        out.push(other);
                        continue;
                    }
                };
                // Octal escapes start at the escape character itself.
                let first = if radix == 8 { backslash + 1 } else { i };
                let taken = chars[first..]
                    .iter()
                    .take(digits)
                    .take_while(|ch| ch.is_digit(radix))
                    .count();
                let end = first + taken;
                let code: String = chars[first..end].iter().collect();
                let decoded = u32::from_str_radix(&code, radix)
                    .ok()
                    .filter(|&n| taken == digits && n <= max)
                    .and_then(char::from_u32)
                    .ok_or_else(|| FilterError::InvalidEscape {
                        sequence: chars[backslash..end].iter().collect(),
                        column: backslash + 1,
                    })?;
                out.push(decoded);
                i = end;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<TokenKind> {
        match tokenize(input) {
            Ok(tokens) => tokens.into_iter().map(|t| t.kind).collect(),
            Err(err) => panic!("tokenize({input:?}) failed: {err}"),
        }
    }

    fn word(w: &str) -> TokenKind {
        TokenKind::Word(w.to_owned())
    }

    fn string(s: &str) -> TokenKind {
        TokenKind::Str(s.to_owned())
    }

    fn err(input: &str) -> String {
        match tokenize(input) {
            Ok(tokens) => panic!("tokenize({input:?}) unexpectedly gave {tokens:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn punctuation_and_operators() {
        assert_eq!(
            kinds("(a==b)!=[.]"),
            vec![
                TokenKind::LParen,
                word("a"),
                TokenKind::Equal,
                word("b"),
                TokenKind::RParen,
                TokenKind::NotEqual,
                TokenKind::LBracket,
                TokenKind::Dot,
                TokenKind::RBracket,
                TokenKind::End,
            ]
        );
    }

    #[test]
    fn words_keep_dashes_slashes_and_colons() {
        assert_eq!(
            kinds("-1 web:v1 a/b x-y"),
            vec![
                word("-1"),
                word("web:v1"),
                word("a/b"),
                word("x-y"),
                TokenKind::End
            ]
        );
    }

    #[test]
    fn columns_and_spacing() {
        let tokens = tokenize(" ab.cd ==\t\"x\"").unwrap_or_default();
        let summary: Vec<(usize, bool)> =
            tokens.iter().map(|t| (t.column, t.space_before)).collect();
        assert_eq!(
            summary,
            vec![
                (2, true),
                (4, false),
                (5, false),
                (8, true),
                (11, true),
                (14, true)
            ]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let tokens = tokenize("\"é\" ==").unwrap_or_default();
        assert_eq!(tokens.get(1).map(|t| t.column), Some(5));
    }

    #[test]
    fn double_quoted_escapes() {
        assert_eq!(
            kinds(r#""a\"b\\c\n\t\x41\u00e9\U0001F600\101""#),
            vec![string("a\"b\\c\n\tAé😀A"), TokenKind::End]
        );
    }

    #[test]
    fn unknown_escapes_are_kept_for_regexes() {
        assert_eq!(
            kinds(r#""^\d+\.\w$""#),
            vec![string(r"^\d+\.\w$"), TokenKind::End]
        );
    }

    #[test]
    fn raw_strings_are_verbatim() {
        assert_eq!(
            kinds(r#"`a\"b\n` """#),
            vec![string(r#"a\"b\n"#), string(""), TokenKind::End]
        );
    }

    #[test]
    fn unterminated_strings() {
        assert_eq!(
            err("a == \"abc"),
            "filter: unterminated string starting at column 6"
        );
        assert_eq!(
            err("a == `abc"),
            "filter: unterminated string starting at column 6"
        );
        assert_eq!(
            err("a == \"abc\\"),
            "filter: unterminated string starting at column 6"
        );
    }

    #[test]
    fn bad_escapes() {
        assert_eq!(
            err(r#"a == "\x4""#),
            r"filter: invalid escape sequence '\x4' at column 7"
        );
        assert_eq!(
            err(r#"a == "\xff""#),
            r"filter: invalid escape sequence '\xff' at column 7"
        );
        assert_eq!(
            err(r#"a == "\ud800""#),
            r"filter: invalid escape sequence '\ud800' at column 7"
        );
        assert_eq!(
            err(r#""\u12""#),
            r"filter: invalid escape sequence '\u12' at column 2"
        );
    }

    #[test]
    fn lone_equals_or_bang() {
        assert_eq!(err("a = b"), "filter: expected '==' at column 3, found '='");
        assert_eq!(err("a ! b"), "filter: expected '!=' at column 3, found '!'");
    }

    #[test]
    fn empty_input_is_just_end() {
        assert_eq!(kinds("   "), vec![TokenKind::End]);
    }
}
