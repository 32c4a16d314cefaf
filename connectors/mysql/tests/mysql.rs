//! The MySQL connector against a real server (MariaDB here): Sakila and purpose-made tables,
//! each test in a database of its own.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{
    TestDb, TestUser, admin, admin_rows, admin_url, cents, ints, stored, values, with_database,
    with_user,
};
use dossier_connector::keyset::KeysetState;
use dossier_connector::{
    Batch, Connector, ConnectorError, ErrorOrigin, ReadRequest, StreamState, Value, read_all,
};
use dossier_connector_mysql::{Config, MySqlConnector, Stream};
use futures::StreamExt as _;
use serde_json::json;

async fn connect(db: &TestDb) -> Arc<MySqlConnector> {
    Arc::new(MySqlConnector::connect(Config::url(&db.url)).await.unwrap())
}

async fn read(
    c: &Arc<MySqlConnector>,
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
async fn discovers_sakila() {
    let db = TestDb::sakila().await;
    let c = connect(&db).await;
    assert!(c.driver().is_mariadb(), "these tests run on MariaDB");
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
    let get = |n: &str| catalog.streams.iter().find(|s| s.name == n).unwrap();
    let customer = get("customer");
    assert_eq!(customer.primary_key, ["customer_id"]);
    assert_eq!(customer.cursor_candidates, ["customer_id", "last_update"]);
    let types: Vec<(&str, &str)> = customer
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.source_type.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("customer_id", "smallint(5) unsigned not null"),
            ("store_id", "tinyint(3) unsigned not null"),
            ("first_name", "varchar(45) not null"),
            ("last_name", "varchar(45) not null"),
            ("email", "varchar(50)"),
            ("address_id", "smallint(5) unsigned not null"),
            ("active", "tinyint(1) not null"),
            ("create_date", "datetime not null"),
            ("last_update", "timestamp"),
        ]
    );
    assert!(customer.fields.iter().all(|f| f.unsupported.is_none()));
    assert_eq!(get("film_actor").primary_key, ["actor_id", "film_id"]);
    assert!(get("customer_list").primary_key.is_empty());
    let picture = get("staff")
        .fields
        .iter()
        .find(|f| f.name == "picture")
        .unwrap();
    assert_eq!(picture.source_type, "blob");
    assert!(
        picture
            .unsupported
            .as_ref()
            .unwrap()
            .contains("binary data")
    );
}

#[tokio::test]
async fn reads_customers_payments_and_rentals_whole() {
    let db = TestDb::sakila().await;
    let c = connect(&db).await;
    for (table, cursor, id) in [
        ("customer", "last_update", "customer_id"),
        ("payment", "last_update", "payment_id"),
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
        let last = stored(batches.last().unwrap());
        assert!(read(&c, stream, Some(last), 1000).await.unwrap().is_empty());
    }

    let batches = read(&c, Stream::table("payment"), None, 5000)
        .await
        .unwrap();
    let sum: String = db
        .scalar("SELECT CAST(sum(amount) AS CHAR) FROM payment")
        .await;
    assert_eq!(sum, "67406.56");
    assert_eq!(cents(&values(&batches, "amount")), 6_740_656);
    assert!(batches.iter().all(|b| b.state.is_full_refresh()));

    let first = &read(&c, Stream::table("customer"), None, 1).await.unwrap()[0];
    let get = |n: &str| first.rows[0][first.fields.iter().position(|f| f == n).unwrap()].clone();
    assert_eq!(
        get("email"),
        Value::Text("MARY.SMITH@sakilacustomer.org".into())
    );
    assert_eq!(get("active"), Value::Bool(true));
    assert_eq!(get("store_id"), Value::Int(1));
    assert_eq!(
        get("create_date"),
        Value::DateTime("2006-02-14T22:04:36Z".parse().unwrap())
    );
    assert_eq!(
        get("last_update"),
        Value::DateTime("2006-02-15T04:57:20Z".parse().unwrap())
    );
}

#[tokio::test]
async fn rows_sharing_a_cursor_value_across_batch_boundaries() {
    let db = TestDb::sakila().await;
    let distinct: i64 = db
        .scalar("SELECT count(DISTINCT last_update) FROM customer")
        .await;
    assert_eq!(distinct, 1, "every customer shares one last_update");
    let c = connect(&db).await;
    let stream = Stream::table("customer").with_cursor("last_update");
    let full = read(&c, stream.clone(), None, 100).await.unwrap();
    assert_eq!(full.len(), 6);
    assert_eq!(ints(&full, "customer_id"), (1..=599).collect::<Vec<_>>());
    assert_eq!(
        KeysetState::from_state(&full[0].state).unwrap(),
        KeysetState {
            cursor: Some(Value::DateTime("2006-02-15T04:57:20Z".parse().unwrap())),
            pk: vec![Value::Int(100)],
        }
    );
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
}

#[tokio::test]
async fn rows_updated_during_a_read_are_read_later_and_none_is_lost() {
    let db = TestDb::sakila().await;
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
    // `ON UPDATE CURRENT_TIMESTAMP` stamps last_update.
    db.exec(
        "UPDATE customer SET first_name = CONCAT(first_name, '!') WHERE customer_id IN (5, 550)",
    )
    .await;
    while let Some(b) = reading.next().await {
        batches.push(b.unwrap());
    }
    let ids = ints(&batches, "customer_id");
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique, (1..=599).collect());
    assert_eq!(ids[ids.len() - 2..], [5, 550]);
    assert_eq!(ids.len(), 600);

    let last = stored(batches.last().unwrap());
    assert!(
        read(&c, stream.clone(), Some(last.clone()), 100)
            .await
            .unwrap()
            .is_empty()
    );
    // A second later, so the new stamp is past the last one read.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    db.exec("UPDATE customer SET active = 0 WHERE customer_id = 7")
        .await;
    let next = read(&c, stream, Some(last), 100).await.unwrap();
    assert_eq!(ints(&next, "customer_id"), [7]);
}

#[tokio::test]
async fn reads_a_composite_primary_key() {
    let db = TestDb::sakila().await;
    let c = connect(&db).await;
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

    let stream = Stream::table("film_actor").with_cursor("last_update");
    let first = read(&c, stream.clone(), None, 1000).await.unwrap();
    assert_eq!(
        KeysetState::from_state(&first[0].state).unwrap().pk.len(),
        2
    );
    let rest = read(&c, stream, Some(stored(&first[0])), 1000)
        .await
        .unwrap();
    assert_eq!(
        ints(&rest, "film_id"),
        ints(&first, "film_id")[1000..].to_vec()
    );
    assert_eq!(
        ints(&rest, "actor_id"),
        ints(&first, "actor_id")[1000..].to_vec()
    );
}

#[tokio::test]
async fn a_killed_connection_between_batches_is_replaced() {
    let db = TestDb::sakila().await;
    let sessions = || async {
        admin_rows(&format!(
            "SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST WHERE DB = '{}'",
            db.name
        ))
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect::<BTreeSet<String>>()
    };
    let before = sessions().await;
    let c = connect(&db).await;
    let mut reading = c.clone().read(ReadRequest {
        name: "film_actor".into(),
        stream: Stream::table("film_actor"),
        state: None,
        batch_size: 2000,
    });
    let mut got = vec![reading.next().await.unwrap().unwrap()];
    let ids: Vec<String> = sessions().await.difference(&before).cloned().collect();
    assert_eq!(
        ids.len(),
        1,
        "the connector reads on one connection: {ids:?}"
    );
    admin(&format!("KILL CONNECTION {}", ids[0])).await;
    while let Some(b) = reading.next().await {
        got.push(b.unwrap());
    }
    assert_eq!(rows(&got), 5462);
}

#[tokio::test]
async fn sql_injection_in_names_is_a_clean_config_error() {
    let db = TestDb::sakila().await;
    let c = connect(&db).await;
    let evil = "customer`; DROP TABLE rental; --";
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
    assert_eq!(db.count("rental").await, 16044);

    db.exec(
        "CREATE TABLE `we``ird table` (`the id` int PRIMARY KEY, `up``dated` varchar(10));
         INSERT INTO `we``ird table` VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    )
    .await;
    let stream = Stream::table("we`ird table").with_cursor("up`dated");
    let batches = read(&c, stream.clone(), None, 2).await.unwrap();
    assert_eq!(ints(&batches, "the id"), [1, 2, 3]);
    db.exec("INSERT INTO `we``ird table` VALUES (4, 'd')").await;
    let batches = read(&c, stream, Some(stored(&batches[1])), 2)
        .await
        .unwrap();
    assert_eq!(ints(&batches, "the id"), [4]);
}

const TYPES: &str = "
    SET time_zone = '+02:00';
    SET sql_mode = '';
    CREATE TABLE typed (
        id bigint unsigned PRIMARY KEY,
        big decimal(38, 9), price decimal(5, 2) unsigned, small smallint, y year,
        r float, d double, flag tinyint(1), b bit(1), bits bit(20),
        name varchar(20), body text, mood enum('sad', 'ok', 'happy'), tags set('a', 'b'),
        u uuid, day date, at_time time(3), at datetime(6), stamp timestamp NULL,
        doc json, blob_col blob, bin varbinary(8), g geometry
    );
    INSERT INTO typed VALUES
        (18446744073709551615, 12345678901234567890.123456789, 19.99, -32768, 2024,
         1.5, 0.1, 1, b'1', b'101', 'ada', 'long text', 'happy', 'a,b',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '13:45:00.5',
         '2024-01-01 12:00:00.123456', '2024-01-01 12:00:00', '{\"a\": [1, 2]}',
         x'deadbeef', x'00', NULL),
        (42, -0.000000001, 0, NULL, NULL, NULL, NULL, 0, b'0', NULL, NULL, NULL, 'sad', '',
         NULL, '0000-00-00', NULL, '0000-00-00 00:00:00', NULL, '[1, \"two\"]',
         NULL, NULL, NULL),
        (7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
";

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
    assert_eq!(unsupported, ["blob_col", "bin", "g"]);
    // MariaDB's JSON is a LONGTEXT with a JSON_VALID check; it still reads as JSON.
    let doc = info.fields.iter().find(|f| f.name == "doc").unwrap();
    assert_eq!(doc.source_type, "longtext");

    let batches = read(&c, Stream::table("typed"), None, 10).await.unwrap();
    assert_eq!(ints(&batches[..0], "id"), Vec::<i64>::new());
    let col = |n: &str| values(&batches, n);
    let dec = |s: &str| Value::Decimal(s.into());
    let t = |s: &str| Value::DateTime(s.parse().unwrap());
    let text = |s: &str| Value::Text(s.into());
    // In key order: 7, 42, then the largest BIGINT UNSIGNED, exact.
    assert_eq!(
        col("id"),
        [Value::Int(7), Value::Int(42), dec("18446744073709551615")]
    );
    assert_eq!(
        col("big"),
        [
            Value::Null,
            dec("-0.000000001"),
            dec("12345678901234567890.123456789")
        ]
    );
    assert_eq!(col("price")[2], dec("19.99"));
    assert_eq!(col("price")[1], dec("0.00"));
    assert_eq!(col("small")[2], Value::Int(-32768));
    assert_eq!(col("y")[2], Value::Int(2024));
    assert_eq!(col("r")[2], Value::Float(1.5));
    assert_eq!(col("d")[2], Value::Float(0.1));
    assert_eq!(
        col("flag"),
        [Value::Null, Value::Bool(false), Value::Bool(true)]
    );
    assert_eq!(col("b")[2], Value::Bool(true));
    assert_eq!(col("bits")[2], Value::Int(5));
    assert_eq!(col("name")[2], text("ada"));
    assert_eq!(col("body")[2], text("long text"));
    assert_eq!(col("mood")[2], text("happy"));
    assert_eq!(col("tags")[2], text("a,b"));
    assert_eq!(col("u")[2], text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert_eq!(col("day")[2], t("2024-02-29T00:00:00Z"));
    assert_eq!(col("day")[1], Value::Null, "a zero date is no date");
    assert_eq!(col("at_time")[2], text("13:45:00.500"));
    // DATETIME has no time zone: taken as UTC.
    assert_eq!(col("at")[2], t("2024-01-01T12:00:00.123456Z"));
    assert_eq!(col("at")[1], Value::Null);
    // TIMESTAMP was written at +02:00 and is read in UTC.
    assert_eq!(col("stamp")[2], t("2024-01-01T10:00:00Z"));
    assert_eq!(col("doc")[2], Value::Json(json!({"a": [1, 2]})));
    assert_eq!(col("doc")[1], Value::Json(json!([1, "two"])));
    assert!(
        !batches[0]
            .fields
            .iter()
            .any(|f| f == "blob_col" || f == "g")
    );

    let e = config_error(
        c.describe("typed", &Stream::table("typed").with_cursor("blob_col"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains("cursor column \"blob_col\" has type blob"),
        "{e}"
    );
}

#[tokio::test]
async fn exact_cursor_values_resume_exactly() {
    let db = TestDb::empty().await;
    db.exec(
        "CREATE TABLE m (id bigint unsigned PRIMARY KEY, amount decimal(30, 10),
                         at datetime(6), day date, score double, name varchar(10));
         INSERT INTO m
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30)
         SELECT 18446744073709551585 + i, 12345678901234567890.0000000001 * (i % 3),
                TIMESTAMP('2024-01-01 00:00:00.000001') + INTERVAL (i % 4) MICROSECOND,
                DATE('2024-01-01') + INTERVAL (i % 2) DAY, (i % 5) * 0.1,
                ELT(1 + i % 3, 'a', 'B', 'c')
         FROM n;",
    )
    .await;
    let c = connect(&db).await;
    for cursor in ["amount", "at", "day", "score", "name", "id"] {
        let stream = Stream::table("m").with_cursor(cursor);
        let full = read(&c, stream.clone(), None, 4).await.unwrap();
        let all = values(&full, "id");
        assert_eq!(all.len(), 30, "{cursor}");
        for (i, batch) in full.iter().enumerate() {
            let rest = read(&c, stream.clone(), Some(stored(batch)), 4)
                .await
                .unwrap();
            let seen = full[..=i].iter().map(|b| b.rows.len()).sum::<usize>();
            assert_eq!(values(&rest, "id"), all[seen..], "{cursor} after batch {i}");
        }
    }
}

#[tokio::test]
async fn null_cursors_are_read_first_and_reported_by_check() {
    let db = TestDb::empty().await;
    db.exec(
        "CREATE TABLE c (id int PRIMARY KEY, updated_at datetime);
         INSERT INTO c VALUES (1, NULL), (2, '2024-01-01'), (3, NULL), (4, NULL),
                              (5, '2024-01-01'), (6, NULL), (7, '2023-01-01');",
    )
    .await;
    let c = connect(&db).await;
    let stream = Stream::table("c").with_cursor("updated_at");
    let full = read(&c, stream.clone(), None, 2).await.unwrap();
    assert_eq!(ints(&full, "id"), [1, 3, 4, 6, 7, 2, 5]);
    let resumed = read(&c, stream.clone(), Some(stored(&full[0])), 2)
        .await
        .unwrap();
    assert_eq!(ints(&resumed, "id"), [4, 6, 7, 2, 5]);
    let problems = c.check(&[("c".into(), stream)]).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("NULL cursor"), "{problems:?}");
}

/// Every read runs in a read-only transaction: a `query` that would write (through a function
/// it calls) fails, and writes nothing.
#[tokio::test]
async fn a_query_that_would_write_is_refused_and_writes_nothing() {
    let db = TestDb::empty().await;
    db.exec("CREATE TABLE marks (id INT PRIMARY KEY)").await;
    db.exec(
        "CREATE FUNCTION mark() RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA
         BEGIN INSERT INTO marks VALUES (1); RETURN 1; END",
    )
    .await;
    let c = connect(&db).await;
    let stream = Stream::query("SELECT mark() AS id").with_primary_key(["id"]);
    let e = read(&c, stream, None, 10).await.unwrap_err();
    assert!(
        e.to_string()
            .to_lowercase()
            .contains("read only transaction"),
        "{e}"
    );
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(db.count("marks").await, 0);
}

#[tokio::test]
async fn reads_select_queries() {
    let db = TestDb::sakila().await;
    let c = connect(&db).await;
    let stream = Stream::query(
        "SELECT p.payment_id, c.email, p.amount, p.payment_date
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
            ("payment_id", "smallint unsigned"),
            ("email", "varchar"),
            ("amount", "decimal"),
            ("payment_date", "datetime"),
        ]
    );
    let batches = read(&c, stream.clone(), None, 1000).await.unwrap();
    let want = db.count("payment WHERE amount > 5").await;
    assert_eq!(rows(&batches) as i64, want);
    let resumed = read(&c, stream, Some(stored(&batches[0])), 1000)
        .await
        .unwrap();
    assert_eq!(rows(&resumed) as i64, want - 1000);
    let sum: String = db
        .scalar("SELECT CAST(sum(amount) * 100 AS CHAR) FROM payment WHERE amount > 5")
        .await;
    assert_eq!(
        cents(&values(&batches, "amount")).to_string(),
        sum.trim_end_matches(".00")
    );

    let e = config_error(
        c.describe(
            "s",
            &Stream::query("SELECT * FROM customer WHERE customer_id = ?")
                .with_primary_key(["customer_id"]),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.contains("parameter"), "{e}");
    let e = config_error(
        c.describe(
            "s",
            &Stream::query("SELECT a.customer_id, b.customer_id FROM customer a JOIN customer b USING (customer_id)")
                .with_primary_key(["customer_id"]),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.contains("Duplicate column name"), "{e}");
}

#[tokio::test]
async fn config_errors_name_the_stream_table_and_columns() {
    let db = TestDb::sakila().await;
    let c = connect(&db).await;
    let e = config_error(
        c.describe("people", &Stream::table("persons"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains(&format!(
            r#"stream "people": no table or view "persons" in schema(s) {}"#,
            db.name
        )),
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
        MySqlConnector::connect(Config::url(with_user(
            &db.url,
            "dossier_no_such_user",
            Some("nope"),
        )))
        .await
        .unwrap_err(),
    );
    assert!(
        e.contains(r#"as user "dossier_no_such_user""#) && e.contains("Access denied"),
        "{e}"
    );
    assert!(!e.contains("nope"), "the password shows: {e}");
    let e = config_error(
        MySqlConnector::connect(Config::url(with_database(
            &admin_url(),
            "dossier_no_such_db",
        )))
        .await
        .unwrap_err(),
    );
    assert!(e.contains("dossier_no_such_db"), "{e}");
    let e = MySqlConnector::connect(Config {
        host: Some("127.0.0.1".into()),
        port: Some(1),
        user: Some("root".into()),
        ..Config::default()
    })
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let e = config_error(
        MySqlConnector::connect(Config::url(
            admin_url().rsplit_once('/').unwrap().0.to_string(),
        ))
        .await
        .unwrap_err(),
    );
    assert!(e.contains("names no database"), "{e}");
    // With `schemas`, no database is needed.
    let c = MySqlConnector::connect(Config {
        schemas: Some(vec![db.name.clone()]),
        ..Config::url(admin_url().rsplit_once('/').unwrap().0.to_string())
    })
    .await
    .unwrap();
    assert!(c.describe("s", &Stream::table("customer")).await.is_ok());
}

#[tokio::test]
async fn check_reports_one_problem_per_broken_stream() {
    let db = TestDb::sakila().await;
    let name = format!("{}_r", db.name);
    let _user = TestUser::new(&name, "reader-pw", &[format!("`{}`.customer", db.name)]).await;
    let c = MySqlConnector::connect(Config::url(with_user(&db.url, &name, Some("reader-pw"))))
        .await
        .unwrap();
    let problems = c
        .check(&[
            (
                "ok".into(),
                Stream::table("customer").with_cursor("last_update"),
            ),
            ("missing".into(), Stream::table("people")),
            (
                "forbidden".into(),
                Stream::query("SELECT payment_id FROM payment").with_primary_key(["payment_id"]),
            ),
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
        problems[1].message.contains("denied"),
        "{}",
        problems[1].message
    );
    assert!(
        problems[2].message.contains("nope"),
        "{}",
        problems[2].message
    );
}
