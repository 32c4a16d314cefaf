//! `/segments`: saved segments with their counts; the editor (name, filter in the API's text
//! form, description) with a live count (`/segments/-/count`, which `assets/segments.js`
//! asks as the filter changes); a segment's page with who entered and left.
//!
//! Console paths that are not segments live under `/segments/-/`: a segment's name starts
//! with a letter, so none of them can be taken by a segment.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dossier_gateway::Role;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ConsoleError;
use crate::console::{Signed, State};
use crate::forms::{
    CsrfForm, csrf_field, delete_named, error_at, json as json_answer, position, when,
};
use crate::html::{button, esc, text, url};

const LIST: &str = "{ segments { name definition description count updatedAt } }";

const ONE: &str = "query($name: String!, $first: Int, $after: String, $from: DateTime!, $to: DateTime!) { segment(name: $name) { name definition description count createdAt updatedAt history(from: $from, to: $to) { start entered left } changes(first: $first, after: $after) { pageInfo { hasNextPage endCursor } edges { node { change contactId at contact { id email firstName lastName } } } } } }";

const COUNT: &str =
    "query($filter: String!) { contacts(filter: $filter, first: 1) { totalCount } }";

const SAVE: &str = "mutation($name: String!, $definition: String!, $description: String) { saveSegment(name: $name, definition: $definition, description: $description) { name count } }";

const DELETE: &str = "mutation($name: String!) { deleteSegment(name: $name) }";

/// Changes on one page of a segment's feed.
const FEED_PAGE: usize = 50;

/// Days of entered/left counts on a segment's page, today included.
const HISTORY_DAYS: i64 = 14;

/// `GET /segments`.
pub(crate) async fn list(Extract(c): Extract<State>, s: Signed) -> Response {
    let data = match c.query(&s.caller, LIST, json!({})).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let segments = data["segments"].as_array().cloned().unwrap_or_default();
    let mut body = String::new();
    if s.caller.role >= Role::Write {
        body.push_str(r#"<p><a href="/segments/-/new" class="action">New segment</a></p>"#);
    }
    if segments.is_empty() {
        body.push_str("<p>No segments are saved yet.</p>");
        return s.page(StatusCode::OK, "Segments", &body);
    }
    body.push_str(
        r#"<div class="table"><table><thead><tr><th scope="col">Segment</th><th scope="col">Contacts</th><th scope="col">Filter</th><th scope="col">Updated (UTC)</th></tr></thead><tbody>"#,
    );
    for seg in &segments {
        let name = text(&seg["name"]);
        let description = text(&seg["description"]);
        let _ = write!(
            body,
            r#"<tr><th scope="row"><a href="/segments/{}">{}</a>{}</th><td class="num">{}</td><td><code>{}</code></td><td>{}</td></tr>"#,
            url(&name),
            esc(&name),
            if description.is_empty() {
                String::new()
            } else {
                format!(r#"<br><span class="muted">{}</span>"#, esc(&description))
            },
            esc(&text(&seg["count"])),
            esc(&text(&seg["definition"])),
            esc(&when(&seg["updatedAt"])),
        );
    }
    body.push_str("</tbody></table></div>");
    s.page(StatusCode::OK, "Segments", &body)
}

/// What the editor shows: a new segment, a saved one, or a form sent back with an error.
struct Editor<'a> {
    name: &'a str,
    definition: &'a str,
    description: &'a str,
    /// Editing a saved segment: its name is fixed (saving under another name makes a copy).
    saved: bool,
    /// The count to show before the script updates it.
    count: Option<i64>,
    error: Option<String>,
}

fn editor(s: &Signed, e: &Editor<'_>) -> String {
    let mut out = String::new();
    if let Some(message) = &e.error {
        out.push_str(&error_at(e.definition, message));
    }
    let _ = write!(
        out,
        r#"<form method="post" action="/segments" class="editor">{}{}
<p><label for="name">Name</label><br>
<input id="name" name="name" type="text" required maxlength="64" pattern="[a-z][a-z0-9_\-]*" autocomplete="off" value="{}"{} aria-describedby="name-help">
<br><span id="name-help" class="muted">1 to 64 characters of a-z, 0-9, _ and -, starting with a letter</span></p>
<p><label for="definition">Filter</label><br>
<textarea id="definition" name="definition" rows="4" required spellcheck="false" data-count="/segments/-/count" aria-describedby="definition-help live-count">{}</textarea>
<br><span id="definition-help" class="muted">Conditions on profile fields, <code>data.&lt;key&gt;</code> and <code>agg.&lt;name&gt;</code> joined with <code>and</code>, <code>or</code>, <code>not</code>, e.g. <code>country = "FR" and agg.order_count &gt;= 2</code></span></p>
<p><output id="live-count" for="definition" aria-live="polite">{}</output></p>
<p><label for="description">Description</label> <span class="muted">(optional)</span><br>
<input id="description" name="description" type="text" maxlength="500" value="{}"></p>
<p><button type="submit">Save segment</button></p>
</form>
<script src="/assets/segments.js"></script>"#,
        csrf_field(&s.csrf),
        if e.saved {
            r#"<input type="hidden" name="saved" value="1">"#
        } else {
            ""
        },
        esc(e.name),
        if e.saved { " readonly" } else { "" },
        esc(e.definition),
        match e.count {
            Some(n) => count_text(n),
            None => String::new(),
        },
        esc(e.description),
    );
    out
}

fn count_text(n: i64) -> String {
    if n == 1 {
        "1 contact matches".to_string()
    } else {
        format!("{n} contacts match")
    }
}

/// `GET /segments/-/new`.
pub(crate) async fn new(s: Signed) -> Response {
    let body = editor(
        &s,
        &Editor {
            name: "",
            definition: "",
            description: "",
            saved: false,
            count: None,
            error: None,
        },
    );
    s.page(StatusCode::OK, "New segment", &body)
}

/// `GET /segments/-/count?filter=...`: `{"count": n}`, or `{"error", "line", "column"}`
/// with 400 when the filter does not parse (or names what does not exist): what the
/// editor's script shows as the filter changes.
pub(crate) async fn count(
    Extract(c): Extract<State>,
    s: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = q.get("filter").map(String::as_str).unwrap_or_default();
    match c.query(&s.caller, COUNT, json!({ "filter": filter })).await {
        Ok(d) => json_answer(
            StatusCode::OK,
            &json!({ "count": d["contacts"]["totalCount"] }),
        ),
        Err(e) => {
            let message = e.to_string();
            let (line, column) = position(&message).unzip();
            json_answer(
                e.status(),
                &json!({ "error": message, "line": line, "column": column }),
            )
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct SaveForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    definition: String,
    #[serde(default)]
    description: String,
    /// Set by the editor of a saved segment.
    #[serde(default)]
    saved: Option<String>,
}

/// `POST /segments`: saves (creates or replaces) through `saveSegment`; a refused filter
/// comes back in the editor with where it went wrong.
pub(crate) async fn save(
    Extract(c): Extract<State>,
    headers: HeaderMap,
    Form(form): Form<SaveForm>,
) -> Response {
    let s = match c.writer(&headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let name = form.name.trim();
    let description = form.description.trim();
    let vars = json!({
        "name": name,
        "definition": form.definition,
        "description": (!description.is_empty()).then_some(description),
    });
    match c.query(&s.caller, SAVE, vars).await {
        Ok(d) => {
            let saved = &d["saveSegment"];
            let name = text(&saved["name"]);
            s.redirect(
                &c,
                &format!("/segments/{}", url(&name)),
                format!(
                    "Segment {name} saved: {}.",
                    count_text(saved["count"].as_i64().unwrap_or_default())
                ),
            )
        }
        Err(e) if e.status() == StatusCode::FORBIDDEN => s.error(&e),
        Err(e) => {
            let saved = form.saved.is_some();
            let body = editor(
                &s,
                &Editor {
                    name,
                    definition: &form.definition,
                    description,
                    saved,
                    count: None,
                    error: Some(e.to_string()),
                },
            );
            let title = if saved {
                format!("Segment {name}")
            } else {
                "New segment".to_string()
            };
            s.page(StatusCode::BAD_REQUEST, &title, &body)
        }
    }
}

/// `GET /segments/{name}?after=...`: the segment, its editor, and a page of who entered or
/// left (oldest first, as the feed runs). Another workspace's segment is not found.
pub(crate) async fn show(
    Extract(c): Extract<State>,
    s: Signed,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let after = q.get("after").filter(|a| !a.is_empty());
    // The last days, in UTC, today included.
    let today = chrono::Utc::now().date_naive();
    let day = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0).map(|t| {
            t.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    };
    let vars = json!({
        "name": name,
        "first": FEED_PAGE.min(c.max_page_size),
        "after": after,
        "from": day(today - chrono::Days::new(HISTORY_DAYS as u64 - 1)),
        "to": day(today + chrono::Days::new(1)),
    });
    let data = match c.query(&s.caller, ONE, vars).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let seg = &data["segment"];
    if seg.is_null() {
        return s.error(&ConsoleError::NotFound);
    }
    let count = seg["count"].as_i64().unwrap_or_default();
    let description = text(&seg["description"]);
    let mut body = format!(
        r#"<p class="big">{}</p>{}<dl><dt>Filter</dt><dd><code>{}</code></dd><dt>Created</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd></dl>"#,
        if count == 1 {
            "1 contact is in this segment".to_string()
        } else {
            format!("{count} contacts are in this segment")
        },
        if description.is_empty() {
            String::new()
        } else {
            format!("<p>{}</p>", esc(&description))
        },
        esc(&text(&seg["definition"])),
        esc(&when(&seg["createdAt"])),
        esc(&when(&seg["updatedAt"])),
    );
    body.push_str(&history(&seg["history"]));
    body.push_str(&feed(&name, &seg["changes"], after.is_some()));
    if s.caller.role >= Role::Write {
        body.push_str(r#"<section><h2>Edit</h2>"#);
        body.push_str(&editor(
            &s,
            &Editor {
                name: &name,
                definition: seg["definition"].as_str().unwrap_or_default(),
                description: &description,
                saved: true,
                count: Some(count),
                error: None,
            },
        ));
        let _ = write!(
            body,
            r#"<p>{}</p></section>"#,
            button(
                &format!("/segments/{}/delete", url(&name)),
                "Delete this segment",
                &s.csrf
            )
        );
    }
    s.page(StatusCode::OK, &format!("Segment {name}"), &body)
}

/// Contacts that entered and left per day, newest day first.
fn history(days: &Value) -> String {
    let mut out = format!(
        r#"<section><h2>The last {HISTORY_DAYS} days</h2><div class="table"><table><caption class="muted">Contacts that entered and left each day (UTC)</caption><thead><tr><th scope="col">Day</th><th scope="col">Entered</th><th scope="col">Left</th></tr></thead><tbody>"#
    );
    let mut rows: Vec<&Value> = days.as_array().into_iter().flatten().collect();
    rows.reverse();
    for d in rows {
        let _ = write!(
            out,
            r#"<tr><th scope="row">{}</th><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(text(&d["start"]).get(..10).unwrap_or_default()),
            esc(&text(&d["entered"])),
            esc(&text(&d["left"])),
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// The entered/left feed: a table of one page, and the link to the next.
fn feed(name: &str, changes: &Value, paged: bool) -> String {
    let mut out = String::from(
        r#"<section><h2>Entered and left</h2><p class="muted">Oldest first; times in UTC.</p>"#,
    );
    let edges = changes["edges"].as_array().cloned().unwrap_or_default();
    if edges.is_empty() {
        out.push_str("<p>No changes yet.</p>");
    } else {
        out.push_str(
            r#"<div class="table"><table><thead><tr><th scope="col">When</th><th scope="col">Change</th><th scope="col">Contact</th></tr></thead><tbody>"#,
        );
        for e in &edges {
            let n = &e["node"];
            let entered = n["change"] == "ENTERED";
            let contact = &n["contact"];
            let who = if contact.is_null() {
                format!("contact {}", esc(&text(&n["contactId"])))
            } else {
                let label = [
                    text(&contact["firstName"]),
                    text(&contact["lastName"]),
                    text(&contact["email"]),
                ]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
                format!(
                    r#"<a href="/contacts/{}">{}</a>"#,
                    url(&text(&contact["id"])),
                    esc(if label.is_empty() {
                        "(no name)"
                    } else {
                        &label
                    })
                )
            };
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="{}">{}</td><td>{who}</td></tr>"#,
                esc(&when(&n["at"])),
                if entered { "ok" } else { "muted" },
                if entered { "entered" } else { "left" },
            );
        }
        out.push_str("</tbody></table></div>");
    }
    let mut links = Vec::new();
    if paged {
        links.push(format!(
            r#"<a href="/segments/{}">First changes</a>"#,
            url(name)
        ));
    }
    if changes["pageInfo"]["hasNextPage"] == true
        && let Some(end) = changes["pageInfo"]["endCursor"].as_str()
    {
        links.push(format!(
            r#"<a href="/segments/{}?after={}" rel="next">Later changes</a>"#,
            url(name),
            url(end)
        ));
    }
    if !links.is_empty() {
        let _ = write!(
            out,
            r#"<nav aria-label="Feed pages"><p>{}</p></nav>"#,
            links.join(" · ")
        );
    }
    out.push_str("</section>");
    out
}

/// `POST /segments/{name}/delete`.
pub(crate) async fn delete(
    Extract(c): Extract<State>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match c.writer(&headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    delete_named(
        &c,
        &s,
        (DELETE, "deleteSegment"),
        ("/segments", "Segment"),
        &name,
    )
    .await
}
