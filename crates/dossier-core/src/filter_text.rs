//! The text form of contact filters, so a segment can be written, saved and shown as one
//! line: `country = "FR" and data.price_plan = "basic" and agg.avg_basket > 50`.
//!
//! ```text
//! expr      := and_expr ("or" and_expr)*
//! and_expr  := unary ("and" unary)*
//! unary     := "not" unary | "(" expr ")" | condition
//! condition := field cmp (value | ago) | field "in" "[" value ("," value)* "]"
//!            | field "contains" string | field "exists" | field "not" "exists"
//! cmp       := "=" | "!=" | "<>" | ">" | ">=" | "<" | "<="
//! value     := string | number | "true" | "false" | "datetime" "(" string ")"
//! ago       := "ago" "(" integer unit ")"        unit := s | m | h | d | w
//! ```
//!
//! Keywords are case-insensitive, fields are not. Strings are double-quoted with the escapes
//! `\"`, `\\` and `\n` and stay on one line. On `created_at` and `updated_at` a string is a
//! date-time ([`coerce_value`]); elsewhere `datetime("...")` says a value is one.
//!
//! [`format_filter`] writes the canonical text, which [`parse_filter`] reads back to an equal
//! filter for every filter it can produce. Filters built otherwise may have no text form:
//! empty or one-element `And`/`Or`, empty `In`, non-finite numbers, non-date values on the
//! timestamps, and date-times (`ago` or absolute) on profile fields, which hold text.

use std::fmt::Write as _;

use chrono::SecondsFormat;

use crate::error::line_column;
use crate::filter::{MAX_AGO_SECONDS, MAX_FILTER_DEPTH, coerce_value};
use crate::value::parse_datetime;
use crate::{CmpOp, CoreError, DataValue, Filter, FilterField};

/// Longest accepted filter text, in bytes: a segment is a line or a paragraph, not a file.
pub const MAX_FILTER_TEXT_BYTES: usize = 8 * 1024;

/// Deepest nesting of parentheses and `not` while reading. Generous next to
/// [`MAX_FILTER_DEPTH`] (redundant parentheses add no depth to the filter), but it bounds
/// the reader's recursion before the filter's own bounds are checked.
const MAX_NESTING: usize = 4 * MAX_FILTER_DEPTH;

/// Units of `ago(...)`, largest first (the canonical text uses the largest exact one).
const UNITS: [(&str, i64); 5] = [
    ("w", 7 * 86_400),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

/// Words with a meaning of their own; they cannot be fields or bare values.
const RESERVED: [&str; 6] = ["and", "or", "not", "in", "contains", "exists"];

/// Reads the text form of a filter. The result is within [`Filter::check_bounds`].
pub fn parse_filter(text: &str) -> Result<Filter, CoreError> {
    if text.len() > MAX_FILTER_TEXT_BYTES {
        let mut at = MAX_FILTER_TEXT_BYTES;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        return Err(syntax_at(
            text,
            at,
            format!(
                "filter is {} bytes long, the maximum is {MAX_FILTER_TEXT_BYTES}",
                text.len()
            ),
        ));
    }
    let tokens = lex(text)?;
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
        nesting: 0,
    };
    if p.peek().kind == Kind::End {
        return Err(p.error_here("empty filter; write a condition such as country = \"FR\"".into()));
    }
    let filter = p.expr()?;
    let next = p.peek();
    if next.kind != Kind::End {
        let reason = if next.kind == Kind::Punct(")") {
            "unmatched \")\"".to_string()
        } else {
            format!(
                "expected and, or or the end of the filter, found {}",
                p.describe(next)
            )
        };
        return Err(p.error_here(reason));
    }
    filter.check_bounds()?;
    Ok(filter)
}

/// The canonical text of `filter`: single spaces, lowercase keywords, `!=`, only the
/// parentheses the structure needs, `ago` in its largest exact unit.
pub fn format_filter(filter: &Filter) -> String {
    let mut out = String::new();
    write_filter(&mut out, filter);
    out
}

// ---------------------------------------------------------------------------------------
// Writing.

fn write_filter(out: &mut String, f: &Filter) {
    match f {
        Filter::And(v) => write_list(out, v, " and ", |c| {
            matches!(c, Filter::And(_) | Filter::Or(_))
        }),
        Filter::Or(v) => write_list(out, v, " or ", |c| matches!(c, Filter::Or(_))),
        Filter::Not(c) => match &**c {
            Filter::Exists(field) => {
                let _ = write!(out, "{field} not exists");
            }
            Filter::And(_) | Filter::Or(_) => {
                out.push_str("not (");
                write_filter(out, c);
                out.push(')');
            }
            _ => {
                out.push_str("not ");
                write_filter(out, c);
            }
        },
        Filter::Cmp { field, op, value } => {
            let _ = write!(out, "{field} {} ", op_text(*op));
            write_value(out, field, value);
        }
        Filter::Ago { field, op, seconds } => {
            let (unit, per) = UNITS
                .into_iter()
                .find(|(_, per)| seconds % per == 0)
                .unwrap_or(("s", 1));
            let _ = write!(out, "{field} {} ago({}{unit})", op_text(*op), seconds / per);
        }
        Filter::In { field, values } => {
            let _ = write!(out, "{field} in [");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, field, v);
            }
            out.push(']');
        }
        Filter::Contains { field, text } => {
            let _ = write!(out, "{field} contains ");
            write_string(out, text);
        }
        Filter::Exists(field) => {
            let _ = write!(out, "{field} exists");
        }
    }
}

/// Children joined by `sep`; those that would otherwise regroup are parenthesised. An empty
/// list prints as `()`, which the reader refuses rather than misreads.
fn write_list(out: &mut String, v: &[Filter], sep: &str, needs_parens: fn(&Filter) -> bool) {
    if v.is_empty() {
        out.push_str("()");
    }
    for (i, c) in v.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        if needs_parens(c) {
            out.push('(');
            write_filter(out, c);
            out.push(')');
        } else {
            write_filter(out, c);
        }
    }
}

fn op_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "!=",
        CmpOp::Gt => ">",
        CmpOp::Gte => ">=",
        CmpOp::Lt => "<",
        CmpOp::Lte => "<=",
    }
}

fn write_value(out: &mut String, field: &FilterField, v: &DataValue) {
    match v {
        DataValue::String(s) => write_string(out, s),
        DataValue::Number(n) => write_number(out, *n),
        DataValue::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        DataValue::DateTime(t) => {
            let text = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            if field.is_timestamp() {
                write_string(out, &text);
            } else {
                out.push_str("datetime(");
                write_string(out, &text);
                out.push(')');
            }
        }
    }
}

/// Shortest text that reads back to the same number; exponents only for the very large
/// and very small, where plain digits would be unreadable.
fn write_number(out: &mut String, n: f64) {
    let a = n.abs();
    let _ = if a != 0.0 && !(1e-6..1e16).contains(&a) {
        write!(out, "{n:e}")
    } else {
        write!(out, "{n}")
    };
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------
// Reading: a lexer into tokens with their byte offsets, then recursive descent.

#[derive(Debug, Clone, PartialEq)]
enum Kind {
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
struct Token {
    kind: Kind,
    /// Byte offset in the text.
    at: usize,
}

fn syntax_at(text: &str, at: usize, reason: String) -> CoreError {
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

fn lex(text: &str) -> Result<Vec<Token>, CoreError> {
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

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    pos: usize,
    nesting: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if t.kind != Kind::End {
            self.pos += 1;
        }
        t
    }

    fn error_at(&self, t: &Token, reason: String) -> CoreError {
        syntax_at(self.text, t.at, reason)
    }

    fn error_here(&self, reason: String) -> CoreError {
        self.error_at(self.peek(), reason)
    }

    /// Whether the next token is the keyword `kw` (any case); consumes it if so.
    fn keyword(&mut self, kw: &str) -> bool {
        let hit = matches!(&self.peek().kind, Kind::Word(w) if w.eq_ignore_ascii_case(kw));
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn punct(&mut self, p: &'static str) -> bool {
        let hit = self.peek().kind == Kind::Punct(p);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// What a token is, for "found ..." in messages.
    fn describe(&self, t: &Token) -> String {
        match &t.kind {
            Kind::Word(w) if is_reserved(w) => format!("the keyword {:?}", w.to_lowercase()),
            Kind::Word(w) => format!("{w:?}"),
            Kind::Str(s) => {
                let short: String = s.chars().take(24).collect();
                let more = if short.len() < s.len() { "..." } else { "" };
                format!("the string {short:?}{more}")
            }
            Kind::Num { text, unit } => format!("the number {text}{unit}"),
            Kind::Punct(p) => format!("{p:?}"),
            Kind::End => "end of input".into(),
        }
    }

    fn expr(&mut self) -> Result<Filter, CoreError> {
        let mut any = vec![self.and_expr()?];
        while self.keyword("or") {
            any.push(self.and_expr()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Filter::Or(any)
        })
    }

    fn and_expr(&mut self) -> Result<Filter, CoreError> {
        let mut all = vec![self.unary()?];
        while self.keyword("and") {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Filter::And(all)
        })
    }

    fn unary(&mut self) -> Result<Filter, CoreError> {
        let start = self.peek().clone();
        let nested = matches!(&start.kind, Kind::Word(w) if w.eq_ignore_ascii_case("not"))
            || start.kind == Kind::Punct("(");
        if nested {
            self.nesting += 1;
            if self.nesting > MAX_NESTING {
                return Err(self.error_at(
                    &start,
                    format!("nested deeper than {MAX_NESTING} levels of parentheses and \"not\""),
                ));
            }
        }
        let f = if self.keyword("not") {
            Filter::Not(Box::new(self.unary()?))
        } else if self.punct("(") {
            if self.peek().kind == Kind::Punct(")") {
                return Err(self.error_here(format!(
                    "expected a condition after \"(\", found {}",
                    self.describe(self.peek())
                )));
            }
            let inner = self.expr()?;
            if !self.punct(")") {
                let (line, column) = line_column(self.text, start.at);
                return Err(self.error_here(format!(
                    "expected \")\" to close the \"(\" at line {line}, column {column}, found {}",
                    self.describe(self.peek())
                )));
            }
            inner
        } else {
            self.condition()?
        };
        if nested {
            self.nesting -= 1;
        }
        Ok(f)
    }

    fn condition(&mut self) -> Result<Filter, CoreError> {
        let t = self.next();
        let name = match &t.kind {
            Kind::Word(w) if !is_reserved(w) => w.clone(),
            _ => {
                return Err(self.error_at(
                    &t,
                    format!(
                        "expected a condition such as country = \"FR\", found {}",
                        self.describe(&t)
                    ),
                ));
            }
        };
        let field = FilterField::parse(&name).map_err(|e| {
            self.error_at(
                &t,
                match e {
                    CoreError::Filter { reason, .. } => reason,
                    other => other.to_string(),
                },
            )
        })?;
        let op_token = self.next();
        let op = match &op_token.kind {
            Kind::Punct("=") => CmpOp::Eq,
            Kind::Punct("!=" | "<>") => CmpOp::Ne,
            Kind::Punct(">") => CmpOp::Gt,
            Kind::Punct(">=") => CmpOp::Gte,
            Kind::Punct("<") => CmpOp::Lt,
            Kind::Punct("<=") => CmpOp::Lte,
            Kind::Word(w) => match w.to_ascii_lowercase().as_str() {
                "exists" => return Ok(Filter::Exists(field)),
                "not" if self.keyword("exists") => {
                    return Ok(Filter::Not(Box::new(Filter::Exists(field))));
                }
                "not" => {
                    return Err(self.error_here(format!(
                        "expected \"exists\" after \"{name} not\", found {}; to negate a comparison write not {name} ...",
                        self.describe(self.peek())
                    )));
                }
                "contains" => return self.contains(field),
                "in" => return self.in_list(field),
                _ => return Err(self.expected_operator(&name, &op_token)),
            },
            _ => return Err(self.expected_operator(&name, &op_token)),
        };
        let value_token = self.peek().clone();
        if matches!(&value_token.kind, Kind::Word(w) if w.eq_ignore_ascii_case("ago")) {
            self.pos += 1;
            let seconds = self.ago_args(&value_token)?;
            self.no_dates_on_profile(&field, &value_token)?;
            return Ok(Filter::Ago { field, op, seconds });
        }
        let after = format!("after {:?}", op_text(op));
        let value = self.value(&field, &after)?;
        Ok(Filter::Cmp { field, op, value })
    }

    fn expected_operator(&self, name: &str, found: &Token) -> CoreError {
        self.error_at(
            found,
            format!(
                "expected an operator after {name} (=, !=, <>, >, >=, <, <=, in, contains, exists or not exists), found {}",
                self.describe(found)
            ),
        )
    }

    fn contains(&mut self, field: FilterField) -> Result<Filter, CoreError> {
        let t = self.next();
        match t.kind {
            Kind::Str(text) => Ok(Filter::Contains { field, text }),
            _ => Err(self.error_at(
                &t,
                format!(
                    "expected a quoted string after \"contains\", found {}",
                    self.describe(&t)
                ),
            )),
        }
    }

    fn in_list(&mut self, field: FilterField) -> Result<Filter, CoreError> {
        let open = self.peek().clone();
        if !self.punct("[") {
            return Err(self.error_here(format!(
                "expected \"[\" after \"in\", as in country in [\"FR\", \"DE\"], found {}",
                self.describe(&open)
            )));
        }
        if self.peek().kind == Kind::Punct("]") {
            return Err(self.error_here("empty list; give at least one value".into()));
        }
        let mut values = vec![self.value(&field, "in the list")?];
        while self.punct(",") {
            values.push(self.value(&field, "after \",\"")?);
        }
        if !self.punct("]") {
            let (line, column) = line_column(self.text, open.at);
            return Err(self.error_here(format!(
                "expected \",\" or \"]\" in the list opened at line {line}, column {column}, found {}",
                self.describe(self.peek())
            )));
        }
        Ok(Filter::In { field, values })
    }

    /// One value, checked for `field`; `after` says where, for messages.
    fn value(&mut self, field: &FilterField, after: &str) -> Result<DataValue, CoreError> {
        let t = self.next();
        let value = match &t.kind {
            Kind::Str(s) => DataValue::String(s.clone()),
            Kind::Num { text, unit } if unit.is_empty() => match text.parse::<f64>() {
                Ok(n) if n.is_finite() => DataValue::Number(n),
                _ => return Err(self.error_at(&t, format!("number {text} is out of range"))),
            },
            Kind::Num { text, unit } => {
                return Err(self.error_at(
                    &t,
                    format!(
                        "unexpected {unit:?} after the number {text}; relative dates are written ago({text}{unit})"
                    ),
                ));
            }
            Kind::Word(w) => match w.to_ascii_lowercase().as_str() {
                "true" => DataValue::Bool(true),
                "false" => DataValue::Bool(false),
                "datetime" => {
                    let v = self.datetime_arg(&t)?;
                    self.no_dates_on_profile(field, &t)?;
                    v
                }
                "ago" => {
                    return Err(self.error_at(
                        &t,
                        "ago(...) only follows a comparison (=, !=, >, >=, <, <=), not in or contains".into(),
                    ));
                }
                lower if is_reserved(lower) => {
                    return Err(self.error_at(
                        &t,
                        format!(
                            "expected a value {after}, found the keyword {lower:?}; quote it to mean the text \"{w}\""
                        ),
                    ));
                }
                _ => {
                    return Err(self.error_at(
                        &t,
                        format!("expected a value {after}, found {w:?}; quote text, as in \"{w}\""),
                    ));
                }
            },
            _ => {
                return Err(self.error_at(
                    &t,
                    format!(
                        "expected a value {after}, found {}; a value is a quoted string, a number, true or false",
                        self.describe(&t)
                    ),
                ));
            }
        };
        coerce_value(field, value).map_err(|e| self.error_at(&t, e.to_string()))
    }

    /// `ago` was read; reads `(<integer><unit>)` and returns seconds.
    fn ago_args(&mut self, ago: &Token) -> Result<i64, CoreError> {
        if !self.punct("(") {
            return Err(self.error_here(format!(
                "expected \"(\" after ago, as in ago(30d), found {}",
                self.describe(self.peek())
            )));
        }
        let t = self.next();
        let units = "s, m, h, d or w";
        let seconds = match &t.kind {
            Kind::Num { text, unit } => {
                let per = UNITS.iter().find(|(u, _)| u == unit).map(|(_, per)| *per);
                let Some(per) = per else {
                    let reason = if unit.is_empty() {
                        format!("ago({text}) needs a unit, one of {units}, as in ago({text}d)")
                    } else {
                        format!("unknown unit {unit:?} in ago(...); use {units}")
                    };
                    return Err(self.error_at(&t, reason));
                };
                let Ok(n) = text.parse::<i64>() else {
                    let reason = if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                        format!("ago(...) spans at most {MAX_AGO_SECONDS} seconds (1000 years)")
                    } else {
                        format!("ago(...) takes a whole number, as in ago(30d), not {text}")
                    };
                    return Err(self.error_at(&t, reason));
                };
                match n.checked_mul(per) {
                    Some(s) if s.unsigned_abs() <= MAX_AGO_SECONDS as u64 => s,
                    _ => {
                        return Err(self.error_at(
                            &t,
                            format!(
                                "ago(...) spans at most {MAX_AGO_SECONDS} seconds (1000 years)"
                            ),
                        ));
                    }
                }
            }
            _ => {
                return Err(self.error_at(
                    &t,
                    format!(
                        "expected a whole number and a unit ({units}) in ago(...), as in ago(30d), found {}",
                        self.describe(&t)
                    ),
                ));
            }
        };
        self.close(ago, "ago(")?;
        Ok(seconds)
    }

    /// `datetime` was read; reads `("<date-time>")`.
    fn datetime_arg(&mut self, kw: &Token) -> Result<DataValue, CoreError> {
        if !self.punct("(") {
            return Err(self.error_here(format!(
                "expected \"(\" after datetime, as in datetime(\"2024-03-01T10:30:00Z\"), found {}",
                self.describe(self.peek())
            )));
        }
        let t = self.next();
        let value = match &t.kind {
            Kind::Str(s) => match parse_datetime(s) {
                Some(at) => DataValue::DateTime(at),
                None => {
                    return Err(self.error_at(
                        &t,
                        format!(
                            "{s:?} is not an RFC 3339 date-time such as \"2024-03-01T10:30:00Z\""
                        ),
                    ));
                }
            },
            _ => {
                return Err(self.error_at(
                    &t,
                    format!(
                        "expected a quoted date-time in datetime(...), found {}",
                        self.describe(&t)
                    ),
                ));
            }
        };
        self.close(kw, "datetime(")?;
        Ok(value)
    }

    fn close(&mut self, open: &Token, what: &str) -> Result<(), CoreError> {
        if self.punct(")") {
            return Ok(());
        }
        let (line, column) = line_column(self.text, open.at);
        Err(self.error_here(format!(
            "expected \")\" to close the {what} at line {line}, column {column}, found {}",
            self.describe(self.peek())
        )))
    }

    fn no_dates_on_profile(&self, field: &FilterField, t: &Token) -> Result<(), CoreError> {
        match field {
            FilterField::Profile(p) => Err(self.error_at(
                t,
                format!("{p} holds text and does not compare with date-times"),
            )),
            _ => Ok(()),
        }
    }
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| word.eq_ignore_ascii_case(r))
}

#[cfg(test)]
mod tests;
