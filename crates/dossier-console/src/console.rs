//! The console's state and the door of every page: who the session is, as a gateway
//! [`Caller`], re-checked on every request (a revoked or expired key ends its sessions at
//! their next request), and the CSRF and origin checks of every write.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use dossier_gateway::{Access, Caller, DossierSchema};
use dossier_store::{KeyCache, KeyRefusal, SqlStore};

use crate::ConsoleError;
use crate::html::{self, Chrome};
use crate::session::{self, Sessions};

/// The Content-Security-Policy of every console answer. Scripts and styles come from the
/// server only (no inline ones); `data:` fonts and images because GraphiQL's stylesheet
/// embeds its own; forms post to the console only; no page may be framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) struct Console {
    pub(crate) schema: DossierSchema,
    pub(crate) store: SqlStore,
    pub(crate) access: Access,
    pub(crate) max_page_size: usize,
    pub(crate) sessions: Sessions,
    keys: KeyCache,
}

pub(crate) type State = Arc<Console>;

/// A request of a signed-in session.
pub(crate) struct Signed {
    pub(crate) caller: Caller,
    pub(crate) session: String,
    pub(crate) csrf: String,
    /// The public id of the API key the session signed in with (none on an open console).
    pub(crate) key_id: Option<String>,
    flash: Option<String>,
    /// A session made for this request (open access): the cookie to hand the browser.
    new_cookie: Option<String>,
    open: bool,
}

/// Why the sign-in page is shown: fixed messages, so that nothing from the URL is echoed.
pub(crate) fn reason(code: &str) -> Option<&'static str> {
    Some(match code {
        "revoked" => "Your API key was revoked: sign in with another one.",
        "expired" => "Your API key has expired: sign in with another one.",
        "invalid" => "Your API key is no longer valid: sign in again.",
        "signed-out" => "You are signed out.",
        _ => return None,
    })
}

fn to_sign_in(why: Option<&str>) -> Response {
    let to = match why {
        Some(why) => format!("/sign-in?why={why}"),
        None => "/sign-in".to_string(),
    };
    Redirect::to(&to).into_response()
}

/// An HTML answer, with a session cookie when one is to be set.
pub(crate) fn html_response(status: StatusCode, body: String, cookie: Option<&str>) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

impl Console {
    pub(crate) fn new(schema: DossierSchema, store: SqlStore) -> Self {
        let config = dossier_gateway::config(&schema);
        Self {
            schema,
            store,
            access: config.access,
            max_page_size: config.max_page_size,
            sessions: Sessions::default(),
            keys: KeyCache::default(),
        }
    }

    pub(crate) fn open(&self) -> bool {
        matches!(self.access, Access::Open { .. })
    }

    /// The signed-in session of a request, or the answer sending it to sign in. With open
    /// access a request without a session gets one.
    pub(crate) async fn signed(&self, headers: &HeaderMap) -> Result<Signed, Response> {
        let existing = session::cookie(headers).and_then(|id| Some((self.sessions.take(&id)?, id)));
        let (s, id, new_cookie) = match (existing, &self.access) {
            (Some((s, id)), _) => (s, id, None),
            (None, Access::Open { .. }) => {
                let id = self.sessions.create(None);
                let s = self.sessions.take(&id).expect("just made");
                let cookie = session::set_cookie(&id);
                (s, id, Some(cookie))
            }
            (None, Access::Keys) => return Err(to_sign_in(None)),
        };
        let caller = match (&self.access, &s.key) {
            (Access::Open { workspace }, _) => Caller::admin(workspace),
            (Access::Keys, None) => {
                // A session made while the console was open, presented to one with keys.
                self.sessions.remove(&id);
                return Err(to_sign_in(None));
            }
            (Access::Keys, Some(key)) => {
                match self.store.authenticate_cached(&self.keys, key).await {
                    Ok(Ok(key)) => Caller {
                        workspace: key.workspace,
                        role: key.role,
                    },
                    Ok(Err(refusal)) => {
                        self.sessions.remove(&id);
                        let why = match refusal {
                            KeyRefusal::Revoked => "revoked",
                            KeyRefusal::Expired => "expired",
                            KeyRefusal::Invalid => "invalid",
                        };
                        let mut r = to_sign_in(Some(why));
                        if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
                            r.headers_mut().insert(header::SET_COOKIE, v);
                        }
                        return Err(r);
                    }
                    Err(e) => return Err(self.bare_error(&ConsoleError::Store(e))),
                }
            }
        };
        Ok(Signed {
            caller,
            session: id,
            csrf: s.csrf,
            key_id: s.key.as_deref().and_then(key_id),
            flash: s.flash,
            new_cookie,
            open: self.open(),
        })
    }

    /// [`Console::signed`] for a write: also the request's origin and the form's CSRF token.
    pub(crate) async fn writer(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<Signed, Response> {
        if let Err(e) = same_origin(headers) {
            return Err(self.bare_error(&e));
        }
        let s = self.signed(headers).await?;
        match csrf {
            Some(token) if session::same(token, &s.csrf) => Ok(s),
            _ => Err(s.error(&ConsoleError::Csrf)),
        }
    }

    /// An error page for a request without a session to show it in.
    pub(crate) fn bare_error(&self, e: &ConsoleError) -> Response {
        if let ConsoleError::Store(e) = e {
            tracing::error!(error = %e, "the console cannot check an API key");
        }
        let body = format!(
            r#"<p class="error">{}</p><p><a href="/">Back to the console</a></p>"#,
            html::esc(&e.to_string())
        );
        html_response(e.status(), html::page(title_of(e), None, &body), None)
    }
}

fn title_of(e: &ConsoleError) -> &'static str {
    match e.status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        s if s.is_server_error() => "Unavailable",
        _ => "Refused",
    }
}

/// The public id of an API key (`dsk_<id>_<secret>`).
fn key_id(key: &str) -> Option<String> {
    let id = key.trim().strip_prefix("dsk_")?.split('_').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// Refuses a request whose `Origin` (sent by browsers with every POST) is not this host:
/// with SameSite=Strict cookies a forged form carries no session anyway, and this also
/// covers the sign-in form, which has none yet.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or_default();
    if host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return Err(ConsoleError::Origin);
    }
    Ok(())
}

impl Signed {
    fn chrome(&self) -> Chrome<'_> {
        Chrome {
            workspace: &self.caller.workspace,
            role: self.caller.role,
            csrf: &self.csrf,
            open: self.open,
            flash: self.flash.clone(),
        }
    }

    /// A page of this session.
    pub(crate) fn page(&self, status: StatusCode, title: &str, body: &str) -> Response {
        html_response(
            status,
            html::page(title, Some(&self.chrome()), body),
            self.new_cookie.as_deref(),
        )
    }

    /// An error page of this session.
    pub(crate) fn error(&self, e: &ConsoleError) -> Response {
        if let ConsoleError::Store(e) = e {
            tracing::error!(error = %e, "the console cannot check an API key");
        }
        let body = format!(
            r#"<p class="error">{}</p><p><a href="/">Back to the console</a></p>"#,
            html::esc(&e.to_string())
        );
        self.page(e.status(), title_of(e), &body)
    }

    /// Back to `to` (after a write), with `message` shown there.
    pub(crate) fn redirect(&self, console: &Console, to: &str, message: String) -> Response {
        console.sessions.flash(&self.session, message);
        Redirect::to(to).into_response()
    }
}

/// A handler's signed-in session (see [`Console::signed`]): a request without one is answered
/// with the way to sign in before the handler runs.
impl axum::extract::FromRequestParts<State> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        console: &State,
    ) -> Result<Self, Self::Rejection> {
        console.signed(&parts.headers).await
    }
}
