//! Which parts of a contact a document asks for under a root lookup, so that the store reads
//! them with the contact in one statement instead of one read per field.

use async_graphql::{SelectionField, Value};
use dossier_store::{CardParts, SessionsPage};

use crate::Gateway;
use crate::context::page_size;

/// The parts selected under `field` (a `contact` lookup). Sessions are read along only for a
/// single first-page selection whose arguments are plain; anything else (a second `sessions`
/// with other arguments, a cursor, a page size out of bounds) is left to its own resolver,
/// which reads it, or reports its error, as usual.
pub(crate) fn parts_asked(gw: &Gateway, field: &SelectionField<'_>) -> CardParts {
    let mut parts = CardParts::default();
    let mut sessions = vec![];
    for child in field.selection_set() {
        match child.name() {
            "data" => parts.data = true,
            "aggregates" => parts.aggregates = true,
            "sessions" => sessions.push(child),
            _ => {}
        }
    }
    if let [only] = sessions.as_slice() {
        parts.sessions = first_page(gw, only);
    }
    parts
}

fn first_page(gw: &Gateway, sessions: &SelectionField<'_>) -> Option<SessionsPage> {
    let mut kind = None;
    let mut first = None;
    for (name, value) in sessions.arguments().ok()? {
        match (name.as_str(), value) {
            (_, Value::Null) => {}
            ("kind", Value::String(k)) => kind = Some(k),
            ("first", Value::Number(n)) => first = Some(i32::try_from(n.as_i64()?).ok()?),
            _ => return None,
        }
    }
    Some(SessionsPage {
        kind,
        first: page_size(gw, first).ok()?,
    })
}
