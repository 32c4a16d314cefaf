//! The files the console serves from the binary: its stylesheet, GraphiQL's start script and
//! the vendored GraphiQL and React (see `assets/vendor/README.md`), each with its media type.
//! A fixed table rather than a directory walk: what ships is what is listed here.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Path under `/assets/`, media type, contents.
pub(crate) const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
    (
        "graphiql.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/graphiql.css"),
    ),
    (
        "progress.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/progress.js"),
    ),
    (
        "segments.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/segments.js"),
    ),
    (
        "shortcuts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/shortcuts.js"),
    ),
    (
        "graphiql-init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql-init.js"),
    ),
    (
        "vendor/graphiql/graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/graphiql/graphiql.min.js"),
    ),
    (
        "vendor/graphiql/graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/graphiql/graphiql.min.css"),
    ),
    (
        "vendor/react/react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/react/react.production.min.js"),
    ),
    (
        "vendor/react-dom/react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/react-dom/react-dom.production.min.js"),
    ),
];

/// `GET /assets/{*path}`.
pub(crate) async fn serve(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, media, body)) => (
            [
                (header::CONTENT_TYPE, *media),
                // Not immutable: the names carry no version, so an upgrade must show within
                // the hour.
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `GET /graphiql`: GraphiQL over `/graphql`, every script and stylesheet from `/assets/`.
pub(crate) fn graphiql_page(keys: bool) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GraphiQL · Dossier</title>
<link rel="stylesheet" href="/assets/vendor/graphiql/graphiql.min.css">
<link rel="stylesheet" href="/assets/graphiql.css">
</head>
<body>
<div id="graphiql" data-access="{}">Loading GraphiQL…</div>
<script src="/assets/vendor/react/react.production.min.js"></script>
<script src="/assets/vendor/react-dom/react-dom.production.min.js"></script>
<script src="/assets/vendor/graphiql/graphiql.min.js"></script>
<script src="/assets/graphiql-init.js"></script>
</body>
</html>
"#,
        if keys { "keys" } else { "open" }
    )
}
