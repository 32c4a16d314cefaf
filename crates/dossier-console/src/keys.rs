//! `/keys` (admin): the workspace's API keys, created (the secret is shown on the answer
//! to the create form only; it is not kept anywhere) and revoked, through the API's
//! `apiKeys`, `createApiKey` and `revokeApiKey`. A session signed in with a key that is
//! revoked ends at its next request (see `console.rs`), this console's own included.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::ConsoleError;
use crate::console::{Signed, State};
use crate::forms::{CsrfForm, csrf_field, when};
use crate::html::{button, esc, text, url};

const LIST: &str = "{ apiKeys { id name role createdAt expiresAt revokedAt lastUsedAt active } }";

const CREATE: &str = "mutation($name: String!, $role: KeyRole!, $expiresIn: String) { createApiKey(name: $name, role: $role, expiresIn: $expiresIn) { secret key { id name role expiresAt } } }";

const REVOKE: &str = "mutation($id: ID!) { revokeApiKey(id: $id) { id name } }";

/// The longest expiry the form offers, in days (ten years).
const MAX_DAYS: i64 = 3650;

/// `GET /keys`.
pub(crate) async fn list(Extract(c): Extract<State>, s: Signed) -> Response {
    let data = match c.query(&s.caller, LIST, json!({})).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let keys = data["apiKeys"].as_array().cloned().unwrap_or_default();
    let mut body = String::from(
        r#"<p class="muted">A key is shown once, when it is created; only its hash is kept. Revoking a key refuses it at once, and ends the console sessions signed in with it (yours too, if it is your key).</p>"#,
    );
    if c.open() {
        body.push_str(
            r#"<p>This console is open (<code>access = "open"</code>): it needs no key. Keys are for the API, and for the console when the server runs with <code>access = "keys"</code>.</p>"#,
        );
    }
    if keys.is_empty() {
        body.push_str("<p>This workspace has no keys yet.</p>");
    } else {
        body.push_str(
        r#"<div class="table"><table><caption class="muted">Keys of this workspace, oldest first; times in UTC</caption><thead><tr><th scope="col">Key</th><th scope="col">Role</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Last used</th><th scope="col">Actions</th></tr></thead><tbody>"#,
    );
        for k in &keys {
            let id = text(&k["id"]);
            let active = k["active"] == true;
            let state = if !k["revokedAt"].is_null() {
                format!("revoked {}", esc(&when(&k["revokedAt"])))
            } else if active {
                r#"<span class="ok">active</span>"#.to_string()
            } else {
                "expired".to_string()
            };
            let own = s.key_id.as_deref() == Some(id.as_str());
            let _ = write!(
                body,
                r#"<tr><th scope="row">{}{}<br><code class="muted">dsk_{}_…</code></th><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&text(&k["name"])),
                if own {
                    r#" <span class="muted">(this session's key)</span>"#
                } else {
                    ""
                },
                esc(&id),
                esc(&text(&k["role"]).to_lowercase()),
                esc(&when(&k["createdAt"])),
                if k["expiresAt"].is_null() {
                    "never".to_string()
                } else {
                    esc(&when(&k["expiresAt"]))
                },
                esc(&when(&k["lastUsedAt"])),
                if active {
                    let label = if own {
                        "Revoke (signs you out)"
                    } else {
                        "Revoke"
                    };
                    button(&format!("/keys/{}/revoke", url(&id)), label, &s.csrf)
                } else {
                    String::new()
                },
            );
        }
        body.push_str("</tbody></table></div>");
    }
    let _ = write!(
        body,
        r#"<section><h2>New key</h2><form method="post" action="/keys" class="editor">{}
<p><label for="key-name">Name</label><br><input id="key-name" name="name" type="text" required maxlength="100" autocomplete="off" placeholder="support dashboard"></p>
<p><label for="key-role">Role</label><br><select id="key-role" name="role">
<option value="READ">read: contacts, sessions, segments, shortcuts</option>
<option value="WRITE">write: also data, segments, shortcuts, syncs</option>
<option value="ADMIN">admin: also sources, connectors, keys</option>
</select></p>
<p><label for="key-days">Expires after (days)</label> <span class="muted">(empty: never)</span><br><input id="key-days" name="days" type="number" min="1" max="{MAX_DAYS}" inputmode="numeric"></p>
<p><button type="submit">Create key</button></p>
</form></section>"#,
        csrf_field(&s.csrf)
    );
    s.page(StatusCode::OK, "API keys", &body)
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    days: String,
}

/// `POST /keys`: creates a key through `createApiKey` and answers with a page showing its
/// secret, this once (not a redirect: the secret must not travel in a URL or stay in the
/// session for a later page).
pub(crate) async fn create(
    Extract(c): Extract<State>,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Response {
    let s = match c.writer(&headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let role = match form.role.as_str() {
        r @ ("READ" | "WRITE" | "ADMIN") => r,
        _ => return s.redirect(&c, "/keys", "Not created: choose a role.".into()),
    };
    let days = form.days.trim();
    let expires_in = if days.is_empty() {
        None
    } else {
        match days.parse::<i64>() {
            Ok(d) if (1..=MAX_DAYS).contains(&d) => Some(format!("{d}d")),
            _ => {
                return s.redirect(
                    &c,
                    "/keys",
                    format!("Not created: the expiry is a number of days from 1 to {MAX_DAYS}."),
                );
            }
        }
    };
    let vars = json!({ "name": form.name.trim(), "role": role, "expiresIn": expires_in });
    match c.query(&s.caller, CREATE, vars).await {
        Ok(d) => {
            let created = &d["createApiKey"];
            let key = &created["key"];
            let body = format!(
                r#"<p role="status">Key <strong>{}</strong> ({} role{}) is created. Copy it now: <strong>it is shown only this once</strong>; only its hash is kept.</p>
<p><label for="secret">API key</label><br><input id="secret" type="text" readonly size="80" value="{}" autocomplete="off" spellcheck="false"></p>
<p><a href="/keys">Back to the keys</a></p>"#,
                esc(&text(&key["name"])),
                esc(&text(&key["role"]).to_lowercase()),
                if key["expiresAt"].is_null() {
                    String::new()
                } else {
                    format!(", expires {} UTC", esc(&when(&key["expiresAt"])))
                },
                esc(&text(&created["secret"])),
            );
            s.page(StatusCode::OK, "Key created", &body)
        }
        Err(e) if e.status() == StatusCode::FORBIDDEN => s.error(&e),
        Err(e) => s.redirect(&c, "/keys", format!("Not created: {e}")),
    }
}

/// `POST /keys/{id}/revoke`: through `revokeApiKey`; another workspace's key is not found.
/// Revoking the session's own key signs it out: the redirect's page finds the key revoked.
pub(crate) async fn revoke(
    Extract(c): Extract<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match c.writer(&headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match c.query(&s.caller, REVOKE, json!({ "id": id })).await {
        Ok(d) => {
            let key = &d["revokeApiKey"];
            s.redirect(
                &c,
                "/keys",
                format!(
                    "Key {} ({}) is revoked.",
                    text(&key["name"]),
                    text(&key["id"])
                ),
            )
        }
        Err(e) if e.status() == StatusCode::NOT_FOUND => s.error(&ConsoleError::NotFound),
        Err(e) => s.error(&e),
    }
}
