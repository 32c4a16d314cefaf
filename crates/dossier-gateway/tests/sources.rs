//! Source health and control through GraphQL: pause, resume, cancel, failures in a row.

mod common;

use common::{WS, seeded};
use dossier_store::SourceRow;
use serde_json::json;

#[tokio::test]
async fn sources_show_health_and_can_be_paused_resumed_and_cancelled() {
    let t = seeded().await;
    t.store
        .upsert_source(
            WS,
            &SourceRow {
                name: "shop".into(),
                connector: "sqlite".into(),
                config: json!({}),
                streams: vec!["customers".into()],
                stream_configs: vec![],
                schedule: Some("15m".into()),
            },
        )
        .await
        .unwrap();
    // A run failed twice in a row: the source says so.
    let now = chrono::Utc::now().timestamp_micros();
    for error in ["first", "connection refused"] {
        let claim = t
            .store
            .claim_now(WS, "shop", "test", now, 30_000_000)
            .await
            .unwrap();
        assert!(claim.is_some());
        t.store
            .release_lease(WS, "shop", "test", None, Some(error), now)
            .await
            .unwrap();
    }
    const HEALTH: &str = "{ sources { name health { paused running consecutiveFailures lastError lastSuccessAt } } }";
    let d = t.data(HEALTH, json!({})).await;
    assert_eq!(
        d["sources"][0]["health"],
        json!({ "paused": false, "running": false, "consecutiveFailures": 2, "lastError": "connection refused", "lastSuccessAt": null })
    );
    let d = t
        .data(
            r#"mutation { pauseSource(name: "shop") { name health { paused } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(d["pauseSource"]["health"]["paused"], true);
    let d = t
        .data(r#"mutation { cancelSync(source: "shop") }"#, json!({}))
        .await;
    assert_eq!(d["cancelSync"], false, "nothing runs");
    let d = t
        .data(
            r#"mutation { resumeSource(name: "shop") { health { paused } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(d["resumeSource"]["health"]["paused"], false);
    let e = t
        .error(
            r#"mutation { pauseSource(name: "nope") { name } }"#,
            json!({}),
        )
        .await;
    assert_eq!(e, "unknown source \"nope\"; sources: shop");
}
