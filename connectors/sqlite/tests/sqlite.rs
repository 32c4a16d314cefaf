//! The SQLite connector against real SQLite files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dossier_connector::keyset::KeysetState;
use dossier_connector::{
    Batch, Connector, ConnectorError, ErrorOrigin, ReadRequest, Registry, StreamConfig,
    StreamState, Value, read_all,
};
use dossier_connector_sqlite::{Config, SqliteConnector, Stream};
use futures::StreamExt as _;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tempfile::TempDir;

struct Db {
    _dir: TempDir,
    path: PathBuf,
    /// A writable pool, to set up and change the data.
    pool: SqlitePool,
}

impl Db {
    async fn new(setup: &str) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let db = Db {
            _dir: dir,
            path,
            pool,
        };
        db.exec(setup).await;
        db
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{table}\""
        )))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn connect(&self) -> Arc<SqliteConnector> {
        Arc::new(
            SqliteConnector::connect(Config {
                path: self.path.clone(),
            })
            .await
            .unwrap(),
        )
    }
}

/// 25 customers sharing one `updated_at`, ids 1..=25.
const CUSTOMERS: &str = "
    CREATE TABLE customers (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,
        updated_at TEXT,
        created_at DATETIME
    );
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25)
    INSERT INTO customers (id, email, updated_at, created_at)
    SELECT i, 'c' || i || '@example.com', '2024-01-01 10:00:00', '2023-12-01 09:00:00' FROM n;
";

async fn read(
    c: &Arc<SqliteConnector>,
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

/// The integer values of `field` in every row, in read order.
fn ints(batches: &[Batch], field: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let i = b.fields.iter().position(|f| f == field).unwrap();
            b.rows.iter().map(move |r| match &r[i] {
                Value::Int(v) => *v,
                other => panic!("{field} is {other:?}"),
            })
        })
        .collect()
}

/// The state as the framework stores and reloads it.
fn stored(batch: &Batch) -> StreamState {
    serde_json::from_str(&serde_json::to_string(&batch.state).unwrap()).unwrap()
}

fn config_error(e: ConnectorError) -> String {
    assert_eq!(e.origin(), ErrorOrigin::Config, "{e}");
    e.to_string()
}

#[tokio::test]
async fn discovers_tables_views_keys_and_cursor_candidates() {
    let db = Db::new(
        "
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            email TEXT,
            domain TEXT GENERATED ALWAYS AS (substr(email, instr(email, '@') + 1)) VIRTUAL,
            created_at DATETIME,
            updated_at DATETIME
        );
        CREATE TABLE order_lines (
            order_id INTEGER, line INTEGER, sku TEXT, last_modified INTEGER,
            PRIMARY KEY (line, order_id)
        );
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, row_modif_ts TIMESTAMP);
        CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT) WITHOUT ROWID;
        CREATE TABLE notes (body, Modified);
        CREATE VIEW active_customers AS SELECT id, email, updated_at FROM customers;
        CREATE TABLE gone (id INTEGER PRIMARY KEY);
        CREATE VIEW broken AS SELECT * FROM gone;
        DROP TABLE gone;
        CREATE VIRTUAL TABLE docs USING fts5(title, body);
        INSERT INTO events (row_modif_ts) VALUES ('2024-01-01');
        ",
    )
    .await;
    let c = db.connect().await;
    let catalog = c.discover().await.unwrap();
    let names: Vec<_> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    // No sqlite_sequence nor FTS5 shadow tables, and the broken view is skipped rather than
    // failing discovery.
    assert_eq!(
        names,
        [
            "active_customers",
            "customers",
            "docs",
            "events",
            "notes",
            "order_lines",
            "tags"
        ]
    );
    let get = |n: &str| catalog.streams.iter().find(|s| s.name == n).unwrap();

    let customers = get("customers");
    let fields: Vec<_> = customers
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.source_type.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("id", "INTEGER"),
            ("email", "TEXT"),
            ("domain", "TEXT"),
            ("created_at", "DATETIME"),
            ("updated_at", "DATETIME"),
        ]
    );
    assert!(customers.fields.iter().all(|f| f.unsupported.is_none()));
    assert_eq!(customers.primary_key, ["id"]);
    assert_eq!(customers.cursor_candidates, ["id", "updated_at"]);

    let lines = get("order_lines");
    assert_eq!(lines.primary_key, ["line", "order_id"]);
    assert_eq!(lines.cursor_candidates, ["last_modified"]);

    assert_eq!(get("events").cursor_candidates, ["id", "row_modif_ts"]);
    // Not a rowid alias: ids of a WITHOUT ROWID table are whatever is inserted.
    assert_eq!(get("tags").primary_key, ["id"]);
    assert!(get("tags").cursor_candidates.is_empty());

    let notes = get("notes");
    assert!(notes.primary_key.is_empty());
    assert_eq!(notes.fields[0].source_type, "ANY");
    assert_eq!(notes.cursor_candidates, ["Modified"]);

    let docs: Vec<_> = get("docs").fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(docs, ["title", "body"]);

    let view = get("active_customers");
    assert!(view.primary_key.is_empty());
    assert_eq!(view.cursor_candidates, ["updated_at"]);
}

#[tokio::test]
async fn describe_of_a_missing_table_lists_the_existing_ones() {
    let db = Db::new(CUSTOMERS).await;
    db.exec("CREATE VIEW recent AS SELECT * FROM customers")
        .await;
    let c = db.connect().await;
    let e = config_error(
        c.describe("people", &Stream::table("persons"))
            .await
            .unwrap_err(),
    );
    assert!(e.contains(r#"stream "people""#), "{e}");
    assert!(e.contains(r#"no table or view "persons""#), "{e}");
    assert!(e.contains("it has: customers, recent"), "{e}");

    // SQLite resolves names case-insensitively; so does describe.
    let info = c
        .describe("people", &Stream::table("CUSTOMERS"))
        .await
        .unwrap();
    assert_eq!(info.name, "people");
    assert_eq!(info.primary_key, ["id"]);
}

#[tokio::test]
async fn describe_names_missing_cursor_and_primary_key_columns() {
    let db = Db::new(CUSTOMERS).await;
    let c = db.connect().await;
    let e = config_error(
        c.describe("s", &Stream::table("customers").with_cursor("changed_at"))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains(r#"cursor column "changed_at" is not a column of table "customers""#),
        "{e}"
    );
    assert!(
        e.contains(r#""id", "email", "updated_at", "created_at""#),
        "{e}"
    );

    let e = config_error(
        c.describe(
            "s",
            &Stream::table("customers").with_primary_key(["id", "tenant", "region"]),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        e.contains(
            r#"primary key columns "tenant", "region" are not columns of table "customers""#
        ),
        "{e}"
    );

    let info = c
        .describe("s", &Stream::table("customers").with_cursor("updated_at"))
        .await
        .unwrap();
    assert_eq!(info.primary_key, ["id"]);
    assert_eq!(info.fields.len(), 4);
}

#[tokio::test]
async fn views_and_tables_without_a_declared_key_need_primary_key() {
    let db = Db::new(
        "
        CREATE TABLE log (email TEXT, at TEXT);
        CREATE VIEW emails AS SELECT DISTINCT email FROM log;
        INSERT INTO log VALUES ('a@x', '1'), ('b@x', '2'), ('a@x', '3');
        ",
    )
    .await;
    let c = db.connect().await;
    let e = config_error(c.describe("s", &Stream::table("log")).await.unwrap_err());
    assert!(
        e.contains(r#"table "log" has no declared primary key; set `primary_key`"#),
        "{e}"
    );
    let e = config_error(c.describe("s", &Stream::table("emails")).await.unwrap_err());
    assert!(
        e.contains(r#"view "emails" has no declared primary key"#),
        "{e}"
    );

    let stream = Stream::table("emails").with_primary_key(["email"]);
    let batches = read(&c, stream, None, 1).await.unwrap();
    let emails: Vec<_> = batches.iter().map(|b| b.rows[0][0].clone()).collect();
    assert_eq!(
        emails,
        [Value::Text("a@x".into()), Value::Text("b@x".into())]
    );
}

#[tokio::test]
async fn incremental_reads_with_many_rows_sharing_a_cursor_value() {
    let db = Db::new(CUSTOMERS).await;
    let c = db.connect().await;
    let stream = Stream::table("customers").with_cursor("updated_at");

    let first = read(&c, stream.clone(), None, 10).await.unwrap();
    assert_eq!(
        first.iter().map(|b| b.rows.len()).collect::<Vec<_>>(),
        [10, 10, 5]
    );
    assert_eq!(ints(&first, "id"), (1..=25).collect::<Vec<_>>());
    assert_eq!(
        KeysetState::from_state(&first[2].state).unwrap(),
        KeysetState {
            cursor: Some(Value::Text("2024-01-01 10:00:00".into())),
            pk: vec![Value::Int(25)],
        }
    );

    // Nothing changed: nothing to read, and no batch that would reset the state.
    let state = stored(&first[2]);
    assert!(
        read(&c, stream.clone(), Some(state.clone()), 10)
            .await
            .unwrap()
            .is_empty()
    );

    db.exec(
        "
        UPDATE customers SET updated_at = '2024-01-02 08:00:00' WHERE id IN (3, 12, 20);
        INSERT INTO customers (id, email, updated_at) VALUES
            (26, 'c26@example.com', '2024-01-02 09:00:00'),
            (27, 'c27@example.com', '2024-01-02 08:00:00');
        ",
    )
    .await;
    let second = read(&c, stream.clone(), Some(state), 10).await.unwrap();
    assert_eq!(second.len(), 1);
    // In (cursor, id) order.
    assert_eq!(ints(&second, "id"), [3, 12, 20, 27, 26]);

    // Across batch boundaries too.
    let again = read(&c, stream, Some(stored(&first[2])), 2).await.unwrap();
    assert_eq!(again.len(), 3);
    assert_eq!(ints(&again, "id"), [3, 12, 20, 27, 26]);
}

#[tokio::test]
async fn rows_updated_during_a_read_are_read_later_and_none_is_lost() {
    let db = Db::new(CUSTOMERS).await;
    let c = db.connect().await;
    let stream = Stream::table("customers").with_cursor("updated_at");
    let mut reading = c.clone().read(ReadRequest {
        name: "customers".into(),
        stream: stream.clone(),
        state: None,
        batch_size: 10,
    });
    let mut batches = vec![reading.next().await.unwrap().unwrap()];
    // One row already read, one not yet.
    db.exec("UPDATE customers SET updated_at = '2024-01-03 00:00:00' WHERE id IN (5, 22)")
        .await;
    while let Some(b) = reading.next().await {
        batches.push(b.unwrap());
    }
    let ids = ints(&batches, "id");
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique, (1..=25).collect());
    // Both changed rows come last, in (cursor, id) order; 5 was read twice.
    assert_eq!(ids[ids.len() - 2..], [5, 22]);
    assert_eq!(ids.len(), 26);

    // A later read sees only what changed after.
    let last = stored(batches.last().unwrap());
    assert!(
        read(&c, stream.clone(), Some(last.clone()), 10)
            .await
            .unwrap()
            .is_empty()
    );
    db.exec("UPDATE customers SET updated_at = '2024-01-04 00:00:00' WHERE id = 7")
        .await;
    let next = read(&c, stream, Some(last), 10).await.unwrap();
    assert_eq!(ints(&next, "id"), [7]);
}

#[tokio::test]
async fn resumes_from_a_stored_state_after_a_crash() {
    let db = Db::new(CUSTOMERS).await;
    db.exec(
        "UPDATE customers SET updated_at = '2024-01-01 11:00:00' WHERE id % 3 = 0;
         UPDATE customers SET updated_at = '2024-01-01 09:00:00' WHERE id % 5 = 0;",
    )
    .await;
    let c = db.connect().await;
    let stream = Stream::table("customers").with_cursor("updated_at");
    let full = read(&c, stream.clone(), None, 4).await.unwrap();
    let all = ints(&full, "id");
    assert_eq!(all.len(), 25);

    // The process died after committing batch 2: resume from its state.
    let resumed = read(&c, stream, Some(stored(&full[1])), 4).await.unwrap();
    assert_eq!(ints(&resumed, "id"), all[8..]);
    assert_eq!(ints(&resumed[..1], "id"), ints(&full[2..3], "id"));
}

#[tokio::test]
async fn an_empty_read_yields_no_batch() {
    let db = Db::new("CREATE TABLE customers (id INTEGER PRIMARY KEY, updated_at TEXT);").await;
    let c = db.connect().await;
    for stream in [
        Stream::table("customers"),
        Stream::table("customers").with_cursor("updated_at"),
    ] {
        assert!(read(&c, stream, None, 10).await.unwrap().is_empty());
    }

    // A read of exactly one full batch ends with that batch.
    db.exec("INSERT INTO customers VALUES (1, 'a'), (2, 'b')")
        .await;
    let batches = read(&c, Stream::table("customers"), None, 2).await.unwrap();
    assert_eq!(batches.len(), 1);
}

#[tokio::test]
async fn reads_a_select_query_with_a_cursor() {
    let db = Db::new(
        "
        CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT);
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL, status TEXT, changed TEXT
        );
        INSERT INTO customers VALUES (1, 'a@x'), (2, 'b@x');
        INSERT INTO orders VALUES
            (10, 1, 9.5, 'paid', '2024-01-01'),
            (11, 2, 20, 'draft', '2024-01-01'),
            (12, 2, 7.25, 'paid', '2024-01-01'),
            (13, 1, 1, 'paid', '2024-01-02');
        ",
    )
    .await;
    let c = db.connect().await;
    let stream = Stream::query(
        "-- paid orders with the buyer's email
         SELECT o.id AS order_id, c.email, o.total, o.changed
         FROM orders o JOIN customers c ON c.id = o.customer_id
         WHERE o.status = 'paid' -- no drafts
         ;",
    )
    .with_cursor("changed")
    .with_primary_key(["order_id"]);

    let info = c.describe("orders", &stream).await.unwrap();
    let names: Vec<_> = info.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["order_id", "email", "total", "changed"]);
    assert_eq!(info.primary_key, ["order_id"]);
    assert_eq!(info.fields[2].source_type, "REAL");

    let first = read(&c, stream.clone(), None, 2).await.unwrap();
    assert_eq!(ints(&first, "order_id"), [10, 12, 13]);
    assert_eq!(first[0].rows[0][2], Value::Float(9.5));

    db.exec("UPDATE orders SET status = 'paid', changed = '2024-01-03' WHERE id = 11")
        .await;
    let next = read(&c, stream, Some(stored(&first[1])), 2).await.unwrap();
    assert_eq!(ints(&next, "order_id"), [11]);
}

#[tokio::test]
async fn query_streams_need_a_primary_key_and_parameters_are_refused() {
    let db = Db::new(CUSTOMERS).await;
    let c = db.connect().await;
    let e = config_error(
        c.describe(
            "s",
            &Stream::query("SELECT * FROM customers").with_cursor("updated_at"),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.contains("a query stream needs `primary_key`"), "{e}");

    // SQLite names a repeated column of a subquery uniquely.
    let info = c
        .describe(
            "s",
            &Stream::query("SELECT a.id, b.id FROM customers a JOIN customers b USING (id)")
                .with_primary_key(["id"]),
        )
        .await
        .unwrap();
    let names: Vec<_> = info.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["id", "id:1"]);

    let e = config_error(
        c.describe(
            "s",
            &Stream::query("SELECT * FROM customers WHERE id > ?").with_primary_key(["id"]),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.contains("parameter"), "{e}");

    let e = config_error(
        c.describe(
            "s",
            &Stream::query("SELECT * FROM nowhere").with_primary_key(["id"]),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.contains("no such table: nowhere"), "{e}");
}

#[tokio::test]
async fn reads_a_composite_primary_key() {
    let db = Db::new(
        "
        CREATE TABLE order_lines (
            order_id INTEGER, line INTEGER, sku TEXT, modified_at TEXT,
            PRIMARY KEY (order_id, line)
        );
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 11)
        INSERT INTO order_lines SELECT i / 4, i % 4, 'sku' || i, '2024-01-01' FROM n;
        ",
    )
    .await;
    let c = db.connect().await;

    // Without a cursor: a full read by (order_id, line) on every run.
    let full = read(&c, Stream::table("order_lines"), None, 5)
        .await
        .unwrap();
    assert_eq!(full.len(), 3);
    let keys: Vec<_> = ints(&full, "order_id")
        .into_iter()
        .zip(ints(&full, "line"))
        .collect();
    let want: Vec<_> = (0..12).map(|i| (i / 4, i % 4)).collect();
    assert_eq!(keys, want);

    // With a cursor: ties broken by both key columns.
    let stream = Stream::table("order_lines").with_cursor("modified_at");
    let first = read(&c, stream.clone(), None, 5).await.unwrap();
    assert_eq!(ints(&first, "order_id").len(), 12);
    assert_eq!(
        KeysetState::from_state(&first[0].state).unwrap().pk,
        [Value::Int(1), Value::Int(0)]
    );
    let rest = read(&c, stream, Some(stored(&first[0])), 5).await.unwrap();
    let keys: Vec<_> = ints(&rest, "order_id")
        .into_iter()
        .zip(ints(&rest, "line"))
        .collect();
    assert_eq!(keys, want[5..]);
}

#[tokio::test]
async fn sql_injection_in_names_is_a_clean_config_error() {
    let db = Db::new(CUSTOMERS).await;
    let c = db.connect().await;
    let evil = r#"x"; DROP TABLE customers; --"#;

    let e = config_error(c.describe("s", &Stream::table(evil)).await.unwrap_err());
    assert!(e.contains("no table or view"), "{e}");
    let e = config_error(
        c.describe("s", &Stream::table("customers").with_cursor(evil))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("cursor column"), "{e}");
    let e = config_error(
        c.describe("s", &Stream::table("customers").with_primary_key([evil]))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("primary key column"), "{e}");
    config_error(read(&c, Stream::table(evil), None, 10).await.unwrap_err());
    assert_eq!(db.count("customers").await, 25);

    // Names that need quoting are read fine.
    db.exec(
        r#"CREATE TABLE "we""ird table" ("the id" INTEGER PRIMARY KEY, "up""dated" TEXT);
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
}

#[tokio::test]
async fn queries_that_are_not_a_single_select_are_refused() {
    let db = Db::new(CUSTOMERS).await;
    let c = db.connect().await;
    for query in [
        "DELETE FROM customers",
        "SELECT 1 AS id; DROP TABLE customers",
        "PRAGMA writable_schema = 1",
        "UPDATE customers SET email = 'x' RETURNING id",
    ] {
        let stream = Stream::query(query).with_primary_key(["id"]);
        assert!(stream.validate().is_err(), "{query}");
        let e = config_error(c.describe("s", &stream).await.unwrap_err());
        assert!(
            e.contains("`query` must be a single SELECT statement"),
            "{e}"
        );
    }
    // A CTE in front of a write passes the first-word check, but not the subquery.
    let stream = Stream::query("WITH x AS (SELECT 1) DELETE FROM customers RETURNING id")
        .with_primary_key(["id"]);
    config_error(c.describe("s", &stream).await.unwrap_err());
    assert!(read(&c, stream, None, 10).await.is_err());
    assert_eq!(db.count("customers").await, 25);
}

#[tokio::test]
async fn stream_settings_are_checked_when_parsed() {
    let mut registry = Registry::new();
    registry.register::<SqliteConnector>();
    let factory = registry.get("sqlite").unwrap();
    let spec = factory.spec();
    assert_eq!(spec.stream_schema["additionalProperties"], json!(false));
    assert_eq!(spec.config_schema["additionalProperties"], json!(false));
    assert_eq!(spec.version, env!("CARGO_PKG_VERSION"));
    for field in ["table", "query", "cursor", "primary_key"] {
        assert!(
            spec.stream_schema["properties"][field]["description"].is_string(),
            "{field}: {}",
            spec.stream_schema
        );
    }
    assert!(spec.config_schema["properties"]["path"]["description"].is_string());

    let validate = |settings: serde_json::Value| {
        factory
            .validate_stream(&StreamConfig {
                name: "s".into(),
                settings,
            })
            .map_err(|e| e.to_string())
    };
    assert!(validate(json!({"table": "customers", "cursor": "updated_at"})).is_ok());
    let e = validate(json!({"table": "customers", "query": "SELECT 1"})).unwrap_err();
    assert!(e.contains("set either `table` or `query`, not both"), "{e}");
    let e = validate(json!({"cursor": "updated_at"})).unwrap_err();
    assert!(e.contains("set `table`"), "{e}");
    let e = validate(json!({"table": "customers", "cursr": "updated_at"})).unwrap_err();
    assert!(e.contains("unknown field `cursr`"), "{e}");
    let e = validate(json!({"query": "DELETE FROM customers"})).unwrap_err();
    assert!(e.contains("SELECT"), "{e}");
    let e = validate(json!({"table": "t", "primary_key": []})).unwrap_err();
    assert!(e.contains("`primary_key` is empty"), "{e}");

    let e = factory
        .connect(json!({"path": "x.db", "mode": "rw"}))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown field `mode`"), "{e}");
}

#[tokio::test]
async fn connecting_to_a_missing_or_foreign_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let connect = |path: &Path| {
        SqliteConnector::connect(Config {
            path: path.to_path_buf(),
        })
    };
    let missing = dir.path().join("missing.db");
    let e = config_error(connect(&missing).await.unwrap_err());
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("does not exist"), "{e}");
    assert!(!missing.exists(), "the file was created");

    let e = config_error(connect(dir.path()).await.unwrap_err());
    assert!(e.contains("is not a file"), "{e}");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a database, just some text long enough").unwrap();
    let e = config_error(connect(&text).await.unwrap_err());
    assert!(e.contains("not a SQLite database"), "{e}");
}

#[tokio::test]
async fn values_follow_each_value_storage_class() {
    let db = Db::new(
        "
        CREATE TABLE v (id INTEGER PRIMARY KEY, anything, flag BOOLEAN, price NUMERIC);
        INSERT INTO v VALUES
            (1, NULL, 1, '12.50'),
            (2, 42, 0, 12.5),
            (3, 2.5, NULL, 7),
            (4, 'text', 1, 'n/a'),
            (5, x'00ff10', 0, NULL);
        ",
    )
    .await;
    let c = db.connect().await;
    let batches = read(&c, Stream::table("v"), None, 100).await.unwrap();
    let rows = &batches[0].rows;
    let column = |i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    assert_eq!(
        column(1),
        [
            Value::Null,
            Value::Int(42),
            Value::Float(2.5),
            Value::Text("text".into()),
            Value::Text("00ff10".into()),
        ]
    );
    assert_eq!(
        column(2),
        [
            Value::Int(1),
            Value::Int(0),
            Value::Null,
            Value::Int(1),
            Value::Int(0)
        ]
    );
    // NUMERIC affinity stores '12.50' as the REAL 12.5 and 7 as an INTEGER.
    assert_eq!(
        column(3),
        [
            Value::Float(12.5),
            Value::Float(12.5),
            Value::Int(7),
            Value::Text("n/a".into()),
            Value::Null,
        ]
    );
}

#[tokio::test]
async fn null_cursors_are_read_by_a_full_read_and_reported_by_check() {
    let db = Db::new(
        "
        CREATE TABLE customers (id INTEGER PRIMARY KEY, updated_at TEXT);
        INSERT INTO customers VALUES
            (1, NULL), (2, '2024-01-01'), (3, NULL), (4, NULL), (5, '2024-01-01'), (6, NULL);
        ",
    )
    .await;
    let c = db.connect().await;
    let stream = Stream::table("customers").with_cursor("updated_at");

    // NULLs first, across batches that end on a NULL cursor.
    let full = read(&c, stream.clone(), None, 2).await.unwrap();
    assert_eq!(ints(&full, "id"), [1, 3, 4, 6, 2, 5]);
    assert_eq!(
        KeysetState::from_state(&full[0].state).unwrap().cursor,
        Some(Value::Null)
    );
    let resumed = read(&c, stream.clone(), Some(stored(&full[0])), 2)
        .await
        .unwrap();
    assert_eq!(ints(&resumed, "id"), [4, 6, 2, 5]);

    // After the full read, NULL-cursor rows are not read again; set cursors are.
    db.exec("UPDATE customers SET updated_at = '2024-02-01' WHERE id = 3; INSERT INTO customers VALUES (7, NULL);")
        .await;
    let next = read(&c, stream.clone(), Some(stored(&full[2])), 2)
        .await
        .unwrap();
    assert_eq!(ints(&next, "id"), [3]);

    let problems = c.check(&[("customers".into(), stream)]).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].stream.as_deref(), Some("customers"));
    assert!(
        problems[0].message.starts_with(
            r#"4 rows have a NULL cursor "updated_at"; they are read only by a full read"#
        ),
        "{}",
        problems[0].message
    );
}

#[tokio::test]
async fn pages_through_blob_and_null_key_values() {
    let db = Db::new(
        "
        CREATE TABLE devices (id BLOB PRIMARY KEY, name TEXT) WITHOUT ROWID;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 7)
        INSERT INTO devices SELECT randomblob(16), 'd' || i FROM n;
        CREATE TABLE visits (email TEXT, day TEXT, n INTEGER);
        INSERT INTO visits VALUES
            (NULL, '2024-01-01', 1), ('a@x', NULL, 2), (NULL, NULL, 3), ('a@x', '2024-01-01', 4),
            ('b@x', '2024-01-02', 5), (NULL, '2024-01-02', 6);
        ",
    )
    .await;
    let c = db.connect().await;

    let batches = read(&c, Stream::table("devices"), None, 2).await.unwrap();
    assert_eq!(batches.len(), 4);
    let mut names: Vec<_> = batches
        .iter()
        .flat_map(|b| b.rows.iter().map(|r| r[1].clone()))
        .collect();
    names.sort_by_key(|v| v.to_id_string());
    assert_eq!(names.len(), 7);
    names.dedup();
    assert_eq!(names.len(), 7);
    let Value::Text(hex) = &batches[0].rows[0][0] else {
        panic!("a blob is hex text")
    };
    assert_eq!(hex.len(), 32);

    // A BLOB cursor resumes as a BLOB.
    let stream = Stream::table("devices").with_cursor("id");
    let first = read(&c, stream.clone(), None, 3).await.unwrap();
    let rest = read(&c, stream, Some(stored(&first[0])), 3).await.unwrap();
    assert_eq!(rest.iter().map(|b| b.rows.len()).sum::<usize>(), 4);

    // A key with NULLs, one row per batch.
    let stream = Stream::table("visits")
        .with_cursor("day")
        .with_primary_key(["email", "n"]);
    let batches = read(&c, stream, None, 1).await.unwrap();
    assert_eq!(ints(&batches, "n"), [3, 2, 1, 4, 6, 5]);
}

#[tokio::test]
async fn streams_without_a_cursor_are_read_whole_every_time() {
    let db = Db::new(CUSTOMERS).await;
    let c = db.connect().await;
    let first = read(&c, Stream::table("customers"), None, 10)
        .await
        .unwrap();
    assert_eq!(ints(&first, "id").len(), 25);
    for b in &first {
        assert_eq!(b.state, StreamState(json!({"full_refresh": true})));
    }
    // The stored state is ignored: everything again.
    let again = read(&c, Stream::table("customers"), Some(stored(&first[0])), 10)
        .await
        .unwrap();
    assert_eq!(ints(&again, "id"), (1..=25).collect::<Vec<_>>());

    // A cursor added later starts with a full read.
    let stream = Stream::table("customers").with_cursor("updated_at");
    let batches = read(&c, stream.clone(), Some(stored(&first[2])), 10)
        .await
        .unwrap();
    assert_eq!(ints(&batches, "id").len(), 25);

    // A state that does not fit the stream asks for a reset.
    let state = KeysetState {
        cursor: Some(Value::Text("2024".into())),
        pk: vec![Value::Int(1), Value::Int(2)],
    }
    .to_state();
    let e = config_error(read(&c, stream, Some(state), 10).await.unwrap_err());
    assert!(e.contains("reset the stream's state"), "{e}");
}

#[tokio::test]
async fn reads_real_cursor_values_across_batches() {
    let db = Db::new(
        "
        CREATE TABLE metrics (id INTEGER PRIMARY KEY, updated REAL);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
        INSERT INTO metrics SELECT i, (i % 4) * 0.1 FROM n;
        ",
    )
    .await;
    let c = db.connect().await;
    let stream = Stream::table("metrics").with_cursor("updated");
    let full = read(&c, stream.clone(), None, 3).await.unwrap();
    let all = ints(&full, "id");
    assert_eq!(all.len(), 20);
    for (i, batch) in full.iter().enumerate() {
        let rest = read(&c, stream.clone(), Some(stored(batch)), 3)
            .await
            .unwrap();
        let seen = full[..=i].iter().map(|b| b.rows.len()).sum::<usize>();
        assert_eq!(ints(&rest, "id"), all[seen..], "after batch {i}");
    }
}

#[tokio::test]
async fn check_reports_one_problem_per_broken_stream() {
    let db = Db::new(CUSTOMERS).await;
    let c = db.connect().await;
    let problems = c
        .check(&[
            (
                "ok".into(),
                Stream::table("customers").with_cursor("updated_at"),
            ),
            ("missing".into(), Stream::table("people")),
            (
                "bad_query".into(),
                Stream::query("SELECT nope FROM customers").with_primary_key(["nope"]),
            ),
        ])
        .await;
    let streams: Vec<_> = problems.iter().map(|p| p.stream.as_deref()).collect();
    assert_eq!(
        streams,
        [Some("missing"), Some("bad_query")],
        "{problems:?}"
    );
    assert!(problems[1].message.contains("no such column: nope"));
}
