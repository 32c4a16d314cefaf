//! Segments, shortcuts and identity explanations through GraphQL, on a real SQLite store.

mod common;

use common::{TestApp, fr_basic_big, seeded};
use serde_json::json;

const SEGMENT: &str = r#"
query($name: String!, $after: String) {
  segment(name: $name) {
    name definition description count
    contacts(first: 100) { edges { node { email segments } } }
    changes(first: 100, after: $after) {
      edges { cursor node { change contactId contact { email } } }
      pageInfo { hasNextPage endCursor }
    }
    feedHead
  }
}"#;

fn emails(ids: &[u32]) -> Vec<String> {
    ids.iter().map(|i| format!("user{i}@example.com")).collect()
}

async fn save(t: &TestApp, name: &str, definition: &str) -> serde_json::Value {
    t.data(
        "mutation($n: String!, $d: String!) { saveSegment(name: $n, definition: $d, description: \"test\") { name definition } }",
        json!({ "n": name, "d": definition }),
    )
    .await
}

#[tokio::test]
async fn saved_segments_count_page_and_feed() {
    let t = seeded().await;
    let saved = save(
        &t,
        "fr_basic_big",
        r#"country="FR" and data.price_plan = "basic"  and agg.avg_basket > 50"#,
    )
    .await;
    assert_eq!(
        saved["saveSegment"]["definition"],
        r#"country = "FR" and data.price_plan = "basic" and agg.avg_basket > 50"#
    );
    let d = t.data(SEGMENT, json!({ "name": "fr_basic_big" })).await;
    let seg = &d["segment"];
    let want = emails(&fr_basic_big());
    assert_eq!(seg["count"], json!(want.len()));
    let got: Vec<&str> = seg["contacts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["email"].as_str().unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        seg["contacts"]["edges"][0]["node"]["segments"],
        json!(["fr_basic_big"])
    );
    // The feed starts with everyone who was in it when it was saved.
    let changes = seg["changes"]["edges"].as_array().unwrap();
    assert_eq!(changes.len(), want.len());
    assert!(changes.iter().all(|c| c["node"]["change"] == "ENTERED"));
    assert_eq!(seg["changes"]["pageInfo"]["endCursor"], seg["feedHead"]);

    // Lowering a basket makes its contact leave at the next refresh (after syncs, or a save).
    let leaver = fr_basic_big()[0];
    let id = t.id_of(leaver).await;
    let rows = t.store.sessions_of(&[id], None, 10, None).await.unwrap();
    let order = rows[&id].items[0].id;
    t.data(
        "mutation($id: ID!) { setSessionData(id: $id, key: \"total\", value: 1) { id } }",
        json!({ "id": order.to_string() }),
    )
    .await;
    t.store.refresh_segments(common::WS).await.unwrap();
    let after = seg["feedHead"].as_str().unwrap();
    let d = t
        .data(SEGMENT, json!({ "name": "fr_basic_big", "after": after }))
        .await;
    let changes = &d["segment"]["changes"]["edges"];
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
    assert_eq!(changes[0]["node"]["change"], "LEFT");
    assert_eq!(
        changes[0]["node"]["contact"]["email"],
        format!("user{leaver}@example.com")
    );

    // The same text form works as an ad-hoc filter, combined with `where`.
    let d = t
        .data(
            r#"{ contacts(filter: "agg.avg_basket > 50", where: { field: "country", eq: "FR" }) { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        d["contacts"]["totalCount"],
        json!((6..=common::CUSTOMERS).filter(|i| i % 3 == 0).count() - 1)
    );

    let d = t.data("{ segments { name } }", json!({})).await;
    assert_eq!(d["segments"], json!([{ "name": "fr_basic_big" }]));
    let d = t
        .data(
            "mutation { deleteSegment(name: \"fr_basic_big\") }",
            json!({}),
        )
        .await;
    assert_eq!(d["deleteSegment"], true);
}

#[tokio::test]
async fn segment_errors_say_where() {
    let t = seeded().await;
    let e = t
        .error(
            "mutation { saveSegment(name: \"x\", definition: \"country = \\\"FR\\\" and (agg.avg_basket > \") { name } }",
            json!({}),
        )
        .await;
    insta::assert_snapshot!(e, @r#"syntax error at line 1, column 38: expected a value after ">", found end of input; a value is a quoted string, a number, true or false"#);
    let e = t
        .error(
            r#"{ contacts(filter: "colour = \"red\"") { totalCount } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(e, @r#"syntax error at line 1, column 1: unknown profile field "colour", expected one of: email, phone, first_name, last_name, company, country, city, locale, created_at, updated_at, data.<key> or agg.<name>"#);
}

#[tokio::test]
async fn shortcuts_save_and_render() {
    let t = seeded().await;
    let e = t
        .error(
            r#"mutation { saveShortcut(name: "hi", template: "Hello {{ name.first }, {{ email }}") { name } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(e, @"invalid template at line 1, column 21: expected }} to close the placeholder opened at line 1, column 7, found '}'");
    t.data(
        r#"mutation { saveShortcut(name: "hi", template: "Hello {{ name.first }} ({{ country }}): plan {{ data.price_plan | \"free\" }}, {{ data.nothing | \"n/a\" }}, avg {{ agg.avg_basket }}") { name } }"#,
        json!({}),
    )
    .await;
    let id = t.id_of(6).await;
    let d = t
        .data(
            "query($id: ID!) { byName: renderShortcut(name: \"hi\", contactId: $id) inline: renderShortcut(template: \"{{ email }} {{ session.kind | \\\"-\\\" }}\", contactId: $id) shortcuts { name template } }",
            json!({ "id": id.to_string() }),
        )
        .await;
    assert_eq!(d["byName"], "Hello User6 (FR): plan basic, n/a, avg 60");
    assert_eq!(d["inline"], "user6@example.com -");
    assert_eq!(d["shortcuts"][0]["name"], "hi");
    let e = t
        .error(
            "query($id: ID!) { renderShortcut(name: \"nope\", contactId: $id) }",
            json!({ "id": id.to_string() }),
        )
        .await;
    assert_eq!(e, "no shortcut named \"nope\"");
}

#[tokio::test]
async fn merges_and_origins_are_explained() {
    let t = seeded().await;
    let id = t.id_of(3).await;
    let d = t
        .data(
            "query($id: ID!) { contact(id: $id) { origins { field source stream recordId } merges { outcome } } merges { outcome } }",
            json!({ "id": id.to_string() }),
        )
        .await;
    let origins = d["contact"]["origins"].as_array().unwrap();
    let email = origins.iter().find(|o| o["field"] == "email").unwrap();
    assert_eq!(
        (
            email["source"].clone(),
            email["stream"].clone(),
            email["recordId"].clone()
        ),
        (json!("shop"), json!("customers"), json!("3"))
    );
    assert!(origins.iter().any(|o| o["field"] == "data.price_plan"));
    assert_eq!(d["contact"]["merges"], json!([]));
    assert_eq!(d["merges"], json!([]));
}
