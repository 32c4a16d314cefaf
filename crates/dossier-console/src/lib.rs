//! Dossier's web console: server-rendered pages for the people who run Dossier and use its
//! data, and GraphiQL served offline.
//!
//! [`router`] serves, beside the gateway's router (merge the two):
//! - `/` (an overview), `/sources` (health, sync now, pause, resume, cancel), `/contacts`
//!   (search by email, paged) and `/contacts/{id}` (a contact's card);
//! - `/segments` (counts, an editor with a live count, the entered/left feed), `/shortcuts`
//!   (an editor with a live preview), and for admins `/keys` and `/connectors`;
//! - `/sign-in` and `/sign-out`: an API key exchanged for a server-side session (with
//!   `access = "open"` a session is made on the first visit, without a key);
//! - `/graphiql` and `/assets/...`, every script and stylesheet from the binary.
//!
//! The console reads and writes only by executing GraphQL documents through the gateway's
//! schema as the session's [`Caller`](dossier_gateway::Caller), so roles and workspaces are
//! checked where the API checks them and the console adds no way around them. Every answer
//! carries a Content-Security-Policy that allows no inline script or style.

#![warn(missing_docs)]

mod assets;
mod connectors;
mod console;
mod contacts;
mod export;
mod forms;
mod gql;
mod html;
mod keys;
mod pages;
mod segments;
mod session;
mod shortcuts;
mod source_page;
mod sources;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use dossier_gateway::DossierSchema;
use dossier_store::SqlStore;

pub use console::CSP;

/// Why a console request could not be answered as asked.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The store did not answer a key check.
    #[error("cannot check the API key: {0}")]
    Store(#[from] dossier_store::StoreError),
    /// The gateway refused or failed a document the console ran; `status` is what the
    /// console answers with (403 for a role the caller lacks).
    #[error("{message}")]
    Refused {
        /// The HTTP status to answer with.
        status: StatusCode,
        /// The gateway's message.
        message: String,
    },
    /// The form's CSRF token is missing or is not the session's.
    #[error("this form is stale or was not sent from the console; reload the page and try again")]
    Csrf,
    /// The request came from a page of another origin.
    #[error("this request came from another site")]
    Origin,
    /// Nothing of the caller's workspace is there.
    #[error("not found")]
    NotFound,
}

impl ConsoleError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Refused { status, .. } => *status,
            ConsoleError::Csrf | ConsoleError::Origin => StatusCode::FORBIDDEN,
            ConsoleError::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// The console's routes over `schema` (built over `store` by
/// [`dossier_gateway::build_schema`]): merge them into [`dossier_gateway::router`]'s.
pub fn router(schema: DossierSchema, store: SqlStore) -> Router {
    let console = Arc::new(console::Console::new(schema, store));
    Router::new()
        .route("/", get(pages::home))
        .route("/sign-in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/sign-out", post(pages::sign_out))
        .route("/sources", get(sources::list))
        .route("/sources/{name}", get(source_page::page))
        .route("/sources/{name}/progress", get(source_page::progress))
        .route("/sources/{name}/{action}", post(sources::act))
        .route("/contacts", get(contacts::list))
        .route("/contacts.csv", get(export::contacts))
        .route("/contacts/{id}", get(contacts::card))
        .route("/segments", get(segments::list).post(segments::save))
        .route("/segments/-/new", get(segments::new))
        .route("/segments/-/count", get(segments::count))
        .route("/segments/{name}", get(segments::show))
        .route("/segments/{name}/delete", post(segments::delete))
        .route("/shortcuts", get(shortcuts::list).post(shortcuts::post))
        .route("/shortcuts/-/new", get(shortcuts::new))
        .route("/shortcuts/-/preview", post(shortcuts::preview_json))
        .route("/shortcuts/{name}", get(shortcuts::show))
        .route("/shortcuts/{name}/delete", post(shortcuts::delete))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/connectors", get(connectors::list))
        .route("/graphiql", get(pages::graphiql))
        .route("/assets/{*path}", get(assets::serve))
        .with_state(console)
        .layer(axum::middleware::map_response(secure))
}

/// Headers every console answer carries.
async fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Contact ids and searches travel in URLs: keep them from other sites. Not
    // `no-referrer`: under it browsers send `Origin: null` with the console's own forms, which
    // the origin check must then refuse (found by the browser test).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}
