//! A real SQLite store in a tempdir (the shop's customers in one workspace, one customer in
//! another, a failing source), the gateway's router with the console's merged in, keys of
//! each role, and a browser-like client calling the router in-process (no port).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use dossier_gateway::{Caller, DossierSchema, GatewayConfig, Role, SourceCheck, SyncTrigger};
use dossier_store::{SourceRow, SqlStore};
pub use dossier_test_support::shop::WS;
use dossier_test_support::shop::{batch, customer, order};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The other workspace: its contacts must never show in [`WS`]'s console.
pub const OTHER: &str = "other";
/// Customers seeded in [`WS`].
pub const CUSTOMERS: u32 = 40;

/// Syncs `shop` after `delay`, as a finished run with two rows read.
struct FakeSync {
    store: SqlStore,
    delay: Duration,
}

#[async_trait::async_trait]
impl SyncTrigger for FakeSync {
    async fn trigger(&self, workspace: &str, source: &str) -> Result<i64, String> {
        if workspace != WS || source != "shop" {
            return Err(format!("unknown source {source:?}"));
        }
        tokio::time::sleep(self.delay).await;
        let run = self.store.start_run(WS, source, "api").await.unwrap();
        self.store
            .finish_run(run, None, &Default::default())
            .await
            .unwrap();
        Ok(run)
    }

    /// The shop's one configured stream reads a column its table lacks.
    async fn check(&self, workspace: &str, source: &str) -> Result<SourceCheck, String> {
        if workspace != WS || source != "shop" {
            return Err(format!("unknown source {source:?}"));
        }
        Ok(SourceCheck {
            problems: vec![r#"stream "customers": no column "plan" in table customers"#.into()],
            notes: vec![],
        })
    }
}

pub struct T {
    pub store: SqlStore,
    /// The run events the schema's `syncProgress` serves.
    pub progress: Arc<dossier_gateway::ProgressChannel>,
    pub schema: DossierSchema,
    pub app: Router,
    pub read: String,
    pub write: String,
    pub admin: String,
    pub other_admin: String,
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    /// The value of the first CSRF field of the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// A signed-in browser: its cookie and its session's CSRF token.
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

pub async fn app(config: GatewayConfig) -> T {
    app_with(config, Duration::ZERO).await
}

/// The store and router, with syncs that take `sync_delay`.
pub async fn app_with(config: GatewayConfig, sync_delay: Duration) -> T {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = SqlStore::open(&url).await.unwrap();
    store.ensure_workspace(WS).await.unwrap();
    let customers = (1..=CUSTOMERS)
        .map(|i| customer(i, &format!("user{i}@example.com"), "FR", "basic"))
        .collect();
    store
        .apply_batch(WS, &batch("customers", customers, 1))
        .await
        .unwrap();
    store
        .apply_batch(WS, &batch("orders", vec![order(1, 1, 42.0, 1_000_000)], 1))
        .await
        .unwrap();
    store.ensure_workspace(OTHER).await.unwrap();
    store
        .apply_batch(
            OTHER,
            &batch(
                "customers",
                vec![customer(1, "secret@other.example", "DE", "pro")],
                1,
            ),
        )
        .await
        .unwrap();
    store
        .upsert_source(
            WS,
            &SourceRow {
                name: "shop".into(),
                connector: "sqlite".into(),
                config: json!({}),
                streams: vec!["customers".into()],
                stream_configs: vec![json!({
                    "name": "customers",
                    "read": { "table": "customers", "cursor": "updated_at" },
                    "mapping": { "target": "contact", "id": "id", "identities": { "email": "email" } }
                })],
                schedule: Some("15m".into()),
            },
        )
        .await
        .unwrap();
    // Two failed runs in a row.
    let now = chrono::Utc::now().timestamp_micros();
    for error in ["first", "connection <refused>"] {
        let claim = store
            .claim_now(WS, "shop", "test", now, 30_000_000)
            .await
            .unwrap();
        assert!(claim.is_some());
        store
            .release_lease(WS, "shop", "test", None, Some(error), now)
            .await
            .unwrap();
    }
    let key = |ws: &'static str, role| {
        let store = store.clone();
        async move { store.create_key(ws, "t", role, None).await.unwrap().1 }
    };
    let read = key(WS, Role::Read).await;
    let write = key(WS, Role::Write).await;
    let admin = key(WS, Role::Admin).await;
    let other_admin = key(OTHER, Role::Admin).await;
    let sync: Arc<dyn SyncTrigger> = Arc::new(FakeSync {
        store: store.clone(),
        delay: sync_delay,
    });
    let progress = Arc::new(dossier_gateway::ProgressChannel::new(64));
    let feed: Arc<dyn dossier_gateway::ProgressFeed> = progress.clone();
    let schema = dossier_gateway::build_schema(store.clone(), Some(sync), None, Some(feed), config);
    // As `dossier serve` wires them: the gateway's routes and the console's, merged.
    let app = dossier_gateway::router(schema.clone(), store.clone())
        .merge(dossier_console::router(schema.clone(), store.clone()));
    T {
        store,
        progress,
        schema,
        app,
        read,
        write,
        admin,
        other_admin,
        _dir: dir,
    }
}

pub fn keys() -> GatewayConfig {
    GatewayConfig::default()
}

pub fn open() -> GatewayConfig {
    GatewayConfig::open(WS)
}

/// Percent-encodes a form or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl T {
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, uri: &str, cookie: Option<&str>) -> Resp {
        let mut req = Request::get(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// POSTs a form as a browser on this host would (with `Host` and `Origin`).
    pub async fn post(&self, uri: &str, cookie: Option<&str>, form: &str) -> Resp {
        self.post_from(uri, cookie, form, "http://console.test")
            .await
    }

    pub async fn post_from(
        &self,
        uri: &str,
        cookie: Option<&str>,
        form: &str,
        origin: &str,
    ) -> Resp {
        let mut req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "console.test")
            .header(header::ORIGIN, origin);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Signs in with `key`; the browser's cookie and CSRF token.
    pub async fn sign_in(&self, key: &str) -> Browser {
        let r = self
            .post("/sign-in", None, &format!("key={}", enc(key)))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location(), "/");
        let set = r.set_cookie().expect("a session cookie");
        let cookie = set.split(';').next().unwrap().to_string();
        let home = self.get("/", Some(&cookie)).await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        Browser {
            cookie,
            csrf: home.csrf(),
        }
    }

    /// Runs a document in-process as an admin of `ws`; its `data`.
    pub async fn data(&self, ws: &str, query: &str) -> Value {
        let out =
            dossier_gateway::execute(&self.schema, &self.store, Caller::admin(ws), query, None)
                .await;
        assert!(out.get("errors").is_none(), "{out}");
        out["data"].clone()
    }

    pub async fn paused(&self) -> bool {
        self.data(WS, "{ sources { health { paused } } }").await["sources"][0]["health"]["paused"]
            .as_bool()
            .unwrap()
    }

    /// The id of the contact with `email` in `ws`.
    pub async fn contact_id(&self, ws: &str, email: &str) -> String {
        let q = format!(r#"{{ contact(email: "{email}") {{ id }} }}"#);
        self.data(ws, &q).await["contact"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}
