//! `/contacts` (search by email, phone or name, a filter with its builder and live count,
//! paged, with the total; `/contacts.csv` exports it) and `/contacts/{id}` (a card).

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::ConsoleError;
use crate::console::{Signed, State};
use crate::html::{esc, text, url};

/// Contacts on one page of the list (less when the server allows less).
const PAGE: usize = 25;

const LIST: &str = "query($where: ContactFilter, $filter: String, $first: Int, $after: String, $count: Boolean!) { contacts(where: $where, filter: $filter, first: $first, after: $after) { totalCount @include(if: $count) pageInfo { hasNextPage endCursor } edges { node { id email firstName lastName country updatedAt } } } }";

const CARD: &str = "query($id: ID!) { contact(id: $id) { id email phone firstName lastName company country city locale createdAt updatedAt data aggregates segments identities { kind value } origins { field source stream recordId at } sessions(first: 10) { pageInfo { hasNextPage } edges { node { id kind source stream externalId startedAt endedAt data } } } } }";

/// The fields the builder offers (the API's text form takes any `data.<key>` and
/// `agg.<name>` too).
const FIELDS: &[&str] = &[
    "email",
    "phone",
    "first_name",
    "last_name",
    "company",
    "country",
    "city",
    "locale",
    "created_at",
    "updated_at",
    "data.",
    "agg.",
];

/// The builder's operators, as the text form writes them.
const OPERATORS: &[&str] = &[
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "contains",
    "exists",
    "not exists",
];

/// What the contacts list is asked for: a search over email, phone and name, and a filter
/// in the API's text form (which the builder's condition, when added, extends).
pub(crate) struct Search {
    pub(crate) q: String,
    pub(crate) filter: String,
}

impl Search {
    pub(crate) fn of(q: &HashMap<String, String>) -> Self {
        let mut filter = q
            .get("filter")
            .map(|f| f.trim().to_string())
            .unwrap_or_default();
        if q.contains_key("add")
            && let Some(condition) = condition(q)
        {
            filter = if filter.is_empty() {
                condition
            } else {
                format!("({filter}) and {condition}")
            };
        }
        Self {
            // `email` was the search's name before it also looked at phones and names.
            q: q.get("q")
                .or_else(|| q.get("email"))
                .map(|e| e.trim().to_string())
                .unwrap_or_default(),
            filter,
        }
    }

    /// The search as the API's structured filter (the text filter travels apart).
    pub(crate) fn where_(&self) -> Value {
        if self.q.is_empty() {
            return Value::Null;
        }
        // A whole email is looked up by its index; anything else is searched for in emails,
        // phones and names (a scan).
        if let Some((user, domain)) = self.q.split_once('@')
            && !user.is_empty()
            && domain.contains('.')
            && !self.q.contains(char::is_whitespace)
        {
            return json!({ "field": "email", "eq": self.q.to_lowercase() });
        }
        let any: Vec<Value> = ["email", "phone", "first_name", "last_name"]
            .iter()
            .map(|f| json!({ "field": f, "contains": self.q }))
            .collect();
        json!({ "or": any })
    }

    /// The filter for the API: `None` when there is none.
    pub(crate) fn filter(&self) -> Option<&str> {
        (!self.filter.is_empty()).then_some(self.filter.as_str())
    }

    /// This search as a URL query (without `?`).
    pub(crate) fn query(&self) -> String {
        format!("q={}&filter={}", url(&self.q), url(&self.filter))
    }
}

/// The builder's condition (`field`, `op`, `value`) in the text form, if it is whole.
fn condition(q: &HashMap<String, String>) -> Option<String> {
    let field = q.get("field")?.trim();
    let op = q.get("op")?.trim();
    if field.is_empty() || field.ends_with('.') || !OPERATORS.contains(&op) {
        return None;
    }
    if op.ends_with("exists") {
        return Some(format!("{field} {op}"));
    }
    let raw = q.get("value")?.trim();
    let value = if raw.parse::<f64>().is_ok() || raw == "true" || raw == "false" {
        raw.to_string()
    } else {
        serde_json::to_string(raw).expect("a string serializes")
    };
    Some(format!("{field} {op} {value}"))
}

/// `GET /contacts?q=...&filter=...&after=...` (and `add` with `field`, `op`, `value`: the
/// builder's condition joined to the filter).
pub(crate) async fn list(
    Extract(c): Extract<State>,
    s: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let search = Search::of(&q);
    let after = q.get("after").filter(|a| !a.is_empty());
    // The total is counted for the first page and carried by the links to the next ones: a
    // count reads every match, a page only its own rows.
    let carried = after
        .and(q.get("total"))
        .and_then(|t| t.parse::<i64>().ok());
    let vars = json!({ "where": search.where_(), "filter": search.filter(), "first": PAGE.min(c.max_page_size), "after": after, "count": carried.is_none() });
    let mut body = form(&search);
    let data = match c.query(&s.caller, LIST, vars).await {
        Ok(d) => d,
        // A filter that does not parse is the user's to fix: keep the form, say where.
        Err(e) if e.status() == StatusCode::BAD_REQUEST => {
            let _ = write!(
                body,
                r#"<p class="error" role="alert">{}</p>"#,
                esc(&e.to_string())
            );
            return s.page(StatusCode::BAD_REQUEST, "Contacts", &body);
        }
        Err(e) => return s.error(&e),
    };
    let contacts = &data["contacts"];
    let total = carried.unwrap_or_else(|| contacts["totalCount"].as_i64().unwrap_or_default());
    let _ = write!(
        body,
        r#"<p>{total} contact{} · <a href="/contacts.csv?{}" download>Export as CSV</a></p>"#,
        if total == 1 { "" } else { "s" },
        esc(&search.query()),
    );
    let edges = contacts["edges"].as_array().cloned().unwrap_or_default();
    if !edges.is_empty() {
        body.push_str(
            r#"<div class="table"><table><thead><tr><th scope="col">Email</th><th scope="col">Name</th><th scope="col">Country</th><th scope="col">Updated</th></tr></thead><tbody>"#,
        );
        for edge in &edges {
            let n = &edge["node"];
            let id = text(&n["id"]);
            let email = text(&n["email"]);
            let _ = write!(
                body,
                r#"<tr><td><a href="/contacts/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                url(&id),
                esc(if email.is_empty() {
                    "(no email)"
                } else {
                    &email
                }),
                esc(&name(n)),
                esc(&text(&n["country"])),
                esc(&day(&n["updatedAt"])),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    let mut links = Vec::new();
    if after.is_some() {
        links.push(format!(
            r#"<a href="/contacts?{}">First page</a>"#,
            esc(&search.query())
        ));
    }
    if contacts["pageInfo"]["hasNextPage"] == true
        && let Some(end) = contacts["pageInfo"]["endCursor"].as_str()
    {
        links.push(format!(
            r#"<a href="/contacts?{}&amp;total={total}&amp;after={}" rel="next">Next page</a>"#,
            esc(&search.query()),
            url(end)
        ));
    }
    if !links.is_empty() {
        let _ = write!(
            body,
            r#"<nav aria-label="Pages"><p>{}</p></nav>"#,
            links.join(" · ")
        );
    }
    s.page(StatusCode::OK, "Contacts", &body)
}

/// The search form with the filter and its builder. The live count (segments.js, the
/// segment editor's) updates as the filter changes; without script, the form still works.
fn form(search: &Search) -> String {
    let fields: String = FIELDS
        .iter()
        .map(|f| format!(r#"<option value="{f}">"#))
        .collect();
    let ops: String = OPERATORS
        .iter()
        .map(|o| format!(r#"<option value="{}">{}</option>"#, esc(o), esc(o)))
        .collect();
    format!(
        r#"<form method="get" action="/contacts" role="search" class="filter">
<p><label for="q">Email, phone or name contains</label> <input id="q" name="q" type="search" value="{}"></p>
<p><label for="definition">Filter</label><br>
<textarea id="definition" name="filter" rows="3" spellcheck="false" data-count="/segments/-/count" aria-describedby="filter-help live-count">{}</textarea>
<br><span id="filter-help" class="muted">Conditions on profile fields, <code>data.&lt;key&gt;</code> and <code>agg.&lt;name&gt;</code> joined with <code>and</code>, <code>or</code>, <code>not</code>, e.g. <code>country = "FR" and agg.total_spent &gt; 100</code></span>
<br><output id="live-count" for="definition" aria-live="polite"></output></p>
<fieldset><legend>Add a condition</legend>
<label for="field">Field</label> <input id="field" name="field" list="fields" placeholder="country, data.plan, agg.total_spent">
<datalist id="fields">{fields}</datalist>
<label for="op">Operator</label> <select id="op" name="op">{ops}</select>
<label for="value">Value</label> <input id="value" name="value">
<button type="submit" name="add" value="1">Add condition</button>
</fieldset>
<p><button type="submit">Search</button></p>
</form>
<script src="/assets/segments.js" defer></script>"#,
        esc(&search.q),
        esc(&search.filter),
    )
}

fn name(n: &Value) -> String {
    [text(&n["firstName"]), text(&n["lastName"])]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn day(v: &Value) -> String {
    let t = text(v);
    t.get(..10).map(str::to_string).unwrap_or(t)
}

/// `GET /contacts/{id}`: 404 for an id the caller's workspace does not have.
pub(crate) async fn card(
    Extract(c): Extract<State>,
    s: Signed,
    Path(id): Path<String>,
) -> Response {
    // Contact ids are numbers: anything else names no contact (rather than a bad request).
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return s.error(&ConsoleError::NotFound);
    }
    let data = match c.query(&s.caller, CARD, json!({ "id": id })).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let k = &data["contact"];
    if k.is_null() {
        return s.error(&ConsoleError::NotFound);
    }
    let title = match (name(k), text(&k["email"])) {
        (n, _) if !n.is_empty() => n,
        (_, e) if !e.is_empty() => e,
        _ => format!("Contact {}", text(&k["id"])),
    };
    let mut body = String::from("<section><h2>Profile</h2><dl>");
    for (label, field) in [
        ("Id", "id"),
        ("Email", "email"),
        ("Phone", "phone"),
        ("First name", "firstName"),
        ("Last name", "lastName"),
        ("Company", "company"),
        ("Country", "country"),
        ("City", "city"),
        ("Locale", "locale"),
        ("Created", "createdAt"),
        ("Updated", "updatedAt"),
    ] {
        let v = text(&k[field]);
        if !v.is_empty() {
            let _ = write!(body, "<dt>{label}</dt><dd>{}</dd>", esc(&v));
        }
    }
    body.push_str("</dl>");
    let segments: Vec<String> = k["segments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| esc(&text(v)))
        .collect();
    if !segments.is_empty() {
        let _ = write!(body, "<p>Segments: {}</p>", segments.join(", "));
    }
    body.push_str("</section><section><h2>Identities</h2><ul>");
    for i in k["identities"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<li>{}: <code>{}</code></li>",
            esc(&text(&i["kind"])),
            esc(&text(&i["value"]))
        );
    }
    body.push_str("</ul></section>");
    // Where each data value came from, when the store knows.
    let origins: HashMap<String, String> = k["origins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            (
                text(&o["field"]),
                format!(
                    "{}/{} record {} at {}",
                    text(&o["source"]),
                    text(&o["stream"]),
                    text(&o["recordId"]),
                    text(&o["at"])
                ),
            )
        })
        .collect();
    body.push_str(&pairs("Data", &k["data"], |key| {
        origins
            .get(&format!("data.{key}"))
            .or_else(|| origins.get(key))
            .cloned()
    }));
    body.push_str(&pairs("Aggregates", &k["aggregates"], |_| None));
    body.push_str("<section><h2>Recent sessions</h2>");
    let sessions = k["sessions"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if sessions.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str(
            r#"<div class="table"><table><thead><tr><th scope="col">Started</th><th scope="col">Kind</th><th scope="col">Source</th><th scope="col">Data</th></tr></thead><tbody>"#,
        );
        for e in &sessions {
            let n = &e["node"];
            let data = n["data"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{}: {}", esc(k), esc(&text(v))))
                        .collect::<Vec<_>>()
                        .join("<br>")
                })
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}/{} <code>{}</code></td><td>{data}</td></tr>",
                esc(&text(&n["startedAt"])),
                esc(&text(&n["kind"])),
                esc(&text(&n["source"])),
                esc(&text(&n["stream"])),
                esc(&text(&n["externalId"])),
            );
        }
        body.push_str("</tbody></table></div>");
        if k["sessions"]["pageInfo"]["hasNextPage"] == true {
            body.push_str(r#"<p class="muted">Older sessions are not shown.</p>"#);
        }
    }
    body.push_str("</section>");
    s.page(StatusCode::OK, &title, &body)
}

/// A section listing an object's keys and values, with where each came from when known.
fn pairs(title: &str, object: &Value, origin: impl Fn(&str) -> Option<String>) -> String {
    let mut out = format!("<section><h2>{title}</h2>");
    match object.as_object().filter(|m| !m.is_empty()) {
        None => out.push_str("<p>None.</p>"),
        Some(m) => {
            out.push_str("<dl>");
            for (key, v) in m {
                let _ = write!(out, "<dt>{}</dt><dd>{}", esc(key), esc(&text(v)));
                if let Some(o) = origin(key) {
                    let _ = write!(out, r#" <span class="muted">from {}</span>"#, esc(&o));
                }
                out.push_str("</dd>");
            }
            out.push_str("</dl>");
        }
    }
    out.push_str("</section>");
    out
}
