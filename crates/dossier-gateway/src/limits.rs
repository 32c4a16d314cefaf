//! async-graphql's validation, kept off the async workers and quiet about the schema when
//! introspection is off, and the store's own error messages kept from clients. The limits
//! that bound validation's work are checked before it, by [`crate::admission`].

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextResolve, NextValidation,
    ResolveInfo,
};
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Value};

use crate::nulls::Sink;
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs validation with [`tokio::task::block_in_place`] on a multi-threaded runtime, so that
/// whatever it costs the worker's other tasks (`/healthz`, other clients) move to another
/// worker meanwhile; strips typo suggestions (`Did you mean "contact"?`) from its errors when
/// introspection is off, since they name the schema's fields one guess at a time; replaces
/// store errors by [`client_message`]s (the original is logged); and makes errored fields
/// `null` as the specification wants ([`crate::nulls`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validation {
    pub(crate) introspection: bool,
}

impl ExtensionFactory for Validation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

/// What a client is told instead of a store error's message (`database error: ...`, which
/// quotes the database: `LIKE or GLOB pattern too complex`, SQL, constraint names); `None`
/// for messages that are ours to show.
pub(crate) fn client_message(message: &str) -> Option<&'static str> {
    const RAW: [&str; 4] = [
        "database error:",
        "cannot open the store",
        "store migration failed",
        "corrupt stored",
    ];
    if !RAW.iter().any(|p| message.starts_with(p)) {
        return None;
    }
    let lower = message.to_ascii_lowercase();
    Some(if lower.contains("pattern too complex") {
        "a filter's pattern is too long for the store; use a shorter `contains` value"
    } else if lower.contains("timeout") || lower.contains("canceling statement") {
        "the store took too long to answer; ask for less (smaller pages, fewer fields)"
    } else {
        "the store could not answer this request; try again shortly"
    })
}

/// `message` without async-graphql's ` Did you mean ...?` suffix.
pub(crate) fn without_suggestion(message: &str) -> &str {
    message
        .find(" Did you mean")
        .map_or(message, |at| &message[..at])
}

#[async_trait::async_trait]
impl Extension for Validation {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let multi_threaded =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        // Validation is synchronous work inside a future that never waits: driving it to
        // completion here changes nothing but the thread it occupies.
        let result = if multi_threaded {
            tokio::task::block_in_place(|| futures::executor::block_on(next.run(ctx)))
        } else {
            next.run(ctx).await
        };
        match result {
            Err(mut errors) if !self.introspection => {
                for e in &mut errors {
                    let kept = without_suggestion(&e.message).len();
                    e.message.truncate(kept);
                }
                Err(errors)
            }
            other => other,
        }
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // Both are references into the request: nothing is copied unless the sink needs it.
        let (path, ty) = (info.path_node, info.return_type);
        let result = next.run(ctx, info).await;
        match ctx.data_opt::<Sink>() {
            Some(sink) => sink.settle(path, ty, result),
            None => result,
        }
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        if let Some(sink) = ctx.data_opt::<Sink>() {
            response = sink.finish(response);
        }
        for e in &mut response.errors {
            if let Some(shown) = client_message(&e.message) {
                tracing::warn!(error = %e.message, path = ?e.path, "a store error was answered with a message of ours");
                e.message = shown.to_string();
            }
        }
        response
    }
}

/// What a field that may read through a whole workspace (a breakdown, a time series, an
/// ordering by a custom value or a session list) counts for in the complexity limit besides
/// its selections: as much as a page of 100 items of five fields, so that a document holds a
/// few of them at most under the default limit of 5000.
pub(crate) const SCAN_COST: usize = 500;

/// The cost of a list of up to `first` items (20 when not given) of `child` each, and of
/// the scan that finds them.
pub(crate) fn scan_cost(first: Option<i32>, child: usize) -> usize {
    let items = first.map_or(20, |n| n.max(1) as usize);
    SCAN_COST.saturating_add(items.saturating_mul(child))
}

/// The cost of `contacts`: its selections per item as before, plus a scan when it is ordered
/// (an ordering reads every matching contact to find the first ones).
pub(crate) fn contacts_cost(ordered: bool, child: usize) -> usize {
    child + if ordered { SCAN_COST } else { 0 }
}

/// The cost of a time series: a scan, plus its selections once per interval from `from` to
/// `to` (`days` long each, at least).
pub(crate) fn series_cost(days: i64, from: i64, to: i64, child: usize) -> usize {
    let day = 86_400_000_000_i64;
    let intervals = ((to - from).max(0) / (days.max(1) * day) + 1) as usize;
    SCAN_COST.saturating_add(intervals.saturating_mul(child))
}
