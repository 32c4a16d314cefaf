//! async-graphql's validation, kept off the async workers and quiet about the schema when
//! introspection is off. The limits that bound its work are checked before it, by
//! [`crate::admission`].

use std::sync::Arc;

use async_graphql::ServerError;
use async_graphql::ValidationResult;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs validation with [`tokio::task::block_in_place`] on a multi-threaded runtime, so that
/// whatever it costs the worker's other tasks (`/healthz`, other clients) move to another
/// worker meanwhile; strips typo suggestions (`Did you mean "contact"?`) from its errors when
/// introspection is off, since they name the schema's fields one guess at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validation {
    pub(crate) introspection: bool,
}

impl ExtensionFactory for Validation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
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
}
