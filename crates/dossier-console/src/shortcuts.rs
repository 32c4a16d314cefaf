//! `/shortcuts`: saved shortcuts; the template editor with a preview for a chosen contact
//! (by id or email; the workspace's first contact when none is chosen) and, for `session.*`
//! placeholders, one of its sessions (its latest when none is chosen), each placeholder
//! with the contact's value or the fallback shown instead, and the API's errors shown at
//! their line and column. `assets/shortcuts.js` asks `/shortcuts/-/preview` again as the
//! template or the contact changes; without it the Preview button does the same.
//!
//! Console paths that are not shortcuts live under `/shortcuts/-/`: a shortcut's name
//! starts with a letter, so none of them can be taken by a shortcut.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dossier_gateway::Role;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::ConsoleError;
use crate::console::{Console, Signed, State};
use crate::forms::{
    CsrfForm, csrf_field, delete_named, error_at, json as json_answer, position, when,
};
use crate::html::{button, esc, text, url};

const LIST: &str = "{ shortcuts { name template updatedAt } }";

const CONTACT: &str = "query($id: ID, $email: String) { contact(id: $id, email: $email) { id email firstName lastName sessions(first: 1) { edges { node { id } } } } }";

const FIRST_CONTACT: &str = "{ contacts(first: 1) { edges { node { id email firstName lastName sessions(first: 1) { edges { node { id } } } } } } }";

const RENDER: &str = "query($t: String!, $c: ID!, $s: ID) { text: renderShortcut(template: $t, contactId: $c, sessionId: $s) }";

const SAVE: &str = "mutation($name: String!, $template: String!) { saveShortcut(name: $name, template: $template) { name } }";

const DELETE: &str = "mutation($name: String!) { deleteShortcut(name: $name) }";

/// Placeholders whose values the preview lists (the template may have more; all render).
const MAX_LISTED: usize = 64;

/// `GET /shortcuts`.
pub(crate) async fn list(Extract(c): Extract<State>, s: Signed) -> Response {
    let data = match c.query(&s.caller, LIST, json!({})).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let shortcuts = data["shortcuts"].as_array().cloned().unwrap_or_default();
    let mut body = String::new();
    if s.caller.role >= Role::Write {
        body.push_str(r#"<p><a href="/shortcuts/-/new" class="action">New shortcut</a></p>"#);
    }
    if shortcuts.is_empty() {
        body.push_str("<p>No shortcuts are saved yet.</p>");
        return s.page(StatusCode::OK, "Shortcuts", &body);
    }
    body.push_str(
        r#"<div class="table"><table><thead><tr><th scope="col">Shortcut</th><th scope="col">Template</th><th scope="col">Updated (UTC)</th></tr></thead><tbody>"#,
    );
    for sc in &shortcuts {
        let name = text(&sc["name"]);
        let template = text(&sc["template"]);
        let first_line = template.lines().next().unwrap_or_default();
        let short: String = first_line.chars().take(80).collect();
        let more = short.len() < template.trim_end().len();
        let _ = write!(
            body,
            r#"<tr><th scope="row"><a href="/shortcuts/{}">{}</a></th><td><code>{}</code>{}</td><td>{}</td></tr>"#,
            url(&name),
            esc(&name),
            esc(&short),
            if more { "…" } else { "" },
            esc(&when(&sc["updatedAt"])),
        );
    }
    body.push_str("</tbody></table></div>");
    s.page(StatusCode::OK, "Shortcuts", &body)
}

/// A placeholder as written: its path and its fallback.
#[derive(Debug, PartialEq)]
pub(crate) struct Slot {
    path: String,
    fallback: Option<String>,
}

/// The placeholders of a template the API accepted (`{{ path }}`, `{{ path | "fallback" }}`),
/// each path once, in order of first use (a path's first fallback is kept).
pub(crate) fn slots(src: &str) -> Vec<Slot> {
    let mut out: Vec<Slot> = Vec::new();
    let mut at = 0;
    while let Some(found) = src[at..].find("{{") {
        let mut i = at + found + 2;
        let skip = |i: usize| {
            i + src[i..]
                .find(|c: char| !c.is_whitespace())
                .unwrap_or(src.len() - i)
        };
        i = skip(i);
        let len = src[i..]
            .find(|c: char| c.is_whitespace() || c == '|' || c == '}')
            .unwrap_or(src.len() - i);
        let path = src[i..i + len].to_string();
        i = skip(i + len);
        let mut fallback = None;
        if src[i..].starts_with('|') {
            i = skip(i + 1);
            let Some((text, end)) = quoted(src, i) else {
                break;
            };
            fallback = Some(text);
            i = skip(end);
        }
        if !src[i..].starts_with("}}") || path.is_empty() {
            break;
        }
        at = i + 2;
        if !out.iter().any(|s| s.path == path) {
            out.push(Slot { path, fallback });
        }
    }
    out
}

/// The double-quoted string at byte `at` (escapes `\"`, `\\`, `\n`) and the byte after it.
fn quoted(src: &str, at: usize) -> Option<(String, usize)> {
    let mut chars = src[at..].char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, at + i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// A rendered preview, or why there is none.
struct Preview {
    /// The section's HTML.
    html: String,
    status: StatusCode,
    /// The rendered text (when it rendered).
    text: Option<String>,
    /// The API's message (when it did not).
    error: Option<String>,
}

fn contact_label(k: &Value) -> String {
    let name = [text(&k["firstName"]), text(&k["lastName"])]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let email = text(&k["email"]);
    match (name.is_empty(), email.is_empty()) {
        (false, false) => format!("{name} <{email}>"),
        (false, true) => name,
        (true, false) => email,
        (true, true) => format!("contact {}", text(&k["id"])),
    }
}

fn preview_section(inner: &str) -> String {
    format!(r#"<h2 id="preview-title">Preview</h2>{inner}"#)
}

/// Whom a preview is for: a contact's id or email (the first contact when empty), and a
/// session id for `session.*` placeholders (the contact's latest session when empty).
struct Chosen<'a> {
    contact: &'a str,
    session: &'a str,
}

/// Renders `template` for the chosen contact (and session) through `renderShortcut`, and
/// each placeholder alone to show which fell back. Errors are the API's, with the place in
/// the template when it names one.
async fn preview(c: &Console, s: &Signed, template: &str, chosen: &Chosen<'_>) -> Preview {
    let refused = |message: String, status: StatusCode, inner: String| Preview {
        html: preview_section(&inner),
        status,
        text: None,
        error: Some(message),
    };
    let session_chosen = chosen.session.trim();
    let chosen = chosen.contact.trim();
    let found = if chosen.is_empty() {
        c.query(&s.caller, FIRST_CONTACT, json!({}))
            .await
            .map(|d| d["contacts"]["edges"][0]["node"].clone())
    } else {
        let vars = if chosen.bytes().all(|b| b.is_ascii_digit()) && chosen.len() <= 19 {
            json!({ "id": chosen })
        } else {
            json!({ "email": chosen })
        };
        c.query(&s.caller, CONTACT, vars)
            .await
            .map(|d| d["contact"].clone())
    };
    let contact = match found {
        Ok(k) if !k.is_null() => k,
        Ok(_) => {
            let message = if chosen.is_empty() {
                "There are no contacts to preview with.".to_string()
            } else {
                format!("No contact {chosen} in this workspace: give a contact's id or email.")
            };
            let inner = format!(r#"<p class="error" role="alert">{}</p>"#, esc(&message));
            return refused(message, StatusCode::NOT_FOUND, inner);
        }
        Err(e) => {
            let message = e.to_string();
            let inner = format!(r#"<p class="error" role="alert">{}</p>"#, esc(&message));
            return refused(message, e.status(), inner);
        }
    };
    let id = text(&contact["id"]);
    let slots = slots(template);
    // A session only when asked for, or when the template shows one.
    let session = if !session_chosen.is_empty() {
        Some(session_chosen.to_string())
    } else if slots.iter().any(|s| s.path.starts_with("session.")) {
        contact["sessions"]["edges"][0]["node"]["id"]
            .as_str()
            .map(str::to_string)
    } else {
        None
    };
    let for_whom = format!(
        r#"<p class="muted">For <a href="/contacts/{}">{}</a> (contact {}){}.</p>"#,
        url(&id),
        esc(&contact_label(&contact)),
        esc(&id),
        match (&session, session_chosen.is_empty()) {
            (Some(sid), true) => format!(" and their latest session, {}", esc(sid)),
            (Some(sid), false) => format!(" and session {}", esc(sid)),
            (None, _) if slots.iter().any(|s| s.path.starts_with("session.")) => {
                ", who has no sessions".to_string()
            }
            (None, _) => String::new(),
        }
    );
    let rendered = match c
        .query(
            &s.caller,
            RENDER,
            json!({ "t": template, "c": id, "s": session }),
        )
        .await
    {
        Ok(d) => text(&d["text"]),
        Err(e) => {
            let message = e.to_string();
            let status = if position(&message).is_some() {
                StatusCode::BAD_REQUEST
            } else {
                e.status()
            };
            return refused(
                message.clone(),
                status,
                format!("{for_whom}{}", error_at(template, &message)),
            );
        }
    };
    let mut inner = format!(
        r#"{for_whom}<pre class="preview" id="preview-text">{}</pre>"#,
        esc(&rendered)
    );
    if !slots.is_empty() {
        // Each placeholder alone, without its fallback: empty means the fallback shows.
        let listed = &slots[..slots.len().min(MAX_LISTED)];
        let mut vars = Map::new();
        vars.insert("c".into(), json!(id));
        vars.insert("s".into(), json!(session));
        let mut params = String::from("$c: ID!, $s: ID");
        let mut fields = String::new();
        for (i, slot) in listed.iter().enumerate() {
            vars.insert(format!("t{i}"), json!(format!("{{{{ {} }}}}", slot.path)));
            let _ = write!(params, ", $t{i}: String!");
            let _ = write!(
                fields,
                " p{i}: renderShortcut(template: $t{i}, contactId: $c, sessionId: $s)"
            );
        }
        let values = c
            .query(
                &s.caller,
                &format!("query({params}) {{{fields} }}"),
                Value::Object(vars),
            )
            .await
            .unwrap_or_default();
        inner.push_str(
            r#"<div class="table"><table><caption>Placeholders</caption><thead><tr><th scope="col">Placeholder</th><th scope="col">This contact's value</th><th scope="col">Fallback</th><th scope="col">Shown</th></tr></thead><tbody>"#,
        );
        for (i, slot) in listed.iter().enumerate() {
            let value = text(&values[format!("p{i}")]);
            let has = !value.trim().is_empty();
            let shown = match (has, &slot.fallback) {
                (true, _) => r#"<span class="ok">value</span>"#,
                (false, Some(_)) => r#"<span class="fallback">fallback</span>"#,
                (false, None) => r#"<span class="muted">nothing</span>"#,
            };
            let _ = write!(
                inner,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{shown}</td></tr>",
                esc(&slot.path),
                if has {
                    esc(&value)
                } else {
                    r#"<span class="muted">(none)</span>"#.to_string()
                },
                match &slot.fallback {
                    Some(f) => format!("<q>{}</q>", esc(f)),
                    None => "—".to_string(),
                },
            );
        }
        inner.push_str("</tbody></table></div>");
        if slots.len() > MAX_LISTED {
            let _ = write!(
                inner,
                r#"<p class="muted">{} more placeholders are not listed.</p>"#,
                slots.len() - MAX_LISTED
            );
        }
    }
    Preview {
        html: preview_section(&inner),
        status: StatusCode::OK,
        text: Some(rendered),
        error: None,
    }
}

/// What the editor shows.
struct Editor<'a> {
    name: &'a str,
    template: &'a str,
    contact: &'a str,
    session: &'a str,
    /// Editing a saved shortcut: its name is fixed (saving under another makes a copy).
    saved: bool,
    /// The preview section's HTML, when there is one.
    preview: Option<String>,
    /// An error of saving.
    error: Option<String>,
}

fn editor(s: &Signed, e: &Editor<'_>) -> String {
    let mut out = String::new();
    if let Some(message) = &e.error {
        out.push_str(&error_at(e.template, message));
    }
    let save = if s.caller.role >= Role::Write {
        r#"<button type="submit" name="action" value="save">Save shortcut</button> "#
    } else {
        ""
    };
    let _ = write!(
        out,
        r#"<form method="post" action="/shortcuts" class="editor" data-preview="/shortcuts/-/preview">{}{}
<p><label for="name">Name</label><br>
<input id="name" name="name" type="text" required maxlength="64" pattern="[a-z][a-z0-9_\-]*" autocomplete="off" value="{}"{} aria-describedby="name-help">
<br><span id="name-help" class="muted">1 to 64 characters of a-z, 0-9, _ and -, starting with a letter</span></p>
<p><label for="template">Template</label><br>
<textarea id="template" name="template" rows="8" spellcheck="false" aria-describedby="template-help">{}</textarea>
<br><span id="template-help" class="muted">Text with placeholders: <code>{{{{ name.first | "there" }}}}</code> shows the first name, or <q>there</q> when there is none. Paths: <code>name.first</code>, <code>name.full</code>, <code>email</code>, <code>country</code>, <code>data.&lt;key&gt;</code>, <code>agg.&lt;name&gt;</code>, …</span></p>
<p><label for="contact">Preview for contact</label><br>
<input id="contact" name="contact" type="text" autocomplete="off" value="{}" placeholder="id or email" aria-describedby="contact-help">
<br><span id="contact-help" class="muted">A contact's id or email; the first contact when empty.</span></p>
<p><label for="session">Session</label> <span class="muted">(optional)</span><br>
<input id="session" name="session" type="text" inputmode="numeric" autocomplete="off" value="{}" placeholder="session id" aria-describedby="session-help">
<br><span id="session-help" class="muted">For <code>session.*</code> placeholders: one of the contact's sessions; their latest when empty.</span></p>
<p>{save}<button type="submit" name="action" value="preview">Preview</button></p>
</form>
<section id="preview" aria-labelledby="preview-title" aria-live="polite">{}</section>
<script src="/assets/shortcuts.js"></script>"#,
        csrf_field(&s.csrf),
        if e.saved {
            r#"<input type="hidden" name="saved" value="1">"#
        } else {
            ""
        },
        esc(e.name),
        if e.saved { " readonly" } else { "" },
        esc(e.template),
        esc(e.contact),
        esc(e.session),
        e.preview.as_deref().unwrap_or_default(),
    );
    out
}

/// `GET /shortcuts/-/new?contact=...&session=...`.
pub(crate) async fn new(s: Signed, Query(q): Query<HashMap<String, String>>) -> Response {
    let contact = q.get("contact").map(String::as_str).unwrap_or_default();
    let session = q.get("session").map(String::as_str).unwrap_or_default();
    let body = editor(
        &s,
        &Editor {
            name: "",
            template: "",
            contact,
            session,
            saved: false,
            preview: None,
            error: None,
        },
    );
    s.page(StatusCode::OK, "New shortcut", &body)
}

/// `GET /shortcuts/{name}?contact=...&session=...`: the editor of a saved shortcut with its preview.
/// Another workspace's shortcut is not found.
pub(crate) async fn show(
    Extract(c): Extract<State>,
    s: Signed,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let data = match c.query(&s.caller, LIST, json!({})).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let Some(found) = data["shortcuts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|sc| sc["name"] == name.as_str())
    else {
        return s.error(&ConsoleError::NotFound);
    };
    let template = text(&found["template"]);
    let contact = q.get("contact").map(String::as_str).unwrap_or_default();
    let session = q.get("session").map(String::as_str).unwrap_or_default();
    let shown = preview(&c, &s, &template, &Chosen { contact, session }).await;
    let mut body = editor(
        &s,
        &Editor {
            name: &name,
            template: &template,
            contact,
            session,
            saved: true,
            preview: Some(shown.html),
            error: None,
        },
    );
    let _ = write!(
        body,
        r#"<p class="muted">Updated {} UTC.</p>"#,
        esc(&when(&found["updatedAt"]))
    );
    if s.caller.role >= Role::Write {
        let _ = write!(
            body,
            "<p>{}</p>",
            button(
                &format!("/shortcuts/{}/delete", url(&name)),
                "Delete this shortcut",
                &s.csrf
            )
        );
    }
    s.page(StatusCode::OK, &format!("Shortcut {name}"), &body)
}

#[derive(Deserialize)]
pub(crate) struct EditorForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    saved: Option<String>,
    /// `save` or `preview`.
    #[serde(default)]
    action: Option<String>,
}

/// `POST /shortcuts`: `action=save` saves through `saveShortcut` (a template that does not
/// parse comes back in the editor with its line and column); `action=preview` shows the
/// editor with the preview, saving nothing (the editor without script).
pub(crate) async fn post(
    Extract(c): Extract<State>,
    headers: HeaderMap,
    Form(form): Form<EditorForm>,
) -> Response {
    let s = match c.writer(&headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let name = form.name.trim();
    let saved = form.saved.is_some();
    let title = if saved {
        format!("Shortcut {name}")
    } else {
        "New shortcut".to_string()
    };
    if form.action.as_deref() == Some("preview") {
        let shown = preview(
            &c,
            &s,
            &form.template,
            &Chosen {
                contact: &form.contact,
                session: &form.session,
            },
        )
        .await;
        let body = editor(
            &s,
            &Editor {
                name,
                template: &form.template,
                contact: &form.contact,
                session: &form.session,
                saved,
                preview: Some(shown.html),
                error: None,
            },
        );
        return s.page(shown.status, &title, &body);
    }
    let vars = json!({ "name": name, "template": form.template });
    match c.query(&s.caller, SAVE, vars).await {
        Ok(d) => {
            let name = text(&d["saveShortcut"]["name"]);
            let mut to = format!("/shortcuts/{}", url(&name));
            let mut sep = '?';
            for (key, value) in [("contact", &form.contact), ("session", &form.session)] {
                if !value.trim().is_empty() {
                    let _ = write!(to, "{sep}{key}={}", url(value.trim()));
                    sep = '&';
                }
            }
            s.redirect(&c, &to, format!("Shortcut {name} saved."))
        }
        Err(e) if e.status() == StatusCode::FORBIDDEN => s.error(&e),
        Err(e) => {
            let body = editor(
                &s,
                &Editor {
                    name,
                    template: &form.template,
                    contact: &form.contact,
                    session: &form.session,
                    saved,
                    preview: None,
                    error: Some(e.to_string()),
                },
            );
            s.page(StatusCode::BAD_REQUEST, &title, &body)
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct PreviewForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    template: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    session: String,
}

/// `POST /shortcuts/-/preview` (the editor's script): `{"html", "text"}` or
/// `{"html", "error", "line", "column"}`, `html` being the preview section's content. A
/// POST because templates can be long; it saves nothing, so a read key may preview.
pub(crate) async fn preview_json(
    Extract(c): Extract<State>,
    headers: HeaderMap,
    Form(form): Form<PreviewForm>,
) -> Response {
    let s = match c.writer(&headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let shown = preview(
        &c,
        &s,
        &form.template,
        &Chosen {
            contact: &form.contact,
            session: &form.session,
        },
    )
    .await;
    let (line, column) = shown.error.as_deref().and_then(position).unzip();
    json_answer(
        shown.status,
        &json!({
            "html": shown.html,
            "text": shown.text,
            "error": shown.error,
            "line": line,
            "column": column,
        }),
    )
}

/// `POST /shortcuts/{name}/delete`.
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
        (DELETE, "deleteShortcut"),
        ("/shortcuts", "Shortcut"),
        &name,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_listed_once_with_their_fallbacks() {
        let t = "Hi {{ name.first | \"there \\\"you\\\"\" }},\n{{data.plan}} {{ name.first }} {{agg.orders|\"0\"}}";
        assert_eq!(
            slots(t),
            vec![
                Slot {
                    path: "name.first".into(),
                    fallback: Some("there \"you\"".into())
                },
                Slot {
                    path: "data.plan".into(),
                    fallback: None
                },
                Slot {
                    path: "agg.orders".into(),
                    fallback: Some("0".into())
                },
            ]
        );
        assert!(slots("no placeholders } {").is_empty());
    }
}
