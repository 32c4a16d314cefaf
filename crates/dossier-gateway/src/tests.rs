//! A page of contacts loads each per-contact field with one store call.

use dossier_core::model::{ContactLink, ContactRecord, SessionRecord};
use dossier_core::{AggOp, AggregateRule, DataKey, DataValue, Identity, MappedRecord};
use dossier_store::{BatchWrite, SqlStore};

use super::*;
use crate::loaders::Loaders;

const WS: &str = "default";

fn batch(stream: &str, records: Vec<MappedRecord>) -> BatchWrite {
    BatchWrite {
        source: "shop".into(),
        stream: stream.into(),
        records,
        rejected: vec![],
        state: serde_json::json!({}),
        run_id: None,
        mark_seen: false,
        defer_derived: false,
        lease_owner: None,
    }
}

fn external(i: u32) -> Identity {
    Identity::external("shop", "customers", &i.to_string())
}

async fn store(dir: &tempfile::TempDir) -> SqlStore {
    let store = SqlStore::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    store.ensure_workspace(WS).await.unwrap();
    let rule = AggregateRule::new("total_spent", AggOp::Sum, "order", Some("total")).unwrap();
    store.set_rules(WS, &[rule]).await.unwrap();
    let customers = (1..=10)
        .map(|i| {
            MappedRecord::Contact(ContactRecord {
                external: external(i),
                identities: vec![Identity::email(&format!("u{i}@example.com")).unwrap()],
                profile: vec![],
                data: vec![(
                    DataKey::new("plan").unwrap(),
                    DataValue::String("pro".into()),
                )],
                updated_at: Some(1),
                created_at: Some(1),
            })
        })
        .collect();
    store
        .apply_batch(WS, &batch("customers", customers))
        .await
        .unwrap();
    let orders = (1..=30)
        .map(|n| {
            MappedRecord::Session(SessionRecord {
                external_id: n.to_string(),
                kind: if n <= 20 { "order" } else { "visit" }.into(),
                contact: Some(ContactLink::Identity(external(n % 10 + 1))),
                started_at: Some(i64::from(n)),
                ended_at: None,
                data: vec![(DataKey::new("total").unwrap(), DataValue::Number(1.0))],
            })
        })
        .collect();
    store
        .apply_batch(WS, &batch("orders", orders))
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn a_page_loads_each_field_with_one_store_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let schema = build_schema(store.clone(), None, None, None, GatewayConfig::open(WS));
    let loaders = Loaders::new(&store, WS);
    let request = async_graphql::Request::new(
        r#"{ contacts(first: 10) {
            edges { node {
                id data aggregates identities { kind value }
                sessions(first: 2) { edges { node { id contact { id } } } }
                orders: sessions(kind: "order", first: 5) { edges { node { id } } }
            } }
        } }"#,
    )
    .data(loaders.clone())
    .data(Caller::admin(WS));
    let out = serde_json::to_value(schema.execute(request).await).unwrap();
    assert!(out.get("errors").is_none(), "{out:#}");
    let edges = out["data"]["contacts"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 10);
    for e in edges {
        let node = &e["node"];
        assert_eq!(node["data"]["plan"], "pro");
        assert_eq!(node["identities"].as_array().unwrap().len(), 2);
        assert_eq!(node["sessions"]["edges"].as_array().unwrap().len(), 2);
        assert_eq!(node["orders"]["edges"].as_array().unwrap().len(), 2);
        assert_eq!(
            node["sessions"]["edges"][0]["node"]["contact"]["id"],
            node["id"]
        );
    }
    assert_eq!(loaders.data.loader().calls.get(), 1);
    assert_eq!(loaders.aggregates.loader().calls.get(), 1);
    assert_eq!(loaders.identities.loader().calls.get(), 1);
    // Two differently-argued `sessions` fields: one call each.
    assert_eq!(loaders.sessions.loader().calls.get(), 2);
    // Session.contact: the page's contacts in one read too.
    assert_eq!(loaders.contacts.loader().calls.get(), 1);
}

/// A contact asked for alone has nothing to batch with: its fields read the store directly
/// (no data loader wait) and answer what the batched path answers.
#[tokio::test]
async fn a_contact_alone_reads_its_fields_without_the_loaders() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let schema = build_schema(store.clone(), None, None, None, GatewayConfig::open(WS));
    let fields = r#"id data aggregates identities { kind value }
        sessions(first: 2) { edges { node { id } } pageInfo { hasNextPage } }
        orders: sessions(kind: "order", first: 5) { edges { node { id } } }"#;
    let run = |query: String| {
        let loaders = Loaders::new(&store, WS);
        let request = async_graphql::Request::new(query)
            .data(loaders.clone())
            .data(Caller::admin(WS));
        let schema = schema.clone();
        async move {
            let out = serde_json::to_value(schema.execute(request).await).unwrap();
            assert!(out.get("errors").is_none(), "{out:#}");
            (out, loaders)
        }
    };
    let (alone, loaders) = run(format!(
        r#"{{ contact(email: "u3@example.com") {{ {fields} }} }}"#
    ))
    .await;
    let calls = loaders.data.loader().calls.get()
        + loaders.aggregates.loader().calls.get()
        + loaders.identities.loader().calls.get()
        + loaders.sessions.loader().calls.get();
    assert_eq!(calls, 0);
    let alone = &alone["data"]["contact"];
    let (page, _) = run(format!(
        "{{ contacts(first: 10) {{ edges {{ node {{ {fields} }} }} }} }}"
    ))
    .await;
    let listed = page["data"]["contacts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["id"] == alone["id"])
        .unwrap();
    assert_eq!(alone, listed);
    assert_eq!(alone["data"]["plan"], "pro");
    assert_eq!(alone["sessions"]["edges"].as_array().unwrap().len(), 2);
    assert_eq!(alone["sessions"]["pageInfo"]["hasNextPage"], true);
}

/// A connector admin that records installs.
struct FakeAdmin(std::sync::Mutex<Vec<String>>);

fn info(name: &str, kind: ConnectorKind) -> ConnectorInfo {
    ConnectorInfo {
        name: name.into(),
        kind,
        version: "1.2.3".into(),
        config_schema: serde_json::json!({"type": "object"}),
        stream_schema: serde_json::json!({"type": "object"}),
        file: (kind == ConnectorKind::Plugin).then(|| format!("{name}.so")),
        sha256: None,
    }
}

#[async_trait::async_trait]
impl ConnectorAdmin for FakeAdmin {
    fn connectors(&self) -> Vec<ConnectorInfo> {
        let mut all = vec![info("sqlite", ConnectorKind::Builtin)];
        all.extend(
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|n| info(n, ConnectorKind::Plugin)),
        );
        all
    }

    async fn install(&self, file: &str, _sha256: Option<&str>) -> Result<ConnectorInfo, String> {
        let name = file.trim_end_matches(".so").to_string();
        self.0.lock().unwrap().push(name.clone());
        Ok(info(&name, ConnectorKind::Plugin))
    }
}

#[tokio::test]
async fn connectors_are_listed_and_installing_is_an_admin_switch() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Arc::new(FakeAdmin(Default::default()));
    let install = r#"mutation { installConnector(file: "stripe.so") { name kind version file } }"#;
    let list = "{ connectors { name kind version configSchema file } }";

    let store = store(&dir).await;
    let admin_caller = || Caller::admin(WS);
    let closed = build_schema(
        store.clone(),
        None,
        Some(admin.clone()),
        None,
        GatewayConfig::open(WS),
    );
    let out = execute(&closed, &store, admin_caller(), list, None).await;
    assert_eq!(out["data"]["connectors"][0]["name"], "sqlite");
    assert_eq!(out["data"]["connectors"][0]["kind"], "BUILTIN");
    assert_eq!(
        out["data"]["connectors"][0]["configSchema"]["type"],
        "object"
    );
    let out = execute(&closed, &store, admin_caller(), install, None).await;
    let message = out["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("server.allow_plugin_install"), "{message}");
    assert!(admin.0.lock().unwrap().is_empty());

    let open = build_schema(
        store.clone(),
        None,
        Some(admin.clone()),
        None,
        GatewayConfig {
            allow_plugin_install: true,
            ..GatewayConfig::open(WS)
        },
    );
    // Both are admin fields.
    let reader = Caller {
        workspace: WS.into(),
        role: Role::Write,
    };
    for doc in [install, list] {
        let out = execute(&open, &store, reader.clone(), doc, None).await;
        let message = out["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("needs the admin role"), "{message}");
    }
    assert!(admin.0.lock().unwrap().is_empty());
    let out = execute(&open, &store, admin_caller(), install, None).await;
    assert!(out.get("errors").is_none(), "{out:#}");
    assert_eq!(out["data"]["installConnector"]["kind"], "PLUGIN");
    let out = execute(&open, &store, admin_caller(), list, None).await;
    assert_eq!(out["data"]["connectors"][1]["name"], "stripe");
    assert_eq!(out["data"]["connectors"][1]["file"], "stripe.so");
}
