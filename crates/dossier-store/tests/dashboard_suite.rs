//! Dashboards on both backends: ordered contacts and sessions, breakdowns, time series and
//! segment history, each checked against SQL computed directly on the sessions the store
//! holds (not on the aggregates it derived from them), with ties, NULLs, empty groups and
//! intervals, a time zone around a DST change, and another workspace's data present.

// The suites' shared harness; this suite needs its own connection too, so not its macro.
#[allow(unused_macros)]
#[macro_use]
mod common;

use common::*;
use dossier_core::model::{ContactLink, ContactRecord, SessionRecord};
use dossier_core::{DataValue, Filter, FilterField, Identity, MappedRecord, ProfileField};
use dossier_store::{
    Interval, Metric, MetricOp, OrderBy, Range, SessionField, SessionQuery, SqlStore, StatsQuery,
    StatsSort, StoreError,
};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};

const OTHER: &str = "other";

/// A store and a connection of the test's own to the same database, for reference SQL.
struct Db {
    store: SqlStore,
    sql: AnyConnection,
    sqlite: bool,
    _keep: (Option<tempfile::TempDir>, Option<TestDb>),
}

async fn on_sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = SqlStore::open(&url).await.unwrap();
    Db {
        store,
        sql: AnyConnection::connect(&url).await.unwrap(),
        sqlite: true,
        _keep: (Some(dir), None),
    }
}

async fn on_postgres() -> Db {
    let db = postgres().await;
    let url = db.postgres_url().unwrap();
    Db {
        store: db.store.clone(),
        sql: AnyConnection::connect(&url).await.unwrap(),
        sqlite: false,
        _keep: (None, Some(db)),
    }
}

macro_rules! dashboard_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::on_sqlite().await).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::on_postgres().await).await } )*
        }
    };
}

impl Db {
    /// An order's total in cents, from the session's own data.
    fn cents(&self) -> &'static str {
        if self.sqlite {
            "CAST(ROUND(json_extract(s.data, '$.total.n') * 100) AS INTEGER)"
        } else {
            "CAST(ROUND(CAST(CAST(s.data AS json) -> 'total' ->> 'n' AS NUMERIC) * 100) AS BIGINT)"
        }
    }

    /// Rows of `sql` as text columns joined by `|` (NULL as `-`).
    async fn rows(&mut self, sql: &str) -> Vec<String> {
        let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut self.sql)
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<Option<String>, _>(i)
                            .map(|v| v.unwrap_or_else(|| "-".into()))
                            .or_else(|_| {
                                r.try_get::<Option<i64>, _>(i)
                                    .map(|v| v.map_or("-".into(), |v| v.to_string()))
                            })
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }
}

fn person(id: u32, country: Option<&str>, plan: Option<&str>) -> MappedRecord {
    let email = format!("p{id}@example.com");
    let mut profile = vec![(ProfileField::Email, email.clone())];
    if let Some(c) = country {
        profile.push((ProfileField::Country, c.into()));
    }
    MappedRecord::Contact(ContactRecord {
        external: Identity::external("shop", "customers", &id.to_string()),
        identities: vec![Identity::email(&email).unwrap()],
        profile,
        data: plan
            .map(|p| vec![(key("price_plan"), DataValue::String(p.into()))])
            .unwrap_or_default(),
        updated_at: Some(1_000 + i64::from(id)),
        created_at: Some(1_000 + i64::from(id)),
    })
}

fn session(
    id: u32,
    kind: &str,
    customer: u32,
    at: i64,
    data: Vec<(&str, DataValue)>,
) -> MappedRecord {
    MappedRecord::Session(SessionRecord {
        external_id: format!("{kind}{id}"),
        kind: kind.into(),
        contact: Some(ContactLink::Identity(Identity::external(
            "shop",
            "customers",
            &customer.to_string(),
        ))),
        started_at: Some(at),
        ended_at: None,
        data: data.into_iter().map(|(k, v)| (key(k), v)).collect(),
    })
}

/// 2024-03-30T12:00:00Z, the day before Europe/Paris moves to summer time (01:00 UTC on 31).
const T0: i64 = 1_711_800_000_000_000;
const HOUR: i64 = 3_600_000_000;

/// Nine customers (two without a country, three without a plan, two tied on total spent,
/// three without orders) and their orders and tickets, in `ws`; `other` gets more of each.
async fn fill(s: &SqlStore, ws: &str) {
    s.ensure_workspace(ws).await.unwrap();
    s.set_rules(ws, &rules()).await.unwrap();
    let people = vec![
        person(1, Some("FR"), Some("basic")),
        person(2, Some("FR"), Some("pro")),
        person(3, Some("DE"), Some("basic")),
        person(4, Some("DE"), None),
        person(5, None, Some("pro")),
        person(6, None, None),
        person(7, Some("FR"), Some("basic")),
        person(8, Some("US"), None),
        person(9, Some("FR"), Some("pro")),
    ];
    // Around the DST change: 23:30 UTC on the 30th is 00:30 on the 31st in Paris (CET), and
    // 22:30 UTC on the 31st is 00:30 on April 1st (CEST).
    let orders = [
        (1, 1, 5.66, T0),
        (2, 1, 5.66, T0 + 11 * HOUR + 30 * HOUR / 60),
        (3, 1, 5.66, T0 + 34 * HOUR + 30 * HOUR / 60),
        (4, 2, 16.98, T0 + 2 * HOUR),
        (5, 3, 10.10, T0 + 84 * HOUR),
        (6, 3, 0.01, T0 + 200 * HOUR),
        (7, 5, 99.99, T0 - 30 * HOUR),
        (8, 9, 7.5, T0 + 35 * HOUR),
    ];
    let mut records = people;
    for (id, c, total, at) in orders {
        records.push(session(
            id,
            "order",
            c,
            at,
            vec![
                ("total", DataValue::Number(total)),
                (
                    "channel",
                    DataValue::String(if id % 2 == 0 { "web" } else { "shop" }.into()),
                ),
            ],
        ));
    }
    records.push(session(
        1,
        "ticket",
        1,
        T0 + HOUR,
        vec![("csat", DataValue::Number(4.0))],
    ));
    records.push(session(2, "ticket", 2, T0 + 3 * HOUR, vec![]));
    if ws == OTHER {
        records.push(person(10, Some("FR"), Some("basic")));
        for i in 0..5 {
            records.push(session(
                100 + i,
                "order",
                10,
                T0 + i64::from(i) * HOUR,
                vec![("total", DataValue::Number(1000.0))],
            ));
        }
    }
    s.apply_batch(ws, &batch("all", records, 1)).await.unwrap();
}

async fn filled(db: &Db) {
    fill(&db.store, OTHER).await;
    fill(&db.store, WS).await;
}

fn field(path: &str) -> FilterField {
    FilterField::parse(path).unwrap()
}

fn by(path: &str, descending: bool) -> OrderBy<FilterField> {
    OrderBy {
        field: field(path),
        descending,
    }
}

/// Every contact of an ordering, read `page` at a time through the cursors.
async fn all_pages(
    s: &SqlStore,
    filter: Option<&Filter>,
    order: &[OrderBy<FilterField>],
    page: usize,
) -> Vec<String> {
    let mut out = vec![];
    let mut after = None;
    loop {
        let p = s
            .contacts_ordered(WS, filter, order, page, after.as_ref())
            .await
            .unwrap();
        out.extend(p.items.iter().map(|c| c.row.email.clone().unwrap()));
        if !p.has_next {
            return out;
        }
        after = Some(p.items.last().unwrap().position.clone());
    }
}

/// The reference: contacts of the workspace with what their orders sum to, from sessions.
fn spent_sql(db: &Db) -> String {
    format!(
        "SELECT c.id, c.email, c.country, SUM({cents}) AS spent, COUNT(s.id) AS n FROM contacts c \
         LEFT JOIN sessions s ON s.contact_id = c.id AND s.kind = 'order' AND s.deleted = 0 \
         WHERE c.workspace = 'default' AND c.merged_into IS NULL GROUP BY c.id, c.email, c.country",
        cents = db.cents()
    )
}

async fn ordered_contacts_page_through_ties_and_nulls(mut db: Db) {
    filled(&db).await;
    // Top spenders: ties (p1 and p2 spent 16.98 each) by id, no orders reading 0.
    let want = db
        .rows(&format!(
            "SELECT t.email FROM ({}) t ORDER BY COALESCE(t.spent, 0) DESC, t.id",
            spent_sql(&db)
        ))
        .await;
    assert_eq!(
        want[..3],
        ["p5@example.com", "p1@example.com", "p2@example.com"]
    );
    let order = [by("agg.total_spent", true)];
    for page in [1, 2, 4, 20] {
        assert_eq!(
            all_pages(&db.store, None, &order, page).await,
            want,
            "page size {page}"
        );
    }
    // Averages of nothing are absent: last, whichever the direction.
    for desc in [false, true] {
        let dir = if desc { "DESC" } else { "ASC" };
        let want = db
            .rows(&format!(
                "SELECT t.email FROM ({}) t ORDER BY CASE WHEN t.n = 0 THEN 1 ELSE 0 END, \
                 CAST(t.spent AS DOUBLE PRECISION) / CASE WHEN t.n = 0 THEN 1 ELSE t.n END {dir}, t.id",
                spent_sql(&db)
            ))
            .await;
        let got = all_pages(&db.store, None, &[by("agg.avg_basket", desc)], 3).await;
        assert_eq!(got, want, "avg_basket {dir}");
    }
    // Two keys with NULLs in both, and a filter.
    let want = db
        .rows(
            "SELECT c.email FROM contacts c LEFT JOIN contact_data d ON d.contact_id = c.id AND d.key = 'price_plan' \
             WHERE c.workspace = 'default' AND c.merged_into IS NULL AND c.email <> 'p9@example.com' \
             ORDER BY CASE WHEN c.country IS NULL THEN 1 ELSE 0 END, c.country, \
             CASE WHEN d.txt IS NULL THEN 1 ELSE 0 END, d.txt DESC, c.id",
        )
        .await;
    let filter = dossier_core::parse_filter(r#"email != "p9@example.com""#).unwrap();
    let order = [by("country", false), by("data.price_plan", true)];
    assert_eq!(all_pages(&db.store, Some(&filter), &order, 2).await, want);
    assert_eq!(want.len(), 8);
    // A cursor of one ordering does not page another.
    let p = db
        .store
        .contacts_ordered(WS, None, &order, 1, None)
        .await
        .unwrap();
    let err = db
        .store
        .contacts_ordered(
            WS,
            None,
            &[by("created_at", false)],
            1,
            Some(&p.items[0].position),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
}

async fn root_sessions_filter_and_order_by_data(mut db: Db) {
    filled(&db).await;
    let want = db
        .rows(&format!(
            "SELECT s.external_id FROM sessions s WHERE s.workspace = 'default' AND s.kind = 'order' \
             AND s.deleted = 0 AND {cents} > 600 ORDER BY {cents} DESC, s.id",
            cents = db.cents()
        ))
        .await;
    let filter = dossier_core::parse_filter("data.total > 6").unwrap();
    let order = [OrderBy {
        field: SessionField::parse("data.total").unwrap(),
        descending: true,
    }];
    let q = SessionQuery {
        kind: Some("order"),
        filter: Some(&filter),
        order: &order,
        ..SessionQuery::default()
    };
    let mut got = vec![];
    let mut after = None;
    loop {
        let p = db
            .store
            .sessions_ordered(WS, &q, 2, after.as_ref())
            .await
            .unwrap();
        got.extend(p.items.iter().map(|s| s.row.external_id.clone()));
        if !p.has_next {
            break;
        }
        after = Some(p.items.last().unwrap().position.clone());
    }
    assert_eq!(got, want);
    assert_eq!(got.len(), 4);
    // No order: newest first, every kind; a filter on a contact field is refused.
    let all = db
        .store
        .sessions_ordered(WS, &SessionQuery::default(), 50, None)
        .await
        .unwrap();
    let want = db
        .rows("SELECT external_id FROM sessions WHERE workspace = 'default' AND deleted = 0 ORDER BY started_at DESC, id")
        .await;
    let got: Vec<String> = all
        .items
        .iter()
        .map(|s| s.row.external_id.clone())
        .collect();
    assert_eq!(got, want);
    let country = dossier_core::parse_filter(r#"country = "FR""#).unwrap();
    let q = SessionQuery {
        filter: Some(&country),
        ..SessionQuery::default()
    };
    let err = db
        .store
        .sessions_ordered(WS, &q, 5, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not country"), "{err}");
}

/// A breakdown as `key|key|count|metric...`, decimals as the store prints them.
fn lines(stats: &dossier_store::Stats) -> Vec<String> {
    stats
        .buckets
        .iter()
        .map(|b| {
            b.keys
                .iter()
                .map(|k| {
                    k.as_ref().map_or("-".into(), |k| {
                        k.as_text()
                            .map_or_else(|| k.to_json().to_string(), str::to_string)
                    })
                })
                .chain([b.count.to_string()])
                .chain(
                    b.metrics
                        .iter()
                        .map(|m| m.map_or("-".into(), |m| m.to_string())),
                )
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Cents as the store's decimals print them (`1698` is `16.98`, `1000` is `10`).
fn decimal(cents: i64) -> String {
    dossier_store::Decimal(i128::from(cents) * 10_000_000).to_string()
}

async fn breakdowns_match_sql_with_null_keys_and_totals(mut db: Db) {
    filled(&db).await;
    let metrics = [
        Metric {
            op: MetricOp::Count,
            field: None,
        },
        Metric {
            op: MetricOp::Sum,
            field: Some(field("agg.total_spent")),
        },
        Metric {
            op: MetricOp::Avg,
            field: Some(field("agg.avg_basket")),
        },
        Metric {
            op: MetricOp::Max,
            field: Some(field("agg.biggest")),
        },
    ];
    let group_by = [field("country"), field("data.price_plan")];
    let q = StatsQuery {
        group_by: &group_by,
        metrics: &metrics,
        sort: StatsSort::Key(0),
        descending: false,
        first: 100,
    };
    let stats = db.store.contact_stats(WS, None, &q).await.unwrap();
    // The reference, from sessions: per contact its spent cents and orders, then per group.
    let reference = db
        .rows(&format!(
            "SELECT t.country, d.txt, COUNT(*), CAST(SUM(COALESCE(t.spent, 0)) AS TEXT), \
             CAST(SUM(t.spent) AS TEXT), CAST(SUM(t.n) AS TEXT) FROM ({}) t \
             LEFT JOIN contact_data d ON d.contact_id = t.id AND d.key = 'price_plan' \
             GROUP BY t.country, d.txt ORDER BY CASE WHEN t.country IS NULL THEN 1 ELSE 0 END, t.country, \
             CASE WHEN d.txt IS NULL THEN 1 ELSE 0 END, d.txt",
            spent_sql(&db)
        ))
        .await;
    let got = lines(&stats);
    assert_eq!(got.len(), reference.len(), "{got:?} vs {reference:?}");
    for (g, r) in got.iter().zip(&reference) {
        let r: Vec<&str> = r.split('|').collect();
        let g: Vec<&str> = g.split('|').collect();
        assert_eq!(g[..3], r[..3], "keys and count: {g:?} vs {r:?}");
        assert_eq!(g[3], r[2], "count metric");
        assert_eq!(
            g[4],
            decimal(r[3].parse().unwrap()),
            "exact sum: {g:?} vs {r:?}"
        );
    }
    // Exact decimals: p1's three orders of 5.66 average 5.66, not 5.659999…; FR/basic
    // holds p1 (5.66) and p7 (no orders: no average).
    let fr_basic = got.iter().find(|l| l.starts_with("FR|basic|")).unwrap();
    assert_eq!(fr_basic, "FR|basic|2|2|16.98|5.66|5.66");
    // Empty groups have no rows: a group without country or plan is one key of its own.
    assert!(got.contains(&"-|-|1|1|0|-|-".to_string()), "{got:?}");
    // Totals count every contact of the workspace, never the other workspace's.
    let totals = &stats.totals;
    assert_eq!(totals.count, 9);
    assert_eq!(totals.metrics[1].unwrap().to_string(), "151.56");
    // The first two by sum: the rest is left out, the totals are not.
    let q = StatsQuery {
        sort: StatsSort::Metric(1),
        descending: true,
        first: 2,
        ..q
    };
    let top = db.store.contact_stats(WS, None, &q).await.unwrap();
    assert!(top.more);
    assert_eq!(lines(&top)[0], "-|pro|1|1|99.99|99.99|99.99");
    assert_eq!(top.totals, stats.totals);
}

/// The start of each Paris day from March 29 to April 2, 2024, in UTC microseconds, as a
/// calendar says: midnight is 23:00 UTC the day before in winter time, 22:00 in summer time.
const PARIS_DAYS: [i64; 6] = [
    T0 - 37 * HOUR, // Mar 29 00:00 CET = Mar 28 23:00Z
    T0 - 13 * HOUR, // Mar 30
    T0 + 11 * HOUR, // Mar 31 (23 hours long)
    T0 + 34 * HOUR, // Apr 1 00:00 CEST = Mar 31 22:00Z
    T0 + 58 * HOUR, // Apr 2
    T0 + 82 * HOUR, // Apr 3
];

async fn daily_series_in_a_time_zone_around_dst(mut db: Db) {
    filled(&db).await;
    let range = Range {
        interval: Interval::Day,
        timezone: "Europe/Paris",
        from: PARIS_DAYS[0] + 5,
        to: PARIS_DAYS[5] - 1,
        max_intervals: 100,
    };
    let metrics = [
        Metric {
            op: MetricOp::Sum,
            field: Some(SessionField::parse("data.total").unwrap()),
        },
        Metric {
            op: MetricOp::Avg,
            field: Some(SessionField::parse("data.total").unwrap()),
        },
    ];
    let series = db
        .store
        .session_stats(WS, Some("order"), None, &[], &metrics, &range, 1000)
        .await
        .unwrap();
    let starts: Vec<i64> = series.points.iter().map(|p| p.start).collect();
    assert_eq!(starts, PARIS_DAYS[..5]);
    assert_eq!(series.points[2].end - series.points[2].start, 23 * HOUR);
    for (i, p) in series.points.iter().enumerate() {
        let want = db
            .rows(&format!(
                "SELECT COUNT(*), CAST(SUM({cents}) AS TEXT) FROM sessions s WHERE s.workspace = 'default' \
                 AND s.kind = 'order' AND s.deleted = 0 AND s.started_at >= {} AND s.started_at < {}",
                PARIS_DAYS[i],
                PARIS_DAYS[i + 1],
                cents = db.cents()
            ))
            .await;
        let (count, cents) = want[0].split_once('|').unwrap();
        assert_eq!(p.totals.count.to_string(), count, "day {i}");
        let sum = (cents != "-").then(|| decimal(cents.parse().unwrap()));
        assert_eq!(p.totals.metrics[0].map(|d| d.to_string()), sum, "day {i}");
    }
    // March 30 in Paris holds a 5.66 and a 16.98 order (in UTC, a second 5.66 at 23:30 is
    // the 30th too); April 2 is empty and still there.
    assert_eq!(series.points[1].totals.count, 2);
    assert_eq!(
        series.points[1].totals.metrics[1].unwrap().to_string(),
        "11.32"
    );
    assert_eq!(series.points[4].totals.count, 0);
    assert_eq!(series.points[4].totals.metrics[0], None);
    // Grouped by channel within each day; weeks and months line up on Monday and the 1st.
    let channel = [SessionField::parse("data.channel").unwrap()];
    let grouped = db
        .store
        .session_stats(WS, Some("order"), None, &channel, &metrics, &range, 1000)
        .await
        .unwrap();
    for (g, p) in grouped.points.iter().zip(&series.points) {
        assert_eq!(g.totals, p.totals);
        assert_eq!(
            g.groups.iter().map(|b| b.count).sum::<i64>(),
            p.totals.count
        );
    }
    let weeks = db
        .store
        .session_stats(
            WS,
            None,
            None,
            &[],
            &[],
            &Range {
                interval: Interval::Week,
                ..range.clone()
            },
            1000,
        )
        .await
        .unwrap();
    assert_eq!(weeks.points[0].start, PARIS_DAYS[0] - 4 * 24 * HOUR); // Monday March 25
    assert_eq!(weeks.totals.count, 10);
    let months = db
        .store
        .session_stats(
            WS,
            None,
            None,
            &[],
            &[],
            &Range {
                interval: Interval::Month,
                timezone: "UTC",
                ..range.clone()
            },
            1000,
        )
        .await
        .unwrap();
    assert_eq!(months.points.len(), 2);
    assert_eq!(
        months.points[0].totals.count + months.points[1].totals.count,
        10
    );
    let bad = Range {
        timezone: "Mars/Olympus",
        ..range.clone()
    };
    assert!(
        db.store
            .session_stats(WS, None, None, &[], &[], &bad, 10)
            .await
            .is_err()
    );
    let long = Range {
        max_intervals: 3,
        ..range
    };
    assert!(
        db.store
            .session_stats(WS, None, None, &[], &[], &long, 10)
            .await
            .is_err()
    );
}

async fn segment_history_counts_entries_and_exits_per_day(mut db: Db) {
    filled(&db).await;
    db.store
        .save_segment(OTHER, "fr", r#"country = "FR""#, None)
        .await
        .unwrap();
    db.store
        .save_segment(WS, "fr", r#"country = "FR""#, None)
        .await
        .unwrap();
    // p2 moves to Germany: she leaves.
    db.store
        .apply_batch(
            WS,
            &batch("all", vec![person(2, Some("DE"), Some("pro"))], 2),
        )
        .await
        .unwrap();
    db.store.refresh_segment(WS, "fr").await.unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let range = Range {
        interval: Interval::Day,
        timezone: "UTC",
        from: now - 2 * 24 * HOUR,
        to: now,
        max_intervals: 10,
    };
    let days = db.store.segment_history(WS, "fr", &range).await.unwrap();
    assert_eq!(days.len(), 3);
    let want = db
        .rows(
            "SELECT change, CAST(COUNT(*) AS TEXT) FROM segment_changes WHERE workspace = 'default' \
             AND segment = 'fr' GROUP BY change ORDER BY change",
        )
        .await;
    assert_eq!(want, ["entered|4", "left|1"]);
    let (entered, left): (i64, i64) = (
        days.iter().map(|d| d.entered).sum(),
        days.iter().map(|d| d.left).sum(),
    );
    assert_eq!((entered, left), (4, 1));
    assert_eq!((days[0].entered, days[1].entered), (0, 0));
}

/// Root sessions of one source started within [from, to), as SQL selects them; another
/// workspace's sessions in the same hours are never listed.
async fn root_sessions_of_a_source_within_a_time_range(mut db: Db) {
    filled(&db).await;
    let (from, to) = (T0, T0 + 84 * HOUR);
    let want = db
        .rows(&format!(
            "SELECT external_id FROM sessions WHERE workspace = 'default' AND deleted = 0 \
             AND source = 'shop' AND started_at >= {from} AND started_at < {to} \
             ORDER BY started_at DESC, id"
        ))
        .await;
    let q = SessionQuery {
        source: Some("shop"),
        from: Some(from),
        to: Some(to),
        ..SessionQuery::default()
    };
    let got: Vec<String> = db
        .store
        .sessions_ordered(WS, &q, 50, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.row.external_id)
        .collect();
    assert_eq!(got, want);
    // Orders 1-4 and 8 and both tickets: the range's bounds are [from, to).
    assert_eq!(got.len(), 7, "{got:?}");
    let none = SessionQuery {
        source: Some("crm"),
        ..SessionQuery::default()
    };
    let page = db
        .store
        .sessions_ordered(WS, &none, 50, None)
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

dashboard_suite!(
    root_sessions_of_a_source_within_a_time_range,
    ordered_contacts_page_through_ties_and_nulls,
    root_sessions_filter_and_order_by_data,
    breakdowns_match_sql_with_null_keys_and_totals,
    daily_series_in_a_time_zone_around_dst,
    segment_history_counts_entries_and_exits_per_day,
);
