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
//! Fields are `country`, `email`, ... (the profile fields), `created_at`, `updated_at`,
//! `data.<key>` and `agg.<name>` ([`FilterField::parse`]). Keywords are case-insensitive,
//! fields are not; `and`, `or`, `not`, `in`, `contains` and `exists` are reserved (quote them
//! to mean text). Strings are double-quoted with the escapes `\"`, `\\` and `\n` and stay on
//! one line. Numbers are written `50`, `-3.5` or `1e3`. On `created_at` and `updated_at` a
//! string is a date-time ([`coerce_value`](crate::coerce_value)); elsewhere
//! `datetime("2024-03-01T10:30:00Z")` says a value is one. `ago(30d)` is 30 days before the
//! filter runs ([`Filter::Ago`]); a negative count looks ahead. Text is at most
//! [`MAX_FILTER_TEXT_BYTES`] long.
//!
//! [`format_filter`] writes the canonical text, which [`parse_filter`] reads back to an equal
//! filter for every filter it can produce. Filters built otherwise may have no text form:
//! empty or one-element `And`/`Or`, empty `In`, non-finite numbers, non-date values on the
//! timestamps, and date-times (`ago` or absolute) on profile fields, which hold text.

use std::fmt::Write as _;

use chrono::SecondsFormat;

use self::lex::syntax_at;
use crate::{CmpOp, CoreError, DataValue, Filter, FilterField};

/// Longest accepted filter text, in bytes: a segment is a line or a paragraph, not a file.
pub const MAX_FILTER_TEXT_BYTES: usize = 8 * 1024;

/// Units of `ago(...)`: the same as every duration in Dossier.
use crate::duration::DURATION_UNITS as UNITS;

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
    let filter = parse::read(text)?;
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

mod lex;
mod parse;

#[cfg(test)]
mod tests;
