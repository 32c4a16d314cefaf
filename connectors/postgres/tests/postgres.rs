//! The PostgreSQL connector against a real server: Pagila and purpose-made tables, each test
//! in a database of its own.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{TestDb, admin, admin_url, cents, ints, stored, values, with_database};
use dossier_connector::keyset::KeysetState;
use dossier_connector::{
    Batch, Connector, ConnectorError, ErrorOrigin, ReadRequest, Registry, StreamConfig,
    StreamState, Value, read_all,
};
use dossier_connector_postgres::{Config, PostgresConnector, Stream};
use futures::StreamExt as _;
use serde_json::json;

async fn connect(db: &TestDb) -> Arc<PostgresConnector> {
    Arc::new(
        PostgresConnector::connect(Config::url(&db.url))
            .await
            .unwrap(),
    )
}

async fn read(
    c: &Arc<PostgresConnector>,
    stream: Stream,
    state: Option<StreamState>,
    batch_size: usize,
) -> Result<Vec<Batch>, ConnectorError> {
    read_all(
        c,
        ReadRequest {
            name: "s".into(),
            stream,
            state,
            batch_size,
        },
    )
    .await
}

fn config_error(e: ConnectorError) -> String {
    assert_eq!(e.origin(), ErrorOrigin::Config, "{e}");
    e.to_string()
}

fn rows(batches: &[Batch]) -> usize {
    batches.iter().map(|b| b.rows.len()).sum()
}

#[tokio::test]
async fn discovers_pagila() {
    let db = TestDb::pagila().await;
    let c = connect(&db).await;
    let catalog = c.discover().await.unwrap();
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "customer",
        "payment",
        "rental",
        "film_actor",
        "customer_list",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // The partitioned parent is listed; its partitions are not.
    assert!(
        !names.iter().any(|n| n.starts_with("payment_p")),
        "{names:?}"
    );
    let get = |n: &str| catalog.streams.iter().find(|s| s.name == n).unwrap();

    let customer = get("customer");
    assert_eq!(customer.primary_key, ["customer_id"]);
    // A serial key grows with inserts; last_update is the update timestamp.
    assert_eq!(customer.cursor_candidates, ["customer_id", "last_update"]);
    let types: Vec<(&str, &str)> = customer
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.source_type.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("customer_id", "integer not null"),
            ("store_id", "integer not null"),
            ("first_name", "text not null"),
            ("last_name", "text not null"),
            ("email", "text"),
            ("address_id", "integer not null"),
            ("activebool", "boolean not null"),
            ("create_date", "date not null"),
            ("last_update", "timestamp with time zone"),
            ("active", "integer"),
        ]
    );
    assert!(customer.fields.iter().all(|f| f.unsupported.is_none()));

    let payment = get("payment");
    assert_eq!(payment.primary_key, ["payment_date", "payment_id"]);
    assert_eq!(get("film_actor").primary_key, ["actor_id", "film_id"]);
    assert!(get("customer_list").primary_key.is_empty());

    // Unsupported types are listed, with the reason; enums, arrays and domains are read.
    let film = get("film");
    let field = |s: &dossier_connector::StreamInfo, n: &str| {
        s.fields.iter().find(|f| f.name == n).unwrap().clone()
    };
    let fulltext = field(film, "fulltext");
    assert_eq!(fulltext.source_type, "tsvector not null");
    assert!(fulltext.unsupported.unwrap().contains("full-text"));
    assert!(field(film, "rating").unsupported.is_none());
    assert!(field(film, "special_features").unsupported.is_none());
    assert_eq!(field(film, "release_year").source_type, "year");
    assert!(field(film, "release_year").unsupported.is_none());
    let picture = field(get("staff"), "picture");
    assert_eq!(picture.source_type, "bytea");
    assert!(picture.unsupported.unwrap().contains("binary data"));
}

#[tokio::test]
async fn reads_customers_payments_and_rentals_whole() {
    let db = TestDb::pagila().await;
    let c = connect(&db).await;
    for (table, cursor, id) in [
        ("customer", "last_update", "customer_id"),
        ("payment", "payment_date", "payment_id"),
        ("rental", "last_update", "rental_id"),
    ] {
        let stream = Stream::table(table).with_cursor(cursor);
        let batches = read(&c, stream.clone(), None, 1000).await.unwrap();
        let ids = ints(&batches, id);
        assert_eq!(ids.len() as i64, db.count(table).await, "{table}");
        assert_eq!(
            ids.iter().collect::<BTreeSet<_>>().len(),
            ids.len(),
            "{table}: duplicates"
        );
        assert!(batches.iter().all(|b| b.rows.len() <= 1000));
        // Nothing changed: the next read is empty and yields no batch.
        let last = stored(batches.last().unwrap());
        assert!(read(&c, stream, Some(last), 1000).await.unwrap().is_empty());
    }

    // Amounts stay exact: summed as decimals they match the server's sum to the cent.
    let batches = read(&c, Stream::table("payment"), None, 5000)
        .await
        .unwrap();
    let sum: String = db.scalar("SELECT sum(amount)::text FROM payment").await;
    assert_eq!(sum, "67416.51");
    assert_eq!(cents(&values(&batches, "amount")), 6_741_651);
    assert!(
        batches
            .iter()
            .all(|b| b.state == StreamState::full_refresh())
    );

    let first = &read(&c, Stream::table("customer"), None, 1).await.unwrap()[0];
    let get = |n: &str| first.rows[0][first.fields.iter().position(|f| f == n).unwrap()].clone();
    assert_eq!(
        get("email"),
        Value::Text("MARY.SMITH@sakilacustomer.org".into())
    );
    assert_eq!(get("activebool"), Value::Bool(true));
    assert_eq!(
        get("create_date"),
        Value::DateTime("2022-02-14T00:00:00Z".parse().unwrap())
    );
    assert_eq!(
        get("last_update"),
        Value::DateTime("2022-02-15T09:57:20Z".parse().unwrap())
    );
}

#[tokio::test]
async fn rows_sharing_a_cursor_value_across_batch_boundaries() {
    let db = TestDb::pagila().await;
    let distinct: i64 = db
        .scalar("SELECT count(DISTINCT last_update) FROM customer")
        .await;
    assert_eq!(distinct, 1, "every customer shares one last_update");
    let c = connect(&db).await;
    let stream = Stream::table("customer").with_cursor("last_update");
    let full = read(&c, stream.clone(), None, 100).await.unwrap();
    assert_eq!(
        full.iter().map(|b| b.rows.len()).collect::<Vec<_>>(),
        [100, 100, 100, 100, 100, 99]
    );
    assert_eq!(ints(&full, "customer_id"), (1..=599).collect::<Vec<_>>());
    assert_eq!(
        KeysetState::from_state(&full[0].state).unwrap(),
        KeysetState {
            cursor: Some(Value::DateTime("2022-02-15T09:57:20Z".parse().unwrap())),
            pk: vec![Value::Int(100)],
        }
    );
    // Resuming from any batch's checkpoint reads exactly the rest.
    for (i, batch) in full.iter().enumerate() {
        let rest = read(&c, stream.clone(), Some(stored(batch)), 100)
            .await
            .unwrap();
        let seen = (i as i64 + 1) * 100;
        assert_eq!(
            ints(&rest, "customer_id"),
            ((seen + 1).min(600)..=599).collect::<Vec<_>>()
        );
    }
    // The per-stream batch size wins over the source's.
    let small = read(&c, stream.with_batch_size(250), None, 100)
        .await
        .unwrap();
    assert_eq!(small.len(), 3);
}

#[tokio::test]
async fn rows_updated_during_a_read_are_read_later_and_none_is_lost() {
    let db = TestDb::pagila().await;
    let c = connect(&db).await;
    let stream = Stream::table("customer").with_cursor("last_update");
    let mut reading = c.clone().read(ReadRequest {
        name: "customer".into(),
        stream: stream.clone(),
        state: None,
        batch_size: 100,
    });
    let mut batches = vec![];
    for _ in 0..2 {
        batches.push(reading.next().await.unwrap().unwrap());
    }
    // One row already read, one not yet; pagila's trigger stamps last_update = now().
    db.exec("UPDATE customer SET first_name = first_name || '!' WHERE customer_id IN (5, 550)")
        .await;
    while let Some(b) = reading.next().await {
        batches.push(b.unwrap());
    }
    let ids = ints(&batches, "customer_id");
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique, (1..=599).collect());
    // Both changed rows come last, in (cursor, id) order; 5 was read twice.
    assert_eq!(ids[ids.len() - 2..], [5, 550]);
    assert_eq!(ids.len(), 600);
    let tail = &batches.last().unwrap().rows;
    let first_name = batches[0]
        .fields
        .iter()
        .position(|f| f == "first_name")
        .unwrap();
    assert!(matches!(&tail[tail.len() - 1][first_name], Value::Text(s) if s.ends_with('!')));

    // A later read sees only what changed after.
    let last = stored(batches.last().unwrap());
    assert!(
        read(&c, stream.clone(), Some(last.clone()), 100)
            .await
            .unwrap()
            .is_empty()
    );
    db.exec("UPDATE customer SET active = 0 WHERE customer_id = 7")
        .await;
    let next = read(&c, stream, Some(last), 100).await.unwrap();
    assert_eq!(ints(&next, "customer_id"), [7]);
}

#[tokio::test]
async fn a_source_going_away_mid_read_fails_and_resumes_from_the_last_state() {
    let db = TestDb::pagila().await;
    let c = Arc::new(
        PostgresConnector::connect(Config {
            connect_timeout_secs: Some(2),
            ..Config::url(&db.url)
        })
        .await
        .unwrap(),
    );
    let stream = Stream::table("rental").with_cursor("last_update");
    let all = ints(
        &read(&c, stream.clone(), None, 5000).await.unwrap(),
        "rental_id",
    );
    let mut reading = c.clone().read(ReadRequest {
        name: "rental".into(),
        stream: stream.clone(),
        state: None,
        batch_size: 1000,
    });
    let mut got = vec![];
    for _ in 0..3 {
        got.push(reading.next().await.unwrap().unwrap());
    }
    // The server throws everyone out and refuses new connections.
    admin(&format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
        db.name
    ))
    .await;
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
    .await;
    let e = reading.next().await.unwrap().unwrap_err();
    assert_eq!(e.origin(), ErrorOrigin::Remote, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string().starts_with("source error: stream \"rental\""),
        "{e}"
    );
    assert!(
        reading.next().await.is_none(),
        "the stream ends after an error"
    );

    // Back again: reading from the last state the consumer got completes the stream.
    admin(&format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
        db.name
    ))
    .await;
    let rest = read(&c, stream, Some(stored(got.last().unwrap())), 1000)
        .await
        .unwrap();
    let mut ids = ints(&got, "rental_id");
    ids.extend(ints(&rest, "rental_id"));
    assert_eq!(ids, all, "nothing lost or duplicated");
    assert_eq!(ids.len(), 16044);
}

#[tokio::test]
async fn a_terminated_connection_between_batches_is_replaced() {
    let db = TestDb::pagila().await;
    let c = connect(&db).await;
    let stream = Stream::table("film_actor");
    let mut reading = c.clone().read(ReadRequest {
        name: "film_actor".into(),
        stream,
        state: None,
        batch_size: 2000,
    });
    let mut got = vec![reading.next().await.unwrap().unwrap()];
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
    .await;
    while let Some(b) = reading.next().await {
        got.push(b.unwrap());
    }
    assert_eq!(rows(&got), 5462);
}

#[tokio::test]
async fn reads_a_composite_primary_key() {
    let db = TestDb::pagila().await;
    let c = connect(&db).await;
    // Without a cursor: a full read by (actor_id, film_id) on every run.
    let full = read(&c, Stream::table("film_actor"), None, 1000)
        .await
        .unwrap();
    assert_eq!(full.len(), 6);
    let keys: Vec<(i64, i64)> = ints(&full, "actor_id")
        .into_iter()
        .zip(ints(&full, "film_id"))
        .collect();
    assert_eq!(keys.len(), 5462);
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "in key order, no repeats"
    );
    assert!(full.iter().all(|b| b.state.is_full_refresh()));
    // The stored state is ignored: everything again.
    let again = read(
        &c,
        Stream::table("film_actor"),
        Some(stored(&full[2])),
        1000,
    )
    .await
    .unwrap();
    assert_eq!(rows(&again), 5462);

    // With a cursor, ties are broken by both key columns.
    let stream = Stream::table("film_actor").with_cursor("last_update");
    let first = read(&c, stream.clone(), None, 1000).await.unwrap();
    let state = KeysetState::from_state(&first[0].state).unwrap();
    assert_eq!(state.pk.len(), 2);
    let rest = read(&c, stream, Some(stored(&first[0])), 1000)
        .await
        .unwrap();
    assert_eq!(
        ints(&rest, "actor_id"),
        ints(&first, "actor_id")[1000..].to_vec()
    );
    assert_eq!(
        ints(&rest, "film_id"),
        ints(&first, "film_id")[1000..].to_vec()
    );
}

#[tokio::test]
async fn sql_injection_in_names_is_a_clean_config_error() {
    let db = TestDb::pagila().await;
    let c = connect(&db).await;
    let evil = r#"customer"; DROP TABLE rental; --"#;
    let e = config_error(c.describe("s", &Stream::table(evil)).await.unwrap_err());
    assert!(e.contains("no table or view"), "{e}");
    let e = config_error(
        c.describe("s", &Stream::table("customer").with_cursor(evil))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("cursor column"), "{e}");
    let e = config_error(
        c.describe("s", &Stream::table("customer").with_primary_key([evil]))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("primary key column"), "{e}");
    config_error(read(&c, Stream::table(evil), None, 10).await.unwrap_err());
    config_error(
        c.describe("s", &Stream::table("public\".\"customer"))
            .await
            .unwrap_err(),
    );
    assert_eq!(db.count("rental").await, 16044);

    // Names that need quoting are read fine.
    db.exec(
        r#"CREATE TABLE "we""ird table" ("the id" int PRIMARY KEY, "up""dated" text);
           INSERT INTO "we""ird table" VALUES (1, 'a'), (2, 'b'), (3, 'c');"#,
    )
    .await;
    let stream = Stream::table(r#"we"ird table"#).with_cursor(r#"up"dated"#);
    let batches = read(&c, stream.clone(), None, 2).await.unwrap();
    assert_eq!(ints(&batches, "the id"), [1, 2, 3]);
    db.exec(r#"INSERT INTO "we""ird table" VALUES (4, 'd')"#)
        .await;
    let batches = read(&c, stream, Some(stored(&batches[1])), 2)
        .await
        .unwrap();
    assert_eq!(ints(&batches, "the id"), [4]);
    assert_eq!(db.count("rental").await, 16044);
}

const TYPES: &str = r#"
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
    CREATE DOMAIN yes AS boolean;
    CREATE DOMAIN price AS numeric(8, 2);
    CREATE TABLE typed (
        id bigint PRIMARY KEY,
        big numeric(38, 9), price numeric(5, 2), free numeric,
        small smallint, pos posint, r real, d double precision, m money,
        flag boolean, name varchar(20), code char(3), u uuid, day date, at_time time,
        stamp timestamp, stamptz timestamptz, doc json, docb jsonb, feeling mood,
        tags text[], grid int[], ip inet, span interval,
        blob bytea, fts tsvector, pt point, ok yes, cost price
    );
    INSERT INTO typed VALUES
        (1, 12345678901234567890.123456789, 19.99, 0.1, -32768, 7, 1.5, 0.1, 12.34,
         true, 'ada', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '13:45:00.5',
         '2024-01-01 10:00:00.123456', '2024-01-01 12:00:00.654321+02', '{"a": [1, 2]}',
         '{"b": null}', 'happy', '{x,"y z"}', '{1,2,3}', '10.0.0.1', '1 day 02:00:00',
         '\xdeadbeef', 'a fat cat', '(1,2)', true, 5.5),
        (2, -0.000000001, 0, 1e-20, NULL, NULL, NULL, NULL, NULL,
         false, NULL, NULL, NULL, 'infinity', NULL,
         '-infinity', 'infinity', 'null', '[1, "two"]', 'sad', '{}', NULL, NULL, NULL,
         NULL, NULL, NULL, false, NULL),
        (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL);
"#;

#[tokio::test]
async fn values_are_exact_and_typed() {
    let db = TestDb::empty().await;
    db.exec(TYPES).await;
    let c = connect(&db).await;
    let info = c.describe("typed", &Stream::table("typed")).await.unwrap();
    let unsupported: Vec<&str> = info
        .fields
        .iter()
        .filter(|f| f.unsupported.is_some())
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(unsupported, ["blob", "fts", "pt"]);

    let batches = read(&c, Stream::table("typed"), None, 10).await.unwrap();
    let b = &batches[0];
    // Unsupported columns are not read at all.
    assert!(
        !b.fields
            .iter()
            .any(|f| f == "blob" || f == "fts" || f == "pt")
    );
    let col = |n: &str| values(&batches, n);
    let dec = |s: &str| Value::Decimal(s.into());
    let t = |s: &str| Value::DateTime(s.parse().unwrap());
    let text = |s: &str| Value::Text(s.into());
    assert_eq!(
        col("big"),
        [
            dec("12345678901234567890.123456789"),
            dec("-0.000000001"),
            Value::Null
        ]
    );
    assert_eq!(col("price"), [dec("19.99"), dec("0.00"), Value::Null]);
    assert_eq!(
        col("free"),
        [dec("0.1"), dec("0.00000000000000000001"), Value::Null]
    );
    assert_eq!(col("small")[0], Value::Int(-32768));
    assert_eq!(col("pos")[0], Value::Int(7));
    assert_eq!(col("r")[0], Value::Float(1.5));
    assert_eq!(col("d")[0], Value::Float(0.1));
    assert_eq!(col("m")[0], dec("12.34"));
    assert_eq!(
        col("flag"),
        [Value::Bool(true), Value::Bool(false), Value::Null]
    );
    assert_eq!(col("name")[0], text("ada"));
    // char(n) loses its padding, as in any cast to text.
    assert_eq!(col("code")[0], text("ab"));
    assert_eq!(col("u")[0], text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    // Dates at midnight UTC; infinity is no date.
    assert_eq!(
        col("day"),
        [t("2024-02-29T00:00:00Z"), Value::Null, Value::Null]
    );
    assert_eq!(col("at_time")[0], text("13:45:00.5"));
    assert_eq!(
        col("stamp"),
        [t("2024-01-01T10:00:00.123456Z"), Value::Null, Value::Null]
    );
    assert_eq!(col("stamptz")[0], t("2024-01-01T10:00:00.654321Z"));
    assert_eq!(col("doc")[0], Value::Json(json!({"a": [1, 2]})));
    assert_eq!(col("doc")[1], Value::Json(json!(null)));
    assert_eq!(col("docb")[1], Value::Json(json!([1, "two"])));
    assert_eq!(col("feeling")[0], text("happy"));
    assert_eq!(col("tags")[0], Value::Json(json!(["x", "y z"])));
    assert_eq!(col("tags")[1], Value::Json(json!([])));
    assert_eq!(col("grid")[0], Value::Json(json!([1, 2, 3])));
    assert_eq!(col("ip")[0], text("10.0.0.1/32"));
    assert_eq!(col("span")[0], text("1 day 02:00:00"));
    // Domains read as their base type.
    assert_eq!(col("ok")[..2], [Value::Bool(true), Value::Bool(false)]);
    assert_eq!(col("cost")[0], dec("5.50"));

    // A mapping that uses an unsupported field is refused, naming it.
    let mapping: dossier_core::MappingConfig = serde_json::from_value(json!({
        "target": "contact", "id": "id", "data": {"raw": "blob"}
    }))
    .unwrap();
    let e = mapping
        .compile("src", "typed", &info.fields)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"blob\" has type bytea which cannot be mapped"),
        "{e}"
    );
    let e = config_error(
        c.describe("typed", &Stream::table("typed").with_cursor("blob"))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("cursor column \"blob\" has type bytea"), "{e}");
}

#[tokio::test]
async fn exact_cursor_values_resume_exactly() {
    let db = TestDb::empty().await;
    db.exec(
        "CREATE TABLE m (id int PRIMARY KEY, amount numeric(30, 10), at timestamptz,
                         day date, score double precision);
         INSERT INTO m SELECT i, 12345678901234567890.0000000001 * (i % 3),
                              '2024-01-01 00:00:00.000001+00'::timestamptz + (i % 4) * interval '1 microsecond',
                              '2024-01-01'::date + (i % 2), (i % 5) * 0.1
                       FROM generate_series(1, 30) i;
         UPDATE m SET at = 'infinity' WHERE id = 30;",
    )
    .await;
    let c = connect(&db).await;
    for cursor in ["amount", "at", "day", "score"] {
        let stream = Stream::table("m").with_cursor(cursor);
        let full = read(&c, stream.clone(), None, 4).await.unwrap();
        let all = ints(&full, "id");
        assert_eq!(all.len(), 30, "{cursor}");
        for (i, batch) in full.iter().enumerate() {
            let rest = read(&c, stream.clone(), Some(stored(batch)), 4)
                .await
                .unwrap();
            let seen = full[..=i].iter().map(|b| b.rows.len()).sum::<usize>();
            assert_eq!(ints(&rest, "id"), all[seen..], "{cursor} after batch {i}");
        }
    }
}

#[tokio::test]
async fn null_cursors_are_read_first_and_reported_by_check() {
    let db = TestDb::empty().await;
    db.exec(
        "CREATE TABLE c (id int PRIMARY KEY, updated_at timestamptz);
         INSERT INTO c VALUES (1, NULL), (2, '2024-01-01'), (3, NULL), (4, NULL),
                              (5, '2024-01-01'), (6, NULL), (7, '2023-01-01');",
    )
    .await;
    let c = connect(&db).await;
    let stream = Stream::table("c").with_cursor("updated_at");
    let full = read(&c, stream.clone(), None, 2).await.unwrap();
    assert_eq!(ints(&full, "id"), [1, 3, 4, 6, 7, 2, 5]);
    assert_eq!(
        KeysetState::from_state(&full[0].state).unwrap().cursor,
        Some(Value::Null)
    );
    let resumed = read(&c, stream.clone(), Some(stored(&full[0])), 2)
        .await
        .unwrap();
    assert_eq!(ints(&resumed, "id"), [4, 6, 7, 2, 5]);

    // After the full read, NULL-cursor rows are not read again; set cursors are.
    db.exec("UPDATE c SET updated_at = '2024-02-01' WHERE id = 3; INSERT INTO c VALUES (8, NULL);")
        .await;
    let next = read(&c, stream.clone(), Some(stored(full.last().unwrap())), 2)
        .await
        .unwrap();
    assert_eq!(ints(&next, "id"), [3]);

    let problems = c.check(&[("c".into(), stream)]).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .message
            .starts_with(r#"some rows have a NULL cursor "updated_at""#),
        "{problems:?}"
    );
}

/// Every read runs in a read-only transaction: a `query` that would write (through a function
/// it calls) fails, and writes nothing.
#[tokio::test]
async fn a_query_that_would_write_is_refused_and_writes_nothing() {
    let db = TestDb::empty().await;
    db.exec(
        "CREATE TABLE marks (id bigint PRIMARY KEY);
         CREATE FUNCTION mark() RETURNS bigint LANGUAGE sql VOLATILE
           AS $$ INSERT INTO marks VALUES (1) RETURNING id $$;",
    )
    .await;
    let c = connect(&db).await;
    let stream = Stream::query("SELECT mark() AS id").with_primary_key(["id"]);
    let e = read(&c, stream, None, 10).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot execute INSERT in a read-only transaction"),
        "{e}"
    );
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(db.count("marks").await, 0);
}

#[tokio::test]
async fn reads_select_queries() {
    let db = TestDb::pagila().await;
    let c = connect(&db).await;
    let stream = Stream::query(
        "-- payments with the payer's email
         SELECT p.payment_id, c.email, p.amount, p.payment_date
         FROM payment p JOIN customer c USING (customer_id)
         WHERE p.amount > 5 -- the bigger ones
         ;",
    )
    .with_cursor("payment_date")
    .with_primary_key(["payment_id"]);
    let info = c.describe("big", &stream).await.unwrap();
    let types: Vec<(&str, &str)> = info
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.source_type.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("payment_id", "integer"),
            ("email", "text"),
            ("amount", "numeric"),
            ("payment_date", "timestamp with time zone"),
        ]
    );
    let batches = read(&c, stream.clone(), None, 1000).await.unwrap();
    let want = db.count("payment WHERE amount > 5").await;
    assert_eq!(ints(&batches, "payment_id").len() as i64, want);
    let resumed = read(&c, stream, Some(stored(&batches[0])), 1000)
        .await
        .unwrap();
    assert_eq!(rows(&resumed) as i64, want - 1000);

    let e = config_error(
        c.describe(
            "s",
            &Stream::query("SELECT * FROM customer WHERE customer_id = $1")
                .with_primary_key(["customer_id"]),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.contains("parameter"), "{e}");
    let e = config_error(
        c.describe(
            "s",
            &Stream::query("SELECT * FROM customer").with_cursor("last_update"),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.contains("a query stream needs `primary_key`"), "{e}");
    let e = config_error(
        c.describe(
            "s",
            &Stream::query("SELECT a.customer_id, b.customer_id FROM customer a JOIN customer b USING (customer_id)")
                .with_primary_key(["customer_id"]),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.contains("two columns named \"customer_id\""), "{e}");
    // A CTE in front of a write passes the first-word check, but not the server.
    let stream =
        Stream::query("WITH x AS (DELETE FROM rental RETURNING rental_id) SELECT * FROM x")
            .with_primary_key(["rental_id"]);
    config_error(c.describe("s", &stream).await.unwrap_err());
    assert!(read(&c, stream, None, 10).await.is_err());
    assert_eq!(db.count("rental").await, 16044);
}

#[tokio::test]
async fn config_errors_name_the_stream_table_and_columns() {
    let db = TestDb::pagila().await;
    let c = connect(&db).await;
    let e = config_error(
        c.describe("people", &Stream::table("persons"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains(r#"stream "people": no table or view "persons" in schema(s) public"#),
        "{e}"
    );
    assert!(e.contains("it has: actor, actor_info, address,"), "{e}");

    let e = config_error(
        c.describe("s", &Stream::table("customer").with_cursor("changed_at"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains(r#"cursor column "changed_at" is not a column of table "customer"; its columns are: "customer_id", "store_id""#),
        "{e}"
    );
    let e = config_error(
        c.describe("s", &Stream::table("customer_list"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains(r#"view "customer_list" has no primary key"#),
        "{e}"
    );
    let e = config_error(
        c.describe("s", &Stream::table("other.customer"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains(r#"schema "other" is not one the source reads"#),
        "{e}"
    );
    // Case-insensitive and schema-qualified names resolve.
    for name in ["Customer", "public.customer"] {
        let info = c.describe("s", &Stream::table(name)).await.unwrap();
        assert_eq!(info.primary_key, ["customer_id"]);
    }

    // Connection problems: whose fault, and whether to retry.
    let e = config_error(
        PostgresConnector::connect(Config::url(with_database(
            &admin_url().replace("postgres@", "dossier_no_such_user@"),
            &db.name,
        )))
        .await
        .unwrap_err(),
    );
    assert!(
        e.contains(r#"as user "dossier_no_such_user""#) && e.contains("127.0.0.1:5432"),
        "{e}"
    );
    let e = config_error(
        PostgresConnector::connect(Config::url(with_database(
            &admin_url(),
            "dossier_no_such_db",
        )))
        .await
        .unwrap_err(),
    );
    assert!(e.contains("dossier_no_such_db"), "{e}");
    let e = PostgresConnector::connect(Config {
        host: Some("127.0.0.1".into()),
        port: Some(1),
        user: Some("postgres".into()),
        ..Config::default()
    })
    .await
    .unwrap_err();
    assert!(e.is_retryable() && e.is_unreachable(), "{e}");
    assert!(
        e.to_string()
            .contains("postgres at postgres@127.0.0.1:1/postgres is unreachable: "),
        "{e}"
    );
    let e = config_error(
        PostgresConnector::connect(Config {
            password_env: Some("DOSSIER_TEST_UNSET_PASSWORD".into()),
            ..Config::url(&db.url)
        })
        .await
        .unwrap_err(),
    );
    assert!(
        e.contains("DOSSIER_TEST_UNSET_PASSWORD, which is not set"),
        "{e}"
    );
    let e = config_error(
        PostgresConnector::connect(Config::url("mysql://root@127.0.0.1/x"))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("must start with postgres://"), "{e}");
}

#[tokio::test]
async fn check_reports_one_problem_per_broken_stream() {
    let role = format!("dossier_test_{}_reader", std::process::id());
    admin(&format!("CREATE ROLE \"{role}\" LOGIN")).await;
    // Dropped even when an assertion fails, after the database holding its grants.
    struct DropRole(String);
    impl Drop for DropRole {
        fn drop(&mut self) {
            let _ = std::process::Command::new("psql")
                .arg(admin_url())
                .args(["-q", "-X", "-c"])
                .arg(format!("DROP ROLE IF EXISTS \"{}\"", self.0))
                .output();
        }
    }
    let _role = DropRole(role.clone());
    let db = TestDb::pagila().await;
    db.exec(&format!("GRANT SELECT ON customer TO \"{role}\""))
        .await;

    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let c = PostgresConnector::connect(Config::url(url)).await.unwrap();
    let problems = c
        .check(&[
            (
                "ok".into(),
                Stream::table("customer").with_cursor("last_update"),
            ),
            ("missing".into(), Stream::table("people")),
            ("forbidden".into(), Stream::table("payment")),
            (
                "bad_query".into(),
                Stream::query("SELECT nope FROM customer").with_primary_key(["nope"]),
            ),
        ])
        .await;
    let streams: Vec<_> = problems.iter().map(|p| p.stream.as_deref()).collect();
    assert_eq!(
        streams,
        [Some("missing"), Some("forbidden"), Some("bad_query")],
        "{problems:?}"
    );
    assert!(
        problems[1].message.contains("permission denied"),
        "{}",
        problems[1].message
    );
    assert!(
        problems[1].message.contains(&format!("{role}@")),
        "{}",
        problems[1].message
    );
    assert!(
        problems[2].message.contains("nope"),
        "{}",
        problems[2].message
    );
}

#[tokio::test]
async fn empty_tables_yield_no_batch_and_schemas_can_be_chosen() {
    let db = TestDb::empty().await;
    db.exec(
        "CREATE SCHEMA sales;
         CREATE TABLE sales.orders (id int PRIMARY KEY, modified_at timestamp);
         CREATE TABLE public.notes (id int PRIMARY KEY);",
    )
    .await;
    let c = connect(&db).await;
    assert!(
        read(&c, Stream::table("notes"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let names: Vec<String> = c
        .discover()
        .await
        .unwrap()
        .streams
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["notes"]);

    let c = PostgresConnector::connect(Config {
        schemas: Some(vec!["sales".into(), "public".into()]),
        ..Config::url(&db.url)
    })
    .await
    .unwrap();
    let catalog = c.discover().await.unwrap();
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["public.notes", "orders"]);
    assert_eq!(catalog.streams[1].cursor_candidates, ["modified_at"]);
    assert!(c.describe("s", &Stream::table("orders")).await.is_ok());
    assert!(
        c.describe("s", &Stream::table("public.notes"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn spec_documents_every_setting() {
    let mut registry = Registry::new();
    registry.register::<PostgresConnector>();
    let factory = registry.get("postgres").unwrap();
    let spec = factory.spec();
    assert_eq!(spec.config_schema["additionalProperties"], json!(false));
    assert_eq!(spec.stream_schema["additionalProperties"], json!(false));
    for field in [
        "url",
        "host",
        "port",
        "user",
        "database",
        "password_env",
        "tls",
        "connect_timeout_secs",
        "statement_timeout_secs",
        "schemas",
    ] {
        assert!(
            spec.config_schema["properties"][field]["description"].is_string(),
            "{field}: {}",
            spec.config_schema
        );
    }
    for field in ["table", "query", "cursor", "primary_key", "batch_size"] {
        assert!(
            spec.stream_schema["properties"][field]["description"].is_string(),
            "{field}"
        );
    }
    let validate = |settings: serde_json::Value| {
        factory
            .validate_stream(&StreamConfig {
                name: "s".into(),
                settings,
            })
            .map_err(|e| e.to_string())
    };
    assert!(
        validate(json!({"table": "customer", "cursor": "last_update", "batch_size": 500})).is_ok()
    );
    let e = validate(json!({"table": "customer", "cursr": "x"})).unwrap_err();
    assert!(e.contains("unknown field `cursr`"), "{e}");
    let e = validate(json!({"table": "t", "query": "SELECT 1"})).unwrap_err();
    assert!(e.contains("not both"), "{e}");
    let e = factory
        .connect(json!({"url": "postgres://x@127.0.0.1/db", "sslmode": "x"}))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown field `sslmode`"), "{e}");
}
