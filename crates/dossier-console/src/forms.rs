//! What the editors of segments, shortcuts and keys share: where an API error points (line
//! and column, as the API's message gives them), that place shown under its line, dates,
//! JSON answers for the live endpoints, and the write fields every form carries.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ConsoleError;
use crate::console::{Signed, State};
use crate::html::esc;

/// The line and column an API message names (`... at line 2, column 7: ...`), from 1.
pub(crate) fn position(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("line ")? + "line ".len()..];
    let (line, rest) = rest.split_once(", column ")?;
    let line = line.trim().parse().ok()?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let column = rest[..digits].parse().ok()?;
    (line >= 1 && column >= 1).then_some((line, column))
}

/// An API error about `source`, with the line it names and a caret under its column, as
/// an alert: the message first (what a screen reader reads), then the place.
pub(crate) fn error_at(source: &str, message: &str) -> String {
    let mut out = format!(
        r#"<div class="error" role="alert" id="editor-error"><p>{}</p>"#,
        esc(message)
    );
    if let Some((line, column)) = position(message)
        && let Some(text) = source.lines().nth(line - 1)
    {
        // Columns count characters; a tab keeps its width by being copied.
        let pad: String = text
            .chars()
            .take(column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            r#"<pre class="pointer" aria-label="line {line}, column {column}">{}
{}^</pre>"#,
            esc(text),
            pad
        ));
    }
    out.push_str("</div>");
    out
}

/// A GraphQL date-time to the second, in UTC; a dash when there is none.
pub(crate) fn when(v: &Value) -> String {
    match v.as_str() {
        Some(t) => t
            .get(..19)
            .map_or_else(|| t.to_string(), |s| s.replace('T', " ")),
        None => "—".to_string(),
    }
}

/// A JSON answer of a live endpoint (never cached: it is the caller's data).
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The hidden field carrying the session's CSRF token.
pub(crate) fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

/// A form that carries only the session's CSRF token (sign-out, revoke, delete).
#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: Option<String>,
}

/// Deletes the saved thing `name` through `document` (a `delete...(name:)` mutation answering
/// a boolean in `field`) and goes back to `list`; an unknown name (or another workspace's)
/// is not found.
pub(crate) async fn delete_named(
    c: &State,
    s: &Signed,
    (document, field): (&str, &str),
    (list, noun): (&str, &str),
    name: &str,
) -> Response {
    match c.query(&s.caller, document, json!({ "name": name })).await {
        Ok(d) if d[field] == true => s.redirect(c, list, format!("{noun} {name} deleted.")),
        Ok(_) => s.error(&ConsoleError::NotFound),
        Err(e) => s.error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_read_from_api_messages() {
        assert_eq!(
            position("syntax error at line 2, column 14: expected a value"),
            Some((2, 14))
        );
        assert_eq!(
            position("invalid template at line 1, column 3: empty placeholder"),
            Some((1, 3))
        );
        assert_eq!(position("no line here"), None);
        assert_eq!(position("at line 0, column 1"), None);
    }

    #[test]
    fn the_caret_sits_under_the_column() {
        let html = error_at(
            "a = 1\ncountry = <\"FR\"",
            "syntax error at line 2, column 11: unexpected <",
        );
        assert!(
            html.contains("country = &lt;&quot;FR&quot;\n          ^"),
            "{html}"
        );
        assert!(html.contains(r#"role="alert""#));
    }
}
