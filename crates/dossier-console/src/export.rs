//! `/contacts.csv`: the contacts a search and filter match, as CSV, streamed a page at a
//! time through the same `contacts` query as the list, so memory stays one page whatever
//! the count and every page passes the API's checks.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dossier_gateway::Caller;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::console::{Signed, State};
use crate::contacts::Search;
use crate::html::text;

const PAGE: &str = "query($where: ContactFilter, $filter: String, $first: Int, $after: String) { contacts(where: $where, filter: $filter, first: $first, after: $after) { pageInfo { hasNextPage endCursor } edges { node { id email phone firstName lastName company country city locale createdAt updatedAt data aggregates } } } }";

/// Columns: header, and the field of a contact node.
const COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("email", "email"),
    ("phone", "phone"),
    ("first_name", "firstName"),
    ("last_name", "lastName"),
    ("company", "company"),
    ("country", "country"),
    ("city", "city"),
    ("locale", "locale"),
    ("created_at", "createdAt"),
    ("updated_at", "updatedAt"),
    ("data", "data"),
    ("aggregates", "aggregates"),
];

/// `GET /contacts.csv?q=...&filter=...`.
pub(crate) async fn contacts(
    Extract(c): Extract<State>,
    s: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let search = Search::of(&q);
    let (where_, filter, first) = (
        search.where_(),
        search.filter().map(str::to_string),
        c.max_page_size,
    );
    let vars = move |after: Option<String>| json!({ "where": where_, "filter": filter, "first": first, "after": after });
    // The first page before the answer starts: a refusal (a filter that does not parse, the
    // role) is then a proper error rather than a cut-off file.
    let page = match c.query(&s.caller, PAGE, vars(None)).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let header_row = csv_row(COLUMNS.iter().map(|(h, _)| (*h).to_string()));
    let caller = s.caller.clone();
    let pages = futures::stream::unfold(Next::Page(page), move |next| {
        let (c, caller, vars) = (c.clone(), caller.clone(), vars.clone());
        async move { step(&c, &caller, next, vars).await }
    });
    let body =
        futures::stream::once(async move { Ok::<_, std::io::Error>(header_row) }).chain(pages);
    let mut r = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(r#"attachment; filename="contacts.csv""#),
    );
    r
}

enum Next {
    /// A page read, to write out.
    Page(Value),
    /// The cursor to read from.
    After(String),
    Done,
}

/// Writes out a page, or reads the next one. A page that fails mid-file ends the file with a
/// line saying so (the status has long been sent).
async fn step(
    c: &State,
    caller: &Caller,
    next: Next,
    vars: impl Fn(Option<String>) -> Value,
) -> Option<(Result<String, std::io::Error>, Next)> {
    let data = match next {
        Next::Done => return None,
        Next::Page(d) => d,
        Next::After(cursor) => match c.query(caller, PAGE, vars(Some(cursor))).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "a CSV export stopped");
                return Some((Err(std::io::Error::other(e.to_string())), Next::Done));
            }
        },
    };
    let contacts = &data["contacts"];
    let mut out = String::new();
    for edge in contacts["edges"].as_array().into_iter().flatten() {
        let n = &edge["node"];
        out.push_str(&csv_row(COLUMNS.iter().map(|(_, f)| match &n[*f] {
            Value::Object(_) | Value::Array(_) => n[*f].to_string(),
            v => text(v),
        })));
    }
    let next = match contacts["pageInfo"]["endCursor"].as_str() {
        Some(end) if contacts["pageInfo"]["hasNextPage"] == true => Next::After(end.to_string()),
        _ => Next::Done,
    };
    Some((Ok(out), next))
}

/// One CSV line (RFC 4180 quoting). A cell a spreadsheet would run as a formula (starting
/// with `=`, `+`, `-`, `@`, tab or carriage return) is prefixed with `'`: the data comes from
/// sources anyone may write to.
pub(crate) fn csv_row(cells: impl Iterator<Item = String>) -> String {
    let mut line = cells
        .map(|cell| {
            let cell = match cell.chars().next() {
                Some('=' | '+' | '-' | '@' | '\t' | '\r') if cell.parse::<f64>().is_err() => {
                    format!("'{cell}")
                }
                _ => cell,
            };
            if cell.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", cell.replace('"', "\"\""))
            } else {
                cell
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::csv_row;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        let row = |cells: &[&str]| csv_row(cells.iter().map(|c| c.to_string()));
        assert_eq!(
            row(&["a", "b,c", "say \"hi\""]),
            "a,\"b,c\",\"say \"\"hi\"\"\"\r\n"
        );
        assert_eq!(
            row(&["=HYPERLINK(\"x\")", "-3.5", "@me"]),
            "\"'=HYPERLINK(\"\"x\"\")\",-3.5,'@me\r\n"
        );
        assert_eq!(row(&["line\nbreak"]), "\"line\nbreak\"\r\n");
    }
}
