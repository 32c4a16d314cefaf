//! Field errors as the GraphQL specification wants them ("Handling Execution Errors"):
//! async-graphql leaves an errored field out of `data`, where the specification makes it
//! `null`, and when the field is non-null, makes its nearest nullable parent `null` instead.
//!
//! Whatever wraps field resolution (the validation extension of `limits`) calls
//! [`Sink::settle`] after each field: an error of a nullable field is kept here and the field
//! answers `null`; an error of a non-null field goes up (as async-graphql reports it) and is
//! recorded as a pending null, which the first nullable field above it (or list of nullable
//! items) takes.
//! A pending null that reaches the root makes `data` null.

use std::sync::Mutex;

use async_graphql::{QueryPathNode, ServerError, ServerResult, Value};

/// Marks an error that only carries a pending null upwards: never shown.
const CARRIER: &str = "\u{0}null propagates to the parent";

/// The field errors of one request that async-graphql would not report, and the pending null.
#[derive(Default)]
pub(crate) struct Sink {
    errors: Mutex<Vec<ServerError>>,
    /// The paths of the non-null fields whose null has not found a nullable parent yet
    /// (fields resolve concurrently: several may wait at once).
    pending: Mutex<Vec<Vec<String>>>,
}

/// Is `ty` (as async-graphql writes it: `String!`, `[Contact!]`) non-null?
fn non_null(ty: &str) -> bool {
    ty.ends_with('!')
}

/// Are the items of list type `ty` nullable? `None` when `ty` is not a list.
fn nullable_items(ty: &str) -> Option<bool> {
    let inner = ty.strip_suffix('!').unwrap_or(ty);
    let items = inner.strip_prefix('[')?.strip_suffix(']')?;
    Some(!non_null(items))
}

impl Sink {
    /// The outcome of the field at `path`, of type `ty`, made spec-conformant.
    pub(crate) fn settle(
        &self,
        path: &QueryPathNode<'_>,
        ty: &str,
        result: ServerResult<Option<Value>>,
    ) -> ServerResult<Option<Value>> {
        let mut pending = self.pending.lock().expect("sink lock");
        // The common case, a field that worked with no null waiting below it: no path built.
        if result.is_ok() && pending.is_empty() {
            return result;
        }
        let path = path.to_string_vec();
        match result {
            Err(e) if e.message == CARRIER || non_null(ty) => {
                // async-graphql drops the field; its parent must become null.
                pending.retain(|p| !(p.len() > path.len() && p.starts_with(&path)));
                pending.push(path);
                Err(e)
            }
            Err(e) => {
                self.errors.lock().expect("sink lock").push(e);
                Ok(Some(Value::Null))
            }
            Ok(value) => {
                let is_below = |p: &Vec<String>| p.len() > path.len() && p.starts_with(&path);
                let failed: Vec<Vec<String>> =
                    pending.iter().filter(|p| is_below(p)).cloned().collect();
                if failed.is_empty() {
                    return Ok(value);
                }
                pending.retain(|p| !is_below(p));
                // A list of nullable items: only the failed items go null.
                if nullable_items(ty) == Some(true)
                    && let Some(Value::List(mut items)) = value
                {
                    for f in &failed {
                        if let Some(item) = f
                            .get(path.len())
                            .and_then(|s| s.parse::<usize>().ok())
                            .and_then(|i| items.get_mut(i))
                        {
                            *item = Value::Null;
                        }
                    }
                    return Ok(Some(Value::List(items)));
                }
                if non_null(ty) {
                    pending.push(path);
                    return Err(ServerError::new(CARRIER, None));
                }
                Ok(Some(Value::Null))
            }
        }
    }

    /// `response` with the kept errors, without the carriers, and with `data` null when a
    /// pending null reached the root.
    pub(crate) fn finish(&self, mut response: async_graphql::Response) -> async_graphql::Response {
        response.errors.retain(|e| e.message != CARRIER);
        response
            .errors
            .extend(self.errors.lock().expect("sink lock").drain(..));
        if !std::mem::take(&mut *self.pending.lock().expect("sink lock")).is_empty() {
            response.data = Value::Null;
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_read() {
        assert!(non_null("String!"));
        assert!(!non_null("[String!]"));
        assert_eq!(nullable_items("[Contact]!"), Some(true));
        assert_eq!(nullable_items("[Contact!]"), Some(false));
        assert_eq!(nullable_items("Contact"), None);
    }
}
