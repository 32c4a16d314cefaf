//! API keys over the API (`apiKeys`, `createApiKey`, `revokeApiKey`): admin role only, the
//! caller's workspace only, the secret in the create answer only.

mod common;

use common::{WS, seeded};
use dossier_gateway::{Caller, Role};
use serde_json::{Value, json};

async fn run(t: &common::TestApp, caller: Caller, query: &str, vars: Value) -> Value {
    dossier_gateway::execute(&t.schema, &t.store, caller, query, Some(vars)).await
}

fn as_role(ws: &str, role: Role) -> Caller {
    Caller {
        workspace: ws.to_string(),
        role,
    }
}

const CREATE: &str = "mutation($name: String!, $role: KeyRole!, $in: String) { createApiKey(name: $name, role: $role, expiresIn: $in) { secret key { id name role active expiresAt createdAt revokedAt } } }";

#[tokio::test]
async fn an_admin_creates_lists_and_revokes_keys_of_its_workspace() {
    let t = seeded().await;
    t.store.ensure_workspace("other").await.unwrap();
    let (other_key, _) = t
        .store
        .create_key("other", "theirs", Role::Admin, None)
        .await
        .unwrap();
    let admin = || Caller::admin(WS);

    let out = run(
        &t,
        admin(),
        CREATE,
        json!({ "name": " desk ", "role": "WRITE", "in": "30d" }),
    )
    .await;
    assert!(out.get("errors").is_none(), "{out}");
    let created = &out["data"]["createApiKey"];
    let secret = created["secret"].as_str().unwrap();
    let id = created["key"]["id"].as_str().unwrap();
    assert!(secret.starts_with(&format!("dsk_{id}_")), "{created}");
    assert_eq!(created["key"]["name"], "desk");
    assert_eq!(created["key"]["role"], "WRITE");
    assert_eq!(created["key"]["active"], true);
    let key = t.store.authenticate(secret).await.unwrap().unwrap();
    assert_eq!((key.workspace.as_str(), key.role), (WS, Role::Write));
    let days = (key.expires_at.unwrap() - key.created_at + 43_200_000_000) / 86_400_000_000;
    assert_eq!(days, 30);

    // Listed without secrets, this workspace's only.
    let out = run(
        &t,
        admin(),
        "{ apiKeys { id name role active revokedAt } }",
        json!({}),
    )
    .await;
    let listed = out["data"]["apiKeys"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{out}");
    assert_eq!(listed[0]["id"], json!(id));
    assert!(!out.to_string().contains(&secret[20..]));

    // Another workspace's key is not found, and stays valid.
    let out = run(
        &t,
        admin(),
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": other_key.id }),
    )
    .await;
    assert_eq!(out["errors"][0]["extensions"]["code"], "NOT_FOUND", "{out}");
    assert!(
        t.store.keys(Some("other")).await.unwrap()[0]
            .revoked_at
            .is_none()
    );

    let out = run(
        &t,
        admin(),
        "mutation($id: ID!) { revokeApiKey(id: $id) { id active revokedAt } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(out["data"]["revokeApiKey"]["active"], false, "{out}");
    assert!(out["data"]["revokeApiKey"]["revokedAt"].is_string());
    assert!(t.store.authenticate(secret).await.unwrap().is_err());

    // Refusals: names, durations.
    for (vars, message) in [
        (json!({ "name": "", "role": "READ" }), "1 to 100 characters"),
        (
            json!({ "name": "x", "role": "READ", "in": "soon" }),
            "not a duration",
        ),
        (
            json!({ "name": "x", "role": "READ", "in": "0d" }),
            "not a duration",
        ),
    ] {
        let out = run(&t, admin(), CREATE, vars.clone()).await;
        let error = out["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{vars}: {out}");
    }
}

#[tokio::test]
async fn keys_need_the_admin_role() {
    let t = seeded().await;
    for role in [Role::Read, Role::Write] {
        for (query, vars) in [
            ("{ apiKeys { id } }", json!({})),
            (CREATE, json!({ "name": "x", "role": "ADMIN" })),
            (
                "mutation { revokeApiKey(id: \"0123456789ab\") { id } }",
                json!({}),
            ),
        ] {
            let out = run(&t, as_role(WS, role), query, vars).await;
            assert_eq!(
                out["errors"][0]["extensions"]["code"], "FORBIDDEN",
                "{role}: {out}"
            );
        }
    }
    assert!(t.store.keys(Some(WS)).await.unwrap().is_empty());
}
