//! HTTP: `/graphql` (POST, and GET for queries), GraphiQL at `/`, `/healthz`.

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::OperationType;
use async_graphql::{Response, ServerError};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use dossier_store::SqlStore;

use crate::DossierSchema;

#[derive(Clone)]
struct AppState {
    schema: DossierSchema,
    store: SqlStore,
}

/// The HTTP app: `POST /graphql`, `GET /graphql` (queries only, from the URL's `query`,
/// `variables` and `operationName`), GraphiQL at `GET /` and `GET /healthz` (200 `ok` when
/// the store answers, else 503 with the error).
pub fn router(schema: DossierSchema, store: SqlStore) -> Router {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/", get(graphiql))
        .route("/healthz", get(healthz))
        .with_state(AppState { schema, store })
}

async fn graphql_post(State(app): State<AppState>, req: GraphQLRequest) -> GraphQLResponse {
    app.schema.execute(req.into_inner()).await.into()
}

async fn graphql_get(State(app): State<AppState>, req: GraphQLRequest) -> axum::response::Response {
    let req = req.into_inner();
    if !is_read_only(&req.query, req.operation_name.as_deref()) {
        let refusal = Response::from_errors(vec![ServerError::new(
            "only queries can be sent with GET; send mutations with POST",
            None,
        )]);
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(axum::http::header::ALLOW, "POST")],
            GraphQLResponse::from(refusal),
        )
            .into_response();
    }
    GraphQLResponse::from(app.schema.execute(req).await).into_response()
}

/// Does the operation a GET would run only read? A document that does not parse is let
/// through: executing it answers with the syntax error.
fn is_read_only(query: &str, operation: Option<&str>) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(query) else {
        return true;
    };
    doc.operations
        .iter()
        .filter(|(name, _)| operation.is_none() || name.map(|n| n.as_str()) == operation)
        .all(|(_, op)| op.node.ty == OperationType::Query)
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .title("Dossier GraphiQL")
            .finish(),
    )
}

async fn healthz(State(app): State<AppState>) -> (StatusCode, String) {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
