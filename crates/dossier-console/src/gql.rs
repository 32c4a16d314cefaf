//! The console's one way to the data: a GraphQL document executed through the gateway's
//! schema as the session's caller, with the API's admission, role guards and workspace.

use axum::http::StatusCode;
use dossier_gateway::Caller;
use serde_json::Value;

use crate::ConsoleError;
use crate::console::Console;

impl Console {
    /// Runs `document` as `caller`; its `data`, or the first error as a refusal (403 when
    /// the caller's role is not enough, 400 otherwise).
    pub(crate) async fn query(
        &self,
        caller: &Caller,
        document: &str,
        variables: Value,
    ) -> Result<Value, ConsoleError> {
        let out = dossier_gateway::execute(
            &self.schema,
            &self.store,
            caller.clone(),
            document,
            Some(variables),
        )
        .await;
        refusal(&out).map_or_else(|| Ok(out["data"].clone()), Err)
    }
}

/// The refusal a response's first error makes, if it has any.
pub(crate) fn refusal(out: &Value) -> Option<ConsoleError> {
    let error = out["errors"].as_array()?.first()?;
    let status = match error["extensions"]["code"].as_str() {
        Some("FORBIDDEN") => StatusCode::FORBIDDEN,
        Some("UNAUTHENTICATED") => StatusCode::UNAUTHORIZED,
        Some("NOT_FOUND") => StatusCode::NOT_FOUND,
        Some("TIMEOUT") => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    Some(ConsoleError::Refused {
        status,
        message: error["message"]
            .as_str()
            .unwrap_or("the request failed")
            .to_string(),
    })
}
