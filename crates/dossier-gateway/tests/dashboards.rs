//! Dashboards over GraphQL on the seeded store: ordered contacts paged by cursor, breakdowns,
//! time series, segment history, and the limits that bound them. (The store's suite checks
//! each against SQL on both backends; here the arguments, the shapes and the bounds.)

mod common;

use common::{CUSTOMERS, seeded, seeded_with};
use dossier_gateway::GatewayConfig;
use serde_json::{Value, json};

/// What customer `i` spent: one order of `i * 10`, and three of 5 for customer 1.
fn spent(i: u32) -> u32 {
    i * 10 + if i == 1 { 15 } else { 0 }
}

const ORDERED: &str = r#"
query($order: [OrderInput!], $after: String) {
  contacts(orderBy: $order, first: 7, after: $after) {
    edges { cursor node { email aggregates } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

#[tokio::test]
async fn top_spenders_page_through_an_ordering() {
    let t = seeded().await;
    let order = json!([{ "field": "agg.total_spent", "direction": "DESC" }]);
    let mut got = vec![];
    let mut after = Value::Null;
    loop {
        let d = t
            .data(ORDERED, json!({ "order": order, "after": after }))
            .await;
        let page = &d["contacts"];
        for e in page["edges"].as_array().unwrap() {
            got.push(e["node"]["email"].as_str().unwrap().to_string());
        }
        if page["pageInfo"]["hasNextPage"] == json!(false) {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let mut want: Vec<u32> = (1..=CUSTOMERS).collect();
    want.sort_by_key(|&i| (std::cmp::Reverse(spent(i)), i));
    let want: Vec<String> = want
        .iter()
        .map(|i| format!("user{i}@example.com"))
        .collect();
    assert_eq!(got, want);
    // A cursor of this ordering pages no other.
    let d = t.data(ORDERED, json!({ "order": order })).await;
    let cursor = d["contacts"]["pageInfo"]["endCursor"].clone();
    let other = json!([{ "field": "country" }]);
    let err = t
        .error(ORDERED, json!({ "order": other, "after": cursor }))
        .await;
    assert_eq!(err, "the cursor belongs to another ordering");
    let err = t
        .error(ORDERED, json!({ "order": [{ "field": "agg.nope" }] }))
        .await;
    assert!(err.contains("nope"), "{err}");
}

#[tokio::test]
async fn a_breakdown_by_country_and_plan_with_exact_metrics() {
    let t = seeded().await;
    let d = t
        .data(
            r#"{ contactStats(groupBy: ["country", "data.price_plan"],
                              metrics: [{op: SUM, field: "agg.total_spent"}, {op: AVG, field: "agg.avg_basket"}, {op: COUNT}],
                              orderBy: {by: KEY, index: 0, direction: ASC}, first: 3) {
                   buckets { keys count metrics } hasMore totals { keys count metrics } } }"#,
            json!({}),
        )
        .await;
    let group = |fr: bool, basic: bool| -> Vec<u32> {
        (1..=CUSTOMERS)
            .filter(|i| (i % 3 == 0) == fr && (i % 2 == 0) == basic)
            .collect()
    };
    let bucket = |country: &str, plan: &str, ids: Vec<u32>| {
        let sum: u32 = ids.iter().map(|&i| spent(i)).sum();
        json!({ "keys": [country, plan], "count": ids.len(),
                "metrics": [sum.to_string(), null, ids.len().to_string()] })
    };
    let stats = &d["contactStats"];
    // DE/basic, DE/pro, FR/basic first (keys ascending); FR/pro left out.
    assert_eq!(stats["hasMore"], json!(true));
    let mut buckets = stats["buckets"].as_array().unwrap().clone();
    for b in &mut buckets {
        // Averages of averages: checked apart.
        b["metrics"][1] = Value::Null;
    }
    assert_eq!(
        buckets,
        vec![
            bucket("DE", "basic", group(false, true)),
            bucket("DE", "pro", group(false, false)),
            bucket("FR", "basic", group(true, true)),
        ]
    );
    // FR/basic: customers 6, 12, ..., 30 average 60, 120, ...: (60+...+300)/5 = 180.
    assert_eq!(stats["buckets"][2]["metrics"][1], "180");
    // Customer 1 averages 25/4 = 6.25, the others i * 10: 4646.25 / 30.
    let total: u32 = (1..=CUSTOMERS).map(spent).sum();
    assert_eq!(
        stats["totals"],
        json!({ "keys": [], "count": CUSTOMERS, "metrics": [total.to_string(), "154.875", CUSTOMERS.to_string()] })
    );
}

#[tokio::test]
async fn a_daily_series_includes_empty_days() {
    let t = seeded().await;
    let d = t
        .data(
            r#"{ sessionStats(kind: "order", interval: DAY, timezone: "Europe/Paris",
                              from: "1970-01-01T00:00:00Z", to: "1970-01-03T00:00:00Z",
                              metrics: [{op: SUM, field: "data.total"}, {op: AVG, field: "data.total"}, {op: MAX, field: "data.total"}]) {
                   points { start end totals { count metrics } } totals { count metrics } } }"#,
            json!({}),
        )
        .await;
    let s = &d["sessionStats"];
    // Paris was an hour ahead of UTC in 1970: its days start at 23:00 UTC.
    assert_eq!(
        s["points"],
        json!([
            { "start": "1969-12-31T23:00:00+00:00", "end": "1970-01-01T23:00:00+00:00",
              "totals": { "count": CUSTOMERS + 3, "metrics": ["4665", "141.363636364", "300"] } },
            { "start": "1970-01-01T23:00:00+00:00", "end": "1970-01-02T23:00:00+00:00",
              "totals": { "count": 0, "metrics": [null, null, null] } },
            { "start": "1970-01-02T23:00:00+00:00", "end": "1970-01-03T23:00:00+00:00",
              "totals": { "count": 0, "metrics": [null, null, null] } },
        ])
    );
    assert_eq!(s["totals"]["count"], json!(CUSTOMERS + 3));
    // Grouped by kind over every kind.
    let d = t
        .data(
            r#"{ sessionStats(groupBy: ["kind"], interval: MONTH, from: "1970-01-01T00:00:00Z", to: "1970-01-02T00:00:00Z") {
                   points { groups { keys count } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        d["sessionStats"]["points"][0]["groups"],
        json!([{ "keys": ["order"], "count": CUSTOMERS + 3 }, { "keys": ["visit"], "count": 2 }])
    );
}

#[tokio::test]
async fn a_segment_history_counts_entries_per_day() {
    let t = seeded().await;
    t.data(
        r#"mutation { saveSegment(name: "fr", definition: "country = \"FR\"") { name } }"#,
        json!({}),
    )
    .await;
    let now = chrono::Utc::now();
    let d = t
        .data(
            r#"query($from: DateTime!, $to: DateTime!) { segment(name: "fr") { count history(from: $from, to: $to) { entered left } } }"#,
            json!({ "from": (now - chrono::Duration::days(1)).to_rfc3339(), "to": now.to_rfc3339() }),
        )
        .await;
    let seg = &d["segment"];
    let days = seg["history"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    let entered: i64 = days.iter().map(|d| d["entered"].as_i64().unwrap()).sum();
    assert_eq!(json!(entered), seg["count"]);
    assert_eq!(days[0], json!({ "entered": 0, "left": 0 }));
}

#[tokio::test]
async fn dashboards_are_bounded() {
    let t = seeded_with(
        GatewayConfig {
            max_buckets: 50,
            ..GatewayConfig::open(common::WS)
        },
        |_| None,
    )
    .await;
    let err = t
        .error(
            "{ contactStats(groupBy: [\"country\"], first: 51) { hasMore } }",
            json!({}),
        )
        .await;
    assert_eq!(err, "first must be between 1 and 50 (got 51)");
    let err = t
        .error(
            r#"{ sessionStats(interval: DAY, from: "1970-01-01T00:00:00Z", to: "1970-03-01T00:00:00Z") { totals { count } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        err,
        "the range holds more than 50 intervals; at most 50 are allowed"
    );
    // Each breakdown costs a scan and its buckets: 500 + 50 * 6 each, seven of them are
    // over the complexity limit of 5000.
    let many: String = (0..7)
        .map(|i| format!("s{i}: contactStats(first: 50) {{ buckets {{ keys count metrics }} totals {{ count }} }} "))
        .collect();
    let err = t.error(&format!("{{ {many} }}"), json!({})).await;
    assert!(err.contains("complex"), "{err}");
    // Hostile arguments are refused before any work, within a second: ten thousand years of
    // days, more group keys and metrics than allowed, a time zone that is not one.
    let start = std::time::Instant::now();
    let err = t
        .error(
            r#"{ sessionStats(interval: DAY, from: "0001-01-01T00:00:00Z", to: "9999-12-31T00:00:00Z") { totals { count } } }"#,
            json!({}),
        )
        .await;
    // Its cost (one bucket a day) is over the complexity limit: refused before it runs.
    assert!(err.contains("complex"), "{err}");
    let keys = r#"["country", "country", "country", "country", "country"]"#;
    let err = t
        .error(
            &format!("{{ contactStats(groupBy: {keys}) {{ hasMore }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(err, "groupBy keys: 5 asked; at most 4 are allowed");
    let metrics: String = (0..11)
        .map(|_| r#"{ op: SUM, field: "agg.total_spent" }, "#)
        .collect();
    let err = t
        .error(
            &format!("{{ contactStats(metrics: [{metrics}]) {{ hasMore }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(err, "metrics: 11 asked; at most 10 are allowed");
    let zone = "Z".repeat(10_000);
    let err = t
        .error(
            &format!(
                r#"{{ sessionStats(interval: DAY, timezone: "{zone}", from: "2024-01-01T00:00:00Z", to: "2024-01-02T00:00:00Z") {{ totals {{ count }} }} }}"#
            ),
            json!({}),
        )
        .await;
    assert!(
        err.contains("unknown time zone"),
        "{}",
        &err[..err.len().min(200)]
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let err = t
        .error(
            r#"{ sessions(filter: "country = \"FR\"") { edges { cursor } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        err,
        "a session filter looks at the session's data (`data.<key>`) only, not country"
    );
}

/// Root sessions narrowed by source and start time, as the arguments say.
#[tokio::test]
async fn root_sessions_by_source_and_time() {
    let t = seeded().await;
    let count = |args: &'static str| {
        let t = &t;
        async move {
            let d = t
                .data(
                    &format!("{{ sessions({args} first: 100) {{ edges {{ node {{ id }} }} }} }}"),
                    json!({}),
                )
                .await;
            d["sessions"]["edges"].as_array().unwrap().len()
        }
    };
    let all = count("").await;
    assert!(all > 0);
    assert_eq!(count(r#"source: "shop","#).await, all);
    assert_eq!(count(r#"source: "crm","#).await, 0);
    assert_eq!(
        count(r#"from: "1970-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z","#).await,
        all
    );
    assert_eq!(count(r#"from: "2100-01-01T00:00:00Z","#).await, 0);
    assert_eq!(count(r#"to: "1970-01-01T00:00:00Z","#).await, 0);
}
