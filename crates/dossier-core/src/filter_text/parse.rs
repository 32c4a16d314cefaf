//! Recursive descent over the tokens, following the grammar in the parent module.

use super::lex::{Kind, Token, lex, syntax_at};
use super::{UNITS, op_text};
use crate::error::line_column;
use crate::filter::{MAX_AGO_SECONDS, MAX_FILTER_DEPTH, coerce_value};
use crate::value::parse_datetime;
use crate::{CmpOp, CoreError, DataValue, Filter, FilterField};

/// Deepest nesting of parentheses and `not` while reading. Generous next to
/// [`MAX_FILTER_DEPTH`] (redundant parentheses add no depth to the filter), but it bounds
/// the reader's recursion before the filter's own bounds are checked.
const MAX_NESTING: usize = 4 * MAX_FILTER_DEPTH;

/// Words with a meaning of their own; they cannot be fields or bare values.
const RESERVED: [&str; 6] = ["and", "or", "not", "in", "contains", "exists"];

/// Reads `text` (already within the length limit) into a filter; bounds are the caller's.
pub(super) fn read(text: &str) -> Result<Filter, CoreError> {
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
    Ok(filter)
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
