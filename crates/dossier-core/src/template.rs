//! Shortcut templates: the canned answers support teams write, such as
//! `Hello {{ name.first | "there" }}, your order {{ session.data.order_no }} is on its way.`
//!
//! A template is literal text with placeholders `{{ path }}` or `{{ path | "fallback" }}`
//! (spaces inside the braces optional). There is nothing else: no conditions, loops, filters
//! or code, so rendering is plain substitution, and the size limits below bound both the
//! time and the output. Templates are checked once, when saved ([`Template::parse`]), and
//! the store supplies values through [`TemplateContext`].
//!
//! A `}}` outside a placeholder is ordinary text (so is a single `{` or `}`); there is no
//! escape for a literal `{{`.

use std::fmt;
use std::str::FromStr;

use chrono::SecondsFormat;

use crate::error::line_column;
use crate::{CoreError, DataKey, DataValue, ProfileField};

/// Longest accepted template source, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// Most placeholders in one template.
pub const MAX_PLACEHOLDERS: usize = 256;
/// Longest rendered text, in bytes; longer output is cut at a character boundary.
pub const MAX_RENDER_BYTES: usize = 64 * 1024;

/// Every path a placeholder can name, as written.
const PATHS: &str = "name.first, name.last, name.full, email, phone, first_name, last_name, \
                     company, country, city, locale, id, data.<key>, agg.<name>, session.id, \
                     session.kind, session.started_at or session.data.<key>";

/// What a placeholder shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplatePath {
    /// A native profile field: `email`, `first_name`, `country`, ...
    Profile(ProfileField),
    /// `name.first`, `name.last`, `name.full` (first and last joined by a space).
    NameFirst,
    NameLast,
    NameFull,
    /// The contact's id.
    Id,
    /// `data.<key>`: the contact's custom data.
    Data(DataKey),
    /// `agg.<name>`: an aggregate of the contact's sessions.
    Agg(DataKey),
    /// `session.id`, `session.kind`, `session.started_at`, `session.data.<key>`: the session
    /// the template is rendered for, if any.
    SessionId,
    SessionKind,
    SessionStartedAt,
    SessionData(DataKey),
}

impl FromStr for TemplatePath {
    type Err = String;

    /// Reads a path as written in a placeholder; the error says what is wrong with it.
    fn from_str(path: &str) -> Result<Self, String> {
        let key = |k: &str| DataKey::new(k).map_err(|e| e.to_string());
        let (root, rest) = match path.split_once('.') {
            Some((root, rest)) => (root, Some(rest)),
            None => (path, None),
        };
        Ok(match (root, rest) {
            ("name", Some("first")) => Self::NameFirst,
            ("name", Some("last")) => Self::NameLast,
            ("name", Some("full")) => Self::NameFull,
            ("name", _) => {
                return Err(format!(
                    "{path:?} is not a value; use name.first, name.last or name.full"
                ));
            }
            ("id", None) => Self::Id,
            ("data", Some(k)) => Self::Data(key(k)?),
            ("agg", Some(k)) => Self::Agg(key(k)?),
            ("session", Some("id")) => Self::SessionId,
            ("session", Some("kind")) => Self::SessionKind,
            ("session", Some("started_at")) => Self::SessionStartedAt,
            ("session", Some(rest)) if rest.starts_with("data.") => {
                Self::SessionData(key(&rest["data.".len()..])?)
            }
            ("data" | "agg" | "session", _) => {
                let want = match root {
                    "data" => "data.<key>",
                    "agg" => "agg.<name>",
                    _ => "session.id, session.kind, session.started_at or session.data.<key>",
                };
                return Err(format!("{path:?} is incomplete or unknown; use {want}"));
            }
            _ => match (root.parse::<ProfileField>(), rest) {
                (Ok(field), None) => Self::Profile(field),
                (Ok(field), Some(_)) => {
                    return Err(format!("{field} has no parts; write {{{{ {field} }}}}"));
                }
                (Err(_), _) => {
                    return Err(format!("unknown value {path:?}; use one of {PATHS}"));
                }
            },
        })
    }
}

/// The path as written in a placeholder.
impl fmt::Display for TemplatePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Profile(p) => f.write_str(p.name()),
            Self::NameFirst => f.write_str("name.first"),
            Self::NameLast => f.write_str("name.last"),
            Self::NameFull => f.write_str("name.full"),
            Self::Id => f.write_str("id"),
            Self::Data(k) => write!(f, "data.{k}"),
            Self::Agg(k) => write!(f, "agg.{k}"),
            Self::SessionId => f.write_str("session.id"),
            Self::SessionKind => f.write_str("session.kind"),
            Self::SessionStartedAt => f.write_str("session.started_at"),
            Self::SessionData(k) => write!(f, "session.data.{k}"),
        }
    }
}

/// Where rendering gets values; the store implements it for one contact (and session).
pub trait TemplateContext {
    /// The value at `path`, or `None` when there is none (no such data, no session, ...).
    fn value(&self, path: &TemplatePath) -> Option<DataValue>;
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Slot {
        path: TemplatePath,
        fallback: Option<String>,
    },
}

/// A checked template, ready to render any number of times.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Checks `src` and splits it into text and placeholders. Errors give the line and
    /// column (in characters) of the problem.
    pub fn parse(src: &str) -> Result<Self, CoreError> {
        let error = |at: usize, reason: String| {
            let (line, column) = line_column(src, at);
            CoreError::Template {
                line,
                column,
                reason,
            }
        };
        if src.len() > MAX_TEMPLATE_BYTES {
            let mut at = MAX_TEMPLATE_BYTES;
            while !src.is_char_boundary(at) {
                at -= 1;
            }
            return Err(error(
                at,
                format!(
                    "template is {} bytes long, the maximum is {MAX_TEMPLATE_BYTES}",
                    src.len()
                ),
            ));
        }
        let mut parts = vec![];
        let mut slots = 0;
        let mut at = 0;
        while let Some(found) = src[at..].find("{{") {
            let open = at + found;
            if open > at {
                parts.push(Part::Text(src[at..open].to_string()));
            }
            slots += 1;
            if slots > MAX_PLACEHOLDERS {
                return Err(error(
                    open,
                    format!("more than {MAX_PLACEHOLDERS} placeholders"),
                ));
            }
            let (part, end) = placeholder(src, open).map_err(|(at, reason)| error(at, reason))?;
            parts.push(part);
            at = end;
        }
        if at < src.len() {
            parts.push(Part::Text(src[at..].to_string()));
        }
        Ok(Self {
            source: src.to_string(),
            parts,
        })
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Each path the template shows, once, in order of first use: what a context must
    /// be able to supply.
    pub fn paths(&self) -> Vec<&TemplatePath> {
        let mut out: Vec<&TemplatePath> = vec![];
        for part in &self.parts {
            if let Part::Slot { path, .. } = part
                && !out.contains(&path)
            {
                out.push(path);
            }
        }
        out
    }

    /// The text with each placeholder replaced by its value ([`human_text`]); a missing or
    /// blank value shows the fallback, or nothing. The result is at most
    /// [`MAX_RENDER_BYTES`] long.
    pub fn render(&self, ctx: &impl TemplateContext) -> String {
        let mut out = String::new();
        for part in &self.parts {
            let value;
            let piece: &str = match part {
                Part::Text(t) => t,
                Part::Slot { path, fallback } => {
                    value = ctx.value(path).map(|v| human_text(&v));
                    match (&value, fallback) {
                        (Some(v), _) if !v.trim().is_empty() => v,
                        (_, Some(f)) => f,
                        _ => "",
                    }
                }
            };
            let room = MAX_RENDER_BYTES - out.len();
            if piece.len() > room {
                let mut cut = room;
                while !piece.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push_str(&piece[..cut]);
                break;
            }
            out.push_str(piece);
        }
        out
    }
}

/// A value as a person reads it: strings as they are, whole numbers without `.0` (others
/// in their shortest exact form, such as `12.5`), `true`/`false`, and date-times in RFC 3339
/// UTC to the second (`2024-05-01T10:00:00Z`).
pub fn human_text(value: &DataValue) -> String {
    match value {
        DataValue::String(s) => s.clone(),
        // `0.0 == -0.0`: a zero never shows a sign.
        DataValue::Number(n) if *n == 0.0 => "0".into(),
        DataValue::Number(n) => n.to_string(),
        DataValue::Bool(b) => b.to_string(),
        DataValue::DateTime(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// Reads the placeholder whose `{{` is at byte `open`; returns it and the byte after its
/// `}}`, or the byte offset and reason of the problem.
fn placeholder(src: &str, open: usize) -> Result<(Part, usize), (usize, String)> {
    let unterminated = || {
        (
            open,
            "unterminated {{; close the placeholder with }}".to_string(),
        )
    };
    let skip_spaces = |i: usize| {
        i + src[i..]
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(src.len() - i)
    };
    let path_at = skip_spaces(open + 2);
    let path_len = src[path_at..]
        .find(|c: char| c.is_whitespace() || c == '|' || c == '}')
        .unwrap_or(src.len() - path_at);
    if path_at + path_len == src.len() {
        return Err(unterminated());
    }
    let raw = &src[path_at..path_at + path_len];
    if raw.is_empty() {
        let reason = if src[path_at..].starts_with("}}") {
            "empty placeholder; name a value, as in {{ name.first }}"
        } else {
            "a placeholder starts with the value it shows, as in {{ name.first | \"there\" }}"
        };
        return Err((path_at, reason.to_string()));
    }
    let path: TemplatePath = raw.parse().map_err(|e| (path_at, e))?;
    let mut i = skip_spaces(path_at + path_len);
    let mut fallback = None;
    if src[i..].starts_with('|') {
        i = skip_spaces(i + 1);
        let (text, end) = fallback_string(src, i)?;
        fallback = Some(text);
        i = skip_spaces(end);
    }
    if src[i..].starts_with("}}") {
        return Ok((Part::Slot { path, fallback }, i + 2));
    }
    match src[i..].chars().next() {
        None => Err(unterminated()),
        Some(c) => {
            let (line, column) = line_column(src, open);
            Err((
                i,
                format!(
                    "expected }}}} to close the placeholder opened at line {line}, column {column}, found {c:?}"
                ),
            ))
        }
    }
}

/// The quoted fallback starting at byte `at` (escapes `\"`, `\\`, `\n`; one line).
fn fallback_string(src: &str, at: usize) -> Result<(String, usize), (usize, String)> {
    if !src[at..].starts_with('"') {
        let found = match src[at..].chars().next() {
            Some(c) => format!("{c:?}"),
            None => "end of template".into(),
        };
        return Err((
            at,
            format!(
                "a fallback is a quoted string, as in {{{{ name.first | \"there\" }}}}, found {found}"
            ),
        ));
    }
    let unterminated = || {
        (
            at,
            "unterminated fallback string; close it with \" on the same line".to_string(),
        )
    };
    let mut text = String::new();
    let mut chars = src[at..].char_indices().skip(1);
    loop {
        match chars.next() {
            Some((i, '"')) => return Ok((text, at + i + 1)),
            Some((i, '\\')) => match chars.next() {
                Some((_, '"')) => text.push('"'),
                Some((_, '\\')) => text.push('\\'),
                Some((_, 'n')) => text.push('\n'),
                Some((_, c)) if c != '\n' => {
                    return Err((
                        at + i,
                        format!("unknown escape \"\\{c}\" in a fallback; use \\\", \\\\ or \\n"),
                    ));
                }
                _ => return Err(unterminated()),
            },
            Some((_, '\n')) | None => return Err(unterminated()),
            Some((_, c)) => text.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
