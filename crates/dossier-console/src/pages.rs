//! The overview, signing in and out, and the GraphiQL page.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use dossier_gateway::Role;
use serde::Deserialize;
use serde_json::json;

use crate::assets::graphiql_page;
use crate::console::{Signed, State, html_response, reason, same_origin};
use crate::forms::CsrfForm;
use crate::html::{self, esc};
use crate::session;

/// `GET /`: where to go from here, and how many contacts there are.
pub(crate) async fn home(Extract(c): Extract<State>, s: Signed) -> Response {
    let count = match c
        .query(
            &s.caller,
            "{ contacts(first: 1) { totalCount } }",
            json!({}),
        )
        .await
    {
        Ok(d) => d["contacts"]["totalCount"].as_i64().unwrap_or_default(),
        Err(e) => return s.error(&e),
    };
    let mut body = format!(
        r#"<p><a href="/contacts">{count} contacts</a> in workspace <strong>{}</strong>.</p><ul>"#,
        esc(&s.caller.workspace)
    );
    if s.caller.role >= Role::Admin {
        body.push_str(
            r#"<li><a href="/sources">Sources</a>: each source's health, sync now, pause and resume</li>"#,
        );
    }
    body.push_str(
        r#"<li><a href="/contacts">Contacts</a>: search by email, open a contact's card</li>
<li><a href="/segments">Segments</a>: saved audiences, their counts, who entered and left</li>
<li><a href="/shortcuts">Shortcuts</a>: templated answers, previewed for a contact</li>"#,
    );
    if s.caller.role >= Role::Admin {
        body.push_str(
            r#"<li><a href="/keys">API keys</a> and <a href="/connectors">connectors</a></li>"#,
        );
    }
    body.push_str(
        r#"<li><a href="/graphiql">GraphiQL</a>: the GraphQL API in the browser</li></ul>"#,
    );
    s.page(StatusCode::OK, "Console", &body)
}

fn sign_in_page(status: StatusCode, message: Option<&str>) -> Response {
    let mut body = String::new();
    if let Some(m) = message {
        body.push_str(&format!(r#"<p class="error" role="alert">{}</p>"#, esc(m)));
    }
    body.push_str(
        r#"<form method="post" action="/sign-in">
<p><label for="key">API key</label><br>
<input id="key" name="key" type="password" autocomplete="off" required size="50" placeholder="dsk_..."></p>
<p><button type="submit">Sign in</button></p>
</form>
<p class="muted">An admin creates keys with <code>dossier keys create --role read|write|admin</code>. The key is kept on the server for this session only; the browser gets a session cookie.</p>"#,
    );
    html_response(status, html::page("Sign in", None, &body), None)
}

/// `GET /sign-in`.
pub(crate) async fn sign_in_form(
    Extract(c): Extract<State>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if c.open() {
        return Redirect::to("/").into_response();
    }
    sign_in_page(StatusCode::OK, q.get("why").and_then(|w| reason(w)))
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    #[serde(default)]
    key: String,
}

/// `POST /sign-in`: the key for a session.
pub(crate) async fn sign_in(
    Extract(c): Extract<State>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if c.open() {
        return Redirect::to("/").into_response();
    }
    // A page elsewhere must not sign a browser in with a key of its choosing.
    if let Err(e) = same_origin(&headers) {
        return c.bare_error(&e);
    }
    let key = form.key.trim();
    match c.store.authenticate(key).await {
        Ok(Ok(api_key)) => {
            if let Some(old) = session::cookie(&headers) {
                c.sessions.remove(&old);
            }
            if let Err(e) = c.store.touch_key(&api_key.id).await {
                tracing::warn!(key = api_key.id, error = %e, "cannot record an API key's last use");
            }
            tracing::info!(
                key = api_key.id,
                workspace = api_key.workspace,
                "console sign-in"
            );
            let id = c.sessions.create(Some(key.to_string()));
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Err(refusal)) => sign_in_page(StatusCode::UNAUTHORIZED, Some(&refusal.to_string())),
        Err(e) => c.bare_error(&crate::ConsoleError::Store(e)),
    }
}

/// `POST /sign-out`: the session is deleted, not only its cookie.
pub(crate) async fn sign_out(
    Extract(c): Extract<State>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let s = match c.writer(&headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    c.sessions.remove(&s.session);
    let to = if c.open() {
        "/"
    } else {
        "/sign-in?why=signed-out"
    };
    let mut r = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /graphiql`: the page is the same for everyone (requests carry their own key).
pub(crate) async fn graphiql(Extract(c): Extract<State>) -> Response {
    html_response(StatusCode::OK, graphiql_page(!c.open()), None)
}
