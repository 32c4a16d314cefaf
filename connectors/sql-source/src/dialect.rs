//! What differs between SQL servers: quoting, parameters, catalog queries, types.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use dossier_connector::Value;

use crate::cell::Cell;
use crate::cell::{hex, unhex};
use crate::sql::{Binder, Placeholders};

/// What a column's values become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A signed integer that fits 64 bits: `Int`.
    Int,
    /// An unsigned 64-bit integer: `Int` when it fits an `i64`, else an exact `Decimal`.
    BigUnsigned,
    Float,
    /// An exact decimal: `Decimal`, as the server writes it.
    Decimal,
    Bool,
    Text,
    /// A date: `DateTime` at 00:00 UTC.
    Date,
    /// A date and time without time zone, taken as UTC.
    Timestamp,
    /// A date and time with time zone, converted to UTC.
    TimestampTz,
    /// JSON (and PostgreSQL arrays, as JSON arrays).
    Json,
    /// Any value (SQLite, whose column types are only declared): each value is read as it is
    /// stored, an integer as `Int`, a real as `Float`, text as `Text`, a BLOB as `Text` holding
    /// its bytes in lowercase hex.
    Any,
    /// Not read; the reason says why and how to read it anyway.
    Unsupported(String),
}

impl Kind {
    /// Values of this kind (`what`) are not read; a `query` converting them, as `example`
    /// does, reads them anyway.
    pub fn not_read(what: &str, example: &str) -> Kind {
        Kind::Unsupported(format!(
            "{what} is not read; to map it, read it through a `query` that converts it, e.g. \
             {example}"
        ))
    }

    pub fn is_supported(&self) -> bool {
        !matches!(self, Kind::Unsupported(_))
    }

    /// Whether values of this kind can order a keyset (cursor and primary key columns).
    pub fn is_orderable(&self) -> bool {
        !matches!(self, Kind::Json | Kind::Unsupported(_))
    }

    pub(crate) fn is_time(&self) -> bool {
        matches!(self, Kind::Date | Kind::Timestamp | Kind::TimestampTz)
    }
}

/// How a value travels from the server: drivers decode these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A 64-bit signed integer.
    Int,
    /// A double.
    Float,
    Bool,
    /// Text: everything else, converted in the select list.
    Text,
}

/// A column as a catalog query or a query's description gives it, before classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawColumn {
    pub name: String,
    /// The type as the server shows it (`numeric(5,2)`, `bigint(20) unsigned`).
    pub display: String,
    /// The type the dialect classifies by (`numeric`, `bigint`, `array`, `enum`, `json`).
    pub class: String,
    /// `None` when unknown (query columns).
    pub nullable: Option<bool>,
    /// Position in the primary key, from 1; 0 when not part of it.
    pub pk_position: i64,
    /// Filled by the server from a sequence or `AUTO_INCREMENT`.
    pub auto_increment: bool,
}

/// A classified column: what the catalog says of it (read through `Deref`), and what its
/// values become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub raw: RawColumn,
    pub kind: Kind,
    /// The type keyset parameters are cast to (dialect-specific; empty for none).
    pub cast: String,
}

impl std::ops::Deref for Column {
    type Target = RawColumn;

    fn deref(&self) -> &RawColumn {
        &self.raw
    }
}

impl Column {
    pub(crate) fn classify(raw: RawColumn, dialect: &dyn Dialect) -> Column {
        let (kind, cast) = dialect.classify(&raw.class, &raw.display);
        Column { raw, kind, cast }
    }

    /// The type shown in discovery: `integer not null`, `text`.
    pub fn source_type(&self) -> String {
        match self.nullable {
            Some(false) => format!("{} not null", self.display),
            _ => self.display.clone(),
        }
    }
}

/// The SQL that differs between servers. Every method is pure: drivers run the statements.
pub trait Dialect: Send + Sync + 'static {
    /// Quotes an identifier so that any name, even a hostile one, stays one identifier. The
    /// default is standard SQL's double quotes (PostgreSQL, SQLite).
    fn quote(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    fn placeholders(&self) -> Placeholders;

    /// The statement that opens the read-only transaction each batch is read in.
    fn begin_read_only(&self) -> &'static str {
        "START TRANSACTION READ ONLY"
    }

    /// Lists tables and views of `schemas`: rows of (schema text, name text, kind text),
    /// kind being `table`, `view`, ... in schema, name order.
    fn tables_sql(&self, schemas: &[String], b: &mut Binder) -> String;

    /// Lists columns of `schemas` (or of one table): rows of (schema text, table text, column
    /// text, ordinal int, display text, class text, nullable int, pk position int,
    /// auto increment int), in schema, table, ordinal order.
    fn columns_sql(
        &self,
        schemas: &[String],
        table: Option<(&str, &str)>,
        b: &mut Binder,
    ) -> String;

    /// The kind of a column and the type its keyset parameters are cast to.
    fn classify(&self, class: &str, display: &str) -> (Kind, String);

    /// How values of a kind travel.
    fn wire(&self, kind: &Kind) -> Wire {
        match kind {
            Kind::Int => Wire::Int,
            Kind::Float => Wire::Float,
            Kind::Bool => Wire::Bool,
            _ => Wire::Text,
        }
    }

    /// The select-list expression reading `column` (SQL `column_sql`) as its wire type.
    fn select_expr(&self, column_sql: &str, column: &Column) -> String;

    /// A parameter (`placeholder`) as a value of `column`'s type.
    fn param_expr(&self, placeholder: String, column: &Column) -> String;

    /// `keys > values` in `ORDER BY keys` order, for non-NULL values: `keys` are (column SQL,
    /// column, value). The default is a row-value comparison, `(a, b) > ($1, $2)`.
    fn after(&self, keys: &[(&str, &Column, &Cell)], b: &mut Binder) -> String {
        let cols: Vec<&str> = keys.iter().map(|(sql, _, _)| *sql).collect();
        let params: Vec<String> = keys
            .iter()
            .map(|(_, c, v)| self.param_expr(b.bind((*v).clone()), c))
            .collect();
        if keys.len() == 1 {
            format!("{} > {}", cols[0], params[0])
        } else {
            format!("({}) > ({})", cols.join(", "), params.join(", "))
        }
    }

    /// Whether primary key columns may hold NULL. Only where NULL sorts before every value
    /// (SQLite, whose declared keys allow NULLs): a keyset ending on a NULL then resumes with
    /// `IS NULL` tests ([`null_after`]). Elsewhere a NULL key is refused as a config error.
    fn nulls_in_keys(&self) -> bool {
        false
    }

    /// How messages name a table's own key: SQLite says "declared primary key", since every
    /// rowid table has a key that is no column.
    fn primary_key_term(&self) -> &'static str {
        "primary key"
    }

    /// Whether `check` counts the rows with a NULL cursor, rather than only asking whether
    /// there is one: a count reads every row, cheap in a local file (SQLite), not on a server.
    fn counts_null_cursors(&self) -> bool {
        false
    }

    /// Whether discovery reads each table's columns with its own statement, skipping a table
    /// whose columns cannot be read (SQLite keeps views over dropped tables, and virtual
    /// tables of modules it lacks), rather than all columns with one statement.
    fn columns_per_table(&self) -> bool {
        false
    }
}

/// `keys > values` in `ORDER BY keys` order where NULL sorts before every value and some
/// values are NULL: `(a IS NOT NULL) OR (a IS NULL AND b > ?)`. A row-value comparison would
/// be unknown for every row.
pub(crate) fn null_after(
    dialect: &dyn Dialect,
    keys: &[(&str, &Column, &Cell)],
    b: &mut Binder,
) -> String {
    let mut terms = vec![];
    for (i, &(sql, col, v)) in keys.iter().enumerate() {
        let mut parts = vec![];
        for &(before, before_col, before_v) in &keys[..i] {
            if before_v.is_null() {
                parts.push(format!("{before} IS NULL"));
            } else {
                let p = dialect.param_expr(b.bind(before_v.clone()), before_col);
                parts.push(format!("{before} = {p}"));
            }
        }
        if v.is_null() {
            parts.push(format!("{sql} IS NOT NULL"));
        } else {
            parts.push(format!(
                "{sql} > {}",
                dialect.param_expr(b.bind(v.clone()), col)
            ));
        }
        terms.push(format!("({})", parts.join(" AND ")));
    }
    terms.join(" OR ")
}

/// The lexicographic `keys > values` spelled out, for servers whose optimizer does not use an
/// index for row-value comparisons: `a >= ? AND (a > ? OR (a = ? AND b > ?))`. The leading
/// `a >= ?` lets the optimizer start an index range scan.
pub fn expanded_after(
    dialect: &dyn Dialect,
    keys: &[(&str, &Column, &Cell)],
    b: &mut Binder,
) -> String {
    fn rest(dialect: &dyn Dialect, keys: &[(&str, &Column, &Cell)], b: &mut Binder) -> String {
        let (sql, col, v) = keys[0];
        if keys.len() == 1 {
            return format!("{sql} > {}", dialect.param_expr(b.bind(v.clone()), col));
        }
        let gt = format!("{sql} > {}", dialect.param_expr(b.bind(v.clone()), col));
        let eq = format!("{sql} = {}", dialect.param_expr(b.bind(v.clone()), col));
        format!("({gt} OR ({eq} AND {}))", rest(dialect, &keys[1..], b))
    }
    if keys.len() == 1 {
        return rest(dialect, keys, b);
    }
    let (sql, col, v) = keys[0];
    let ge = format!("{sql} >= {}", dialect.param_expr(b.bind(v.clone()), col));
    format!("{ge} AND {}", rest(dialect, keys, b))
}

/// The record value of a cell. A value the model cannot hold (PostgreSQL `infinity`, MySQL's
/// zero date `0000-00-00`, a date before year 1) becomes `Null`.
pub fn to_value(kind: &Kind, cell: Cell) -> Value {
    match (kind, cell) {
        (_, Cell::Null) | (Kind::Unsupported(_), _) => Value::Null,
        (Kind::Bool, Cell::Bool(b)) => Value::Bool(b),
        (Kind::Bool, Cell::Int(i)) => Value::Bool(i != 0),
        (_, Cell::Int(i)) => Value::Int(i),
        (_, Cell::Float(f)) => Value::Float(f),
        (_, Cell::Bool(b)) => Value::Bool(b),
        (_, Cell::Blob(b)) => Value::Text(hex(&b)),
        (Kind::Any, Cell::Text(s)) => Value::Text(s),
        (Kind::Int | Kind::BigUnsigned, Cell::Text(s)) => match s.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Decimal(s),
        },
        (Kind::Decimal, Cell::Text(s)) => Value::Decimal(s),
        (Kind::Float, Cell::Text(s)) => s.parse().map_or(Value::Null, Value::Float),
        (Kind::Date, Cell::Text(s)) => parse_date(&s).map_or(Value::Null, Value::DateTime),
        (Kind::Timestamp, Cell::Text(s)) => {
            parse_timestamp(&s).map_or(Value::Null, Value::DateTime)
        }
        (Kind::TimestampTz, Cell::Text(s)) => parse_timestamp_tz(&s)
            .or_else(|| parse_timestamp(&s))
            .map_or(Value::Null, Value::DateTime),
        (Kind::Json, Cell::Text(s)) => match serde_json::from_str(&s) {
            Ok(j) => Value::Json(j),
            Err(_) => Value::Text(s),
        },
        (Kind::Bool, Cell::Text(s)) => match s.as_str() {
            "t" | "true" | "1" => Value::Bool(true),
            "f" | "false" | "0" => Value::Bool(false),
            _ => Value::Text(s),
        },
        (Kind::Text, Cell::Text(s)) => Value::Text(s),
    }
}

/// The key under which a BLOB key value is kept in a checkpoint, as lowercase hex (so that it
/// stays distinct from text and is bound back as a BLOB).
const BLOB_HEX: &str = "blob_hex";

/// The value a checkpoint keeps for a key cell: the record value when it binds back to the
/// same server value, else the exact text the server sent. A value of kind `Any` keeps its
/// storage class.
pub(crate) fn to_state(kind: &Kind, cell: &Cell) -> Value {
    match (kind, cell) {
        (_, Cell::Null) => Value::Null,
        (_, Cell::Blob(b)) => Value::Json(serde_json::json!({ BLOB_HEX: hex(b) })),
        // A double survives JSON exactly (`float_roundtrip`) and must bind back as a real.
        (Kind::Any, Cell::Float(f)) => Value::Float(*f),
        // Through JSON a double may come back one unit off; its shortest text does not.
        (_, Cell::Float(f)) => Value::Decimal(f.to_string()),
        (_, Cell::Text(s)) => match to_value(kind, cell.clone()) {
            Value::Null | Value::Json(_) => Value::Text(s.clone()),
            v => v,
        },
        _ => to_value(kind, cell.clone()),
    }
}

/// The parameter a checkpoint value is bound back as; `None` for NULL or a value the kind
/// cannot have. A value of kind `Any` is bound with the storage class it was read with; any
/// other as text, which dialects cast to the column's type.
pub(crate) fn state_cell(kind: &Kind, v: &Value) -> Option<Cell> {
    if *kind == Kind::Any {
        return Some(match v {
            Value::Int(i) => Cell::Int(*i),
            Value::Float(f) => Cell::Float(*f),
            Value::Text(s) => Cell::Text(s.clone()),
            Value::Json(j) => Cell::Blob(unhex(j.get(BLOB_HEX)?.as_str()?)?),
            Value::Null | Value::Bool(_) | Value::Decimal(_) | Value::DateTime(_) => return None,
        });
    }
    state_param(kind, v).map(Cell::Text)
}

/// The text a checkpoint value is bound back as; `None` for NULL.
fn state_param(kind: &Kind, v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(s) | Value::Text(s) => s.clone(),
        Value::DateTime(t) => match kind {
            Kind::Date => t.format("%Y-%m-%d").to_string(),
            Kind::Timestamp => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            k if k.is_time() => t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string(),
            _ => t.to_rfc3339(),
        },
        Value::Json(j) => j.to_string(),
    })
}

fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

fn parse_timestamp_tz(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Decodes a row by the wire type of each column, for any sqlx driver.
pub fn decode_row<R>(row: &R, wires: &[Wire]) -> Result<Vec<Cell>, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    wires
        .iter()
        .enumerate()
        .map(|(i, wire)| {
            Ok(match wire {
                Wire::Int => row
                    .try_get::<Option<i64>, _>(i)?
                    .map_or(Cell::Null, Cell::Int),
                Wire::Float => row
                    .try_get::<Option<f64>, _>(i)?
                    .map_or(Cell::Null, Cell::Float),
                Wire::Bool => row
                    .try_get::<Option<bool>, _>(i)?
                    .map_or(Cell::Null, Cell::Bool),
                Wire::Text => row
                    .try_get::<Option<String>, _>(i)?
                    .map_or(Cell::Null, Cell::Text),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn converts_cells_by_kind() {
        let text = |s: &str| Cell::Text(s.into());
        assert_eq!(
            to_value(&Kind::Decimal, text("19.99")),
            Value::Decimal("19.99".into())
        );
        assert_eq!(
            to_value(&Kind::BigUnsigned, text("18446744073709551615")),
            Value::Decimal("18446744073709551615".into())
        );
        assert_eq!(to_value(&Kind::BigUnsigned, text("42")), Value::Int(42));
        assert_eq!(to_value(&Kind::Bool, Cell::Int(1)), Value::Bool(true));
        let t = Utc.with_ymd_and_hms(2022, 2, 15, 9, 57, 20).unwrap();
        assert_eq!(
            to_value(&Kind::TimestampTz, text("2022-02-15 11:57:20+02")),
            Value::DateTime(t)
        );
        assert_eq!(
            to_value(&Kind::Timestamp, text("2022-02-15 09:57:20.000000")),
            Value::DateTime(t)
        );
        assert_eq!(
            to_value(&Kind::Date, text("2022-02-15")),
            Value::DateTime(Utc.with_ymd_and_hms(2022, 2, 15, 0, 0, 0).unwrap())
        );
        assert_eq!(to_value(&Kind::TimestampTz, text("infinity")), Value::Null);
        assert_eq!(to_value(&Kind::Date, text("0000-00-00")), Value::Null);
        assert_eq!(
            to_value(&Kind::Json, text("[1,\"a\"]")),
            Value::Json(serde_json::json!([1, "a"]))
        );
    }

    #[test]
    fn checkpoints_bind_back_exactly() {
        let micros = Cell::Text("2022-02-15 09:57:20.123456+00".into());
        let state = to_state(&Kind::TimestampTz, &micros);
        assert!(matches!(state, Value::DateTime(_)));
        assert_eq!(
            state_param(&Kind::TimestampTz, &state).unwrap(),
            "2022-02-15 09:57:20.123456+00:00"
        );
        let naive = to_state(&Kind::Timestamp, &Cell::Text("2006-02-14 22:04:36".into()));
        assert_eq!(
            state_param(&Kind::Timestamp, &naive).unwrap(),
            "2006-02-14 22:04:36.000000"
        );
        // Kept as the server wrote it when the model cannot hold it.
        let inf = to_state(&Kind::TimestampTz, &Cell::Text("infinity".into()));
        assert_eq!(inf, Value::Text("infinity".into()));
        assert_eq!(state_param(&Kind::TimestampTz, &inf).unwrap(), "infinity");
        let f = to_state(&Kind::Float, &Cell::Float(0.1));
        assert_eq!(state_param(&Kind::Float, &f).unwrap(), "0.1");
        assert_eq!(
            state_param(&Kind::Int, &to_state(&Kind::Int, &Cell::Int(7))).unwrap(),
            "7"
        );
    }

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0, 1, 0xab, 0xff, 0x10];
        assert_eq!(hex(&bytes), "0001abff10");
        assert_eq!(unhex("0001abff10"), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn any_values_keep_their_storage_class_through_json() {
        for cell in [
            Cell::Int(-5),
            Cell::Int(i64::MAX),
            Cell::Float(0.1),
            Cell::Float(1.0),
            Cell::Text("2024-01-01 10:00:00".into()),
            Cell::Blob(vec![1, 2, 254]),
        ] {
            let json = serde_json::to_string(&to_state(&Kind::Any, &cell)).unwrap();
            let back: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(state_cell(&Kind::Any, &back), Some(cell));
        }
        assert_eq!(to_state(&Kind::Any, &Cell::Null), Value::Null);
        assert_eq!(
            to_value(&Kind::Any, Cell::Blob(vec![0, 0xff])),
            Value::Text("00ff".into())
        );
    }

    #[test]
    fn keysets_ending_on_a_null_resume_with_is_null_tests() {
        struct Sqlite;
        impl Dialect for Sqlite {
            fn placeholders(&self) -> Placeholders {
                Placeholders::Question
            }
            fn tables_sql(&self, _: &[String], _: &mut Binder) -> String {
                String::new()
            }
            fn columns_sql(&self, _: &[String], _: Option<(&str, &str)>, _: &mut Binder) -> String {
                String::new()
            }
            fn classify(&self, _: &str, _: &str) -> (Kind, String) {
                (Kind::Any, String::new())
            }
            fn select_expr(&self, c: &str, _: &Column) -> String {
                c.to_string()
            }
            fn param_expr(&self, placeholder: String, _: &Column) -> String {
                placeholder
            }
        }
        let column = Column::classify(
            RawColumn {
                name: "x".into(),
                display: String::new(),
                class: String::new(),
                nullable: None,
                pk_position: 0,
                auto_increment: false,
            },
            &Sqlite,
        );
        let (null, seven) = (Cell::Null, Cell::Int(7));
        let mut b = Binder::new(Placeholders::Question);
        let keys = [
            ("\"updated_at\"", &column, &null),
            ("\"id\"", &column, &seven),
        ];
        assert_eq!(
            null_after(&Sqlite, &keys, &mut b),
            r#"("updated_at" IS NOT NULL) OR ("updated_at" IS NULL AND "id" > ?)"#
        );
        assert_eq!(b.into_params(), vec![Cell::Int(7)]);
    }
}
