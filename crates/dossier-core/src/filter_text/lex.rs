//! Splits filter text into tokens, each with its byte offset for error positions.

use crate::CoreError;
use crate::error::line_column;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// A field name or keyword: starts with a letter or `_`, then letters, digits, `_`, `.`, `-`.
    Word(String),
    /// A double-quoted string, unescaped.
    Str(String),
    /// A number as written, with letters written right after it (`30d` in `ago(30d)`).
    Num {
        text: String,
        unit: String,
    },
    Punct(&'static str),
    End,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: Kind,
    /// Byte offset in the text.
    pub(super) at: usize,
}

pub(super) fn syntax_at(text: &str, at: usize, reason: String) -> CoreError {
    let (line, column) = line_column(text, at);
    CoreError::FilterSyntax {
        line,
        column,
        reason,
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-')
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, CoreError> {
    let mut tokens = vec![];
    let mut at = 0;
    while let Some(c) = text[at..].chars().next() {
        let rest = &text[at..];
        let (kind, len) = if c.is_whitespace() {
            at += c.len_utf8();
            continue;
        } else if c.is_alphabetic() || c == '_' {
            let len = rest.find(|c| !is_word_char(c)).unwrap_or(rest.len());
            (Kind::Word(rest[..len].to_string()), len)
        } else if c.is_ascii_digit()
            || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            lex_number(rest)
        } else if c == '"' {
            lex_string(text, at)?
        } else {
            let punct = [
                "!=", "<>", "<=", ">=", "=", "<", ">", "(", ")", "[", "]", ",",
            ]
            .into_iter()
            .find(|p| rest.starts_with(p));
            match punct {
                Some(p) => (Kind::Punct(p), p.len()),
                None if c == '\'' => {
                    return Err(syntax_at(
                        text,
                        at,
                        "strings take double quotes: \"text\", not 'text'".into(),
                    ));
                }
                None => {
                    return Err(syntax_at(text, at, format!("unexpected character {c:?}")));
                }
            }
        };
        tokens.push(Token { kind, at });
        at += len;
    }
    tokens.push(Token {
        kind: Kind::End,
        at: text.len(),
    });
    Ok(tokens)
}

/// `-? digits (. digits)? ([eE] [+-]? digits)?`, then any letters written right after it.
/// Returns the token and its length in bytes.
fn lex_number(rest: &str) -> (Kind, usize) {
    let bytes = rest.as_bytes();
    let digits = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut end = digits(usize::from(bytes[0] == b'-'));
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end = digits(end + 1);
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        if bytes.get(end + 1 + sign).is_some_and(u8::is_ascii_digit) {
            end = digits(end + 1 + sign);
        }
    }
    let unit_len = rest[end..]
        .find(|c: char| !c.is_alphabetic())
        .unwrap_or(rest.len() - end);
    let kind = Kind::Num {
        text: rest[..end].to_string(),
        unit: rest[end..end + unit_len].to_string(),
    };
    (kind, end + unit_len)
}

/// The string starting with the `"` at byte `at`, unescaped, and its length in bytes.
fn lex_string(text: &str, at: usize) -> Result<(Kind, usize), CoreError> {
    let mut s = String::new();
    let mut chars = text[at..].char_indices().skip(1);
    loop {
        match chars.next() {
            Some((i, '"')) => return Ok((Kind::Str(s), i + 1)),
            Some((i, '\\')) => match chars.next() {
                Some((_, '"')) => s.push('"'),
                Some((_, '\\')) => s.push('\\'),
                Some((_, 'n')) => s.push('\n'),
                Some((_, c)) if c != '\n' => {
                    return Err(syntax_at(
                        text,
                        at + i,
                        format!("unknown escape \"\\{c}\" in a string; use \\\", \\\\ or \\n"),
                    ));
                }
                _ => return Err(unterminated(text, at)),
            },
            Some((_, '\n')) | None => return Err(unterminated(text, at)),
            Some((_, c)) => s.push(c),
        }
    }
}

fn unterminated(text: &str, at: usize) -> CoreError {
    syntax_at(
        text,
        at,
        "unterminated string; close it with \" on the same line".into(),
    )
}
