//! Discovery, and configured streams checked against the catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use dossier_connector::{Catalog, ConnectorError, FieldInfo, StreamInfo};

use crate::cell::Cell;
use crate::config::Source;
use crate::dialect::{Column, Kind, RawColumn, Wire};
use crate::error::error;
use crate::sql::{Binder, name_list};
use crate::{Driver, SqlConnector, Stream};

/// The alias of the table or subquery a stream reads, which qualifies every column reference
/// (so `ORDER BY` never picks a select-list expression of the same name).
pub(crate) const ALIAS: &str = "src";

/// How many names an error message lists before "and N more".
const LISTED: usize = 60;

/// A table or view of an allowed schema.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub schema: String,
    pub name: String,
    /// `table`, `view`, `materialized view`, `foreign table`.
    pub kind: String,
}

impl Table {
    /// The name discovery shows and `table =` accepts: bare in the default schema.
    fn stream_name(&self, default_schema: &str) -> String {
        if self.schema == default_schema {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }
}

/// A configured stream, checked against the source.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Every field, the unsupported ones included (so a mapping can be refused by name).
    pub info: StreamInfo,
    /// What the stream reads, for messages: `table "customer"`, `the query`.
    pub what: String,
    /// The table, or the query as a subquery, without its alias.
    pub from: String,
    /// The columns that are read, in batch field order.
    pub columns: Vec<Column>,
    pub fields: Arc<Vec<String>>,
    pub wires: Vec<Wire>,
    /// Each read column as SQL, qualified by [`ALIAS`].
    pub column_sql: Vec<String>,
    /// `SELECT <read columns> FROM <from> AS src`, without `WHERE`.
    pub select: String,
    /// Position (in `columns`) of the cursor.
    pub cursor: Option<usize>,
    /// Whether the cursor may be NULL (unknown counts as may).
    pub cursor_nullable: bool,
    /// Positions of the primary key columns.
    pub pk: Vec<usize>,
    /// Positions of the keyset columns: the cursor, then the primary key columns but it.
    pub key: Vec<usize>,
}

/// Names that say "last updated", compared without `_` and case.
const CURSOR_NAMES: &[&str] = &[
    "updatedat",
    "updated",
    "updatedon",
    "updatetime",
    "updatets",
    "lastupdate",
    "lastupdated",
    "lastupdatedat",
    "lastupdatetime",
    "dateupdated",
    "modified",
    "modifiedat",
    "modifiedon",
    "modifytime",
    "lastmodified",
    "lastmodifiedat",
    "datemodified",
    "lastchanged",
    "changedat",
];

/// Whether a column looks like a last-update time: by name, or a date/time column with
/// "update" or "modif" in its name.
fn looks_like_update_time(name: &str, kind: &Kind) -> bool {
    let number = matches!(kind, Kind::Int | Kind::BigUnsigned | Kind::Decimal);
    names_update_time(name, kind.is_time(), number)
}

/// [`looks_like_update_time`] for a column that may hold a time (`time`) or a number.
fn names_update_time(name: &str, time: bool, number: bool) -> bool {
    let name: String = name
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    ((time || number) && CURSOR_NAMES.contains(&name.as_str()))
        || (time && (name.contains("update") || name.contains("modif")))
}

/// Update-time columns, and a single integer primary key the server fills from a sequence
/// (it grows with inserts, though it does not see updates).
fn cursor_candidates(columns: &[Column], pk: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter(|c| {
            let update_time = match &c.kind {
                // Any value fits; the declared type tells what the values are meant to be.
                Kind::Any => {
                    let declared = c.class.to_ascii_lowercase();
                    let time = declared.contains("time") || declared.contains("date");
                    names_update_time(&c.name, time, true)
                }
                kind => looks_like_update_time(&c.name, kind),
            };
            update_time
                || (pk.len() == 1
                    && pk[0] == c.name
                    && c.auto_increment
                    && matches!(c.kind, Kind::Int | Kind::BigUnsigned | Kind::Any))
        })
        .map(|c| c.name.clone())
        .collect()
}

fn field_infos(columns: &[Column]) -> Vec<FieldInfo> {
    columns
        .iter()
        .map(|c| FieldInfo {
            name: c.name.clone(),
            source_type: c.source_type(),
            unsupported: match &c.kind {
                Kind::Unsupported(why) => Some(why.clone()),
                _ => None,
            },
        })
        .collect()
}

/// The column called `name`: exact, else the only one equal ignoring ASCII case.
fn find_column(columns: &[Column], name: &str) -> Option<usize> {
    columns.iter().position(|c| c.name == name).or_else(|| {
        let mut found = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name.eq_ignore_ascii_case(name));
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    })
}

fn quoted_names(columns: &[Column]) -> String {
    let names: Vec<String> = columns.iter().map(|c| format!("{:?}", c.name)).collect();
    name_list(names.iter().map(String::as_str), LISTED)
}

const TABLE_WIRES: [Wire; 3] = [Wire::Text; 3];
const COLUMN_WIRES: [Wire; 9] = [
    Wire::Text,
    Wire::Text,
    Wire::Text,
    Wire::Int,
    Wire::Text,
    Wire::Text,
    Wire::Int,
    Wire::Int,
    Wire::Int,
];

fn text(cell: &Cell) -> String {
    cell.as_text().unwrap_or_default().to_string()
}

impl<D: Driver> SqlConnector<D> {
    fn default_schema(&self) -> &str {
        self.schemas.first().map(String::as_str).unwrap_or_default()
    }

    fn catalog_error(&self, e: crate::DbError) -> ConnectorError {
        error(
            format!("cannot read the catalog of {}", self.driver.target()),
            e,
            true,
        )
    }

    /// The tables and views of the allowed schemas.
    pub(crate) async fn tables(&self) -> Result<Vec<Table>, ConnectorError> {
        let d = self.driver.dialect();
        let mut b = Binder::new(d.placeholders());
        let sql = d.tables_sql(&self.schemas, &mut b);
        let rows = self
            .driver
            .fetch(sql, b.into_params(), &TABLE_WIRES)
            .await
            .map_err(|e| self.catalog_error(e))?;
        Ok(rows
            .iter()
            .map(|r| Table {
                schema: text(&r[0]),
                name: text(&r[1]),
                kind: text(&r[2]),
            })
            .collect())
    }

    /// The columns of the allowed schemas' tables (or of one), by (schema, table), in order.
    async fn columns(
        &self,
        table: Option<&Table>,
    ) -> Result<BTreeMap<(String, String), Vec<Column>>, ConnectorError> {
        let d = self.driver.dialect();
        let mut b = Binder::new(d.placeholders());
        let sql = d.columns_sql(
            &self.schemas,
            table.map(|t| (t.schema.as_str(), t.name.as_str())),
            &mut b,
        );
        let rows = self
            .driver
            .fetch(sql, b.into_params(), &COLUMN_WIRES)
            .await
            .map_err(|e| self.catalog_error(e))?;
        let mut out: BTreeMap<(String, String), Vec<Column>> = BTreeMap::new();
        for r in &rows {
            let raw = RawColumn {
                name: text(&r[2]),
                display: text(&r[4]),
                class: text(&r[5]),
                nullable: r[6].as_int().map(|n| n != 0),
                pk_position: r[7].as_int().unwrap_or(0),
                auto_increment: r[8].as_int().unwrap_or(0) != 0,
            };
            out.entry((text(&r[0]), text(&r[1])))
                .or_default()
                .push(Column::classify(raw, d));
        }
        Ok(out)
    }

    pub(crate) async fn discover_streams(&self) -> Result<Catalog, ConnectorError> {
        let mut tables = self.tables().await?;
        let mut columns = if self.driver.dialect().columns_per_table() {
            let mut all = BTreeMap::new();
            let mut readable = vec![];
            for t in tables {
                match self.columns(Some(&t)).await {
                    Ok(c) => {
                        all.extend(c);
                        readable.push(t);
                    }
                    Err(e) => tracing::warn!(
                        table = %t.name,
                        error = %e,
                        "skipping a table whose columns cannot be read"
                    ),
                }
            }
            tables = readable;
            all
        } else {
            self.columns(None).await?
        };
        let default = self.default_schema();
        let streams = tables
            .iter()
            .map(|t| {
                let cols = columns
                    .remove(&(t.schema.clone(), t.name.clone()))
                    .unwrap_or_default();
                let pk = table_pk(&cols);
                StreamInfo {
                    name: t.stream_name(default),
                    fields: field_infos(&cols),
                    cursor_candidates: cursor_candidates(&cols, &pk),
                    primary_key: pk,
                    sampled: false,
                }
            })
            .collect();
        Ok(Catalog { streams })
    }

    /// The table `wanted` names: `name` in the allowed schemas in order, or `schema.name`;
    /// exact, else the only one equal ignoring ASCII case.
    fn find_table<'t>(
        &self,
        at: &str,
        tables: &'t [Table],
        wanted: &str,
    ) -> Result<&'t Table, ConnectorError> {
        let matches = |eq: &dyn Fn(&str, &str) -> bool| -> Vec<&'t Table> {
            let mut found: Vec<&Table> = self
                .schemas
                .iter()
                .flat_map(|s| {
                    tables
                        .iter()
                        .filter(move |t| &t.schema == s && eq(&t.name, wanted))
                })
                .collect();
            if let Some((schema, name)) = wanted.split_once('.') {
                found.extend(
                    tables
                        .iter()
                        .filter(|t| eq(&t.schema, schema) && eq(&t.name, name)),
                );
            }
            found
        };
        if let Some(t) = matches(&|a, b| a == b).first() {
            return Ok(t);
        }
        let loose = matches(&|a, b| a.eq_ignore_ascii_case(b));
        if let [t] = loose.as_slice() {
            return Ok(t);
        }
        let schemas = self.schemas.join(", ");
        if let Some((schema, _)) = wanted.split_once('.')
            && !self.schemas.iter().any(|s| s == schema)
        {
            return Err(ConnectorError::config(format!(
                "{at}: schema {schema:?} is not one the source reads (`schemas`: {schemas}); \
                 add it to `schemas` to read {wanted:?}"
            )));
        }
        let default = self.default_schema();
        let have = if tables.is_empty() {
            "it has no tables or views there".to_string()
        } else {
            let names: Vec<String> = tables.iter().map(|t| t.stream_name(default)).collect();
            format!(
                "it has: {}",
                name_list(names.iter().map(String::as_str), LISTED)
            )
        };
        Err(ConnectorError::config(format!(
            "{at}: no table or view {wanted:?} in schema(s) {schemas} of {}; {have}",
            self.driver.target()
        )))
    }

    /// Checks a configured stream against the source: the table or query, the cursor and the
    /// primary key columns; plans how it is read.
    pub(crate) async fn resolve(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<Plan, ConnectorError> {
        let at = format!("stream {name:?}");
        let d = self.driver.dialect();
        let source = stream
            .source()
            .map_err(|m| ConnectorError::config(format!("{at}: {m}")))?;
        let (columns, from, what) = match source {
            Source::Table(wanted) => {
                let tables = self.tables().await?;
                let table = self.find_table(&at, &tables, wanted)?;
                let columns = self
                    .columns(Some(table))
                    .await?
                    .remove(&(table.schema.clone(), table.name.clone()))
                    .unwrap_or_default();
                let from = format!("{}.{}", d.quote(&table.schema), d.quote(&table.name));
                let what = format!(
                    "{} {:?}",
                    table.kind,
                    table.stream_name(self.default_schema())
                );
                (columns, from, what)
            }
            Source::Query(query) => {
                // The newline ends a trailing `--` comment of the query.
                let from = format!("(\n{query}\n)");
                let raw = self
                    .driver
                    .describe(format!("SELECT * FROM {from} AS {}", d.quote(ALIAS)))
                    .await
                    .map_err(|e| error(format!("{at}: the query is not valid"), e, true))?;
                let columns: Vec<Column> =
                    raw.into_iter().map(|r| Column::classify(r, d)).collect();
                for (i, c) in columns.iter().enumerate() {
                    if columns[..i].iter().any(|o| o.name == c.name) {
                        return Err(ConnectorError::config(format!(
                            "{at}: the query returns two columns named {:?}; give them \
                             distinct names with AS",
                            c.name
                        )));
                    }
                }
                (columns, from, "the query".to_string())
            }
        };
        if columns.is_empty() {
            return Err(ConnectorError::config(format!(
                "{at}: {what} has no columns"
            )));
        }

        let usable = |role: &str, i: usize| -> Result<usize, ConnectorError> {
            let c = &columns[i];
            match &c.kind {
                Kind::Unsupported(why) => Err(ConnectorError::config(format!(
                    "{at}: {role} column {:?} has type {}, which is not read: {why}",
                    c.name, c.display
                ))),
                k if !k.is_orderable() => Err(ConnectorError::config(format!(
                    "{at}: {role} column {:?} has type {}, whose values cannot be ordered; \
                     choose another column",
                    c.name, c.display
                ))),
                _ => Ok(i),
            }
        };

        let cursor = match &stream.cursor {
            None => None,
            Some(c) => {
                let i = find_column(&columns, c).ok_or_else(|| {
                    ConnectorError::config(format!(
                        "{at}: cursor column {c:?} is not a column of {what}; its columns are: {}",
                        quoted_names(&columns)
                    ))
                })?;
                Some(usable("cursor", i)?)
            }
        };

        let declared = table_pk(&columns);
        let pk: Vec<usize> = match &stream.primary_key {
            Some(pk) => {
                let missing: Vec<String> = pk
                    .iter()
                    .filter(|c| find_column(&columns, c).is_none())
                    .map(|c| format!("{c:?}"))
                    .collect();
                if !missing.is_empty() {
                    return Err(ConnectorError::config(format!(
                        "{at}: {} of {what}; its columns are: {}",
                        if missing.len() == 1 {
                            format!("primary key column {} is not a column", missing[0])
                        } else {
                            format!("primary key columns {} are not columns", missing.join(", "))
                        },
                        quoted_names(&columns)
                    )));
                }
                let pk: Vec<usize> = pk.iter().filter_map(|c| find_column(&columns, c)).collect();
                if let Some(n) = (0..pk.len()).find(|&n| pk[..n].contains(&pk[n])) {
                    return Err(ConnectorError::config(format!(
                        "{at}: `primary_key` names column {:?} twice",
                        columns[pk[n]].name
                    )));
                }
                pk
            }
            None if matches!(source, Source::Query(_)) => {
                return Err(ConnectorError::config(format!(
                    "{at}: a query stream needs `primary_key`, the columns that identify a row \
                     (batches are read in primary key order{})",
                    if cursor.is_some() {
                        ", after the cursor"
                    } else {
                        ""
                    }
                )));
            }
            None if declared.is_empty() => {
                return Err(ConnectorError::config(format!(
                    "{at}: {what} has no {}; set `primary_key` to the columns that identify a \
                     row",
                    d.primary_key_term()
                )));
            }
            None => declared
                .iter()
                .filter_map(|c| find_column(&columns, c))
                .collect(),
        };
        for &i in &pk {
            usable("primary key", i)?;
        }

        let pk_names: Vec<String> = pk.iter().map(|&i| columns[i].name.clone()).collect();
        let info = StreamInfo {
            name: name.to_string(),
            fields: field_infos(&columns),
            cursor_candidates: cursor_candidates(&columns, &declared),
            primary_key: pk_names,
            sampled: false,
        };

        // Only supported columns are read; positions move to the read list.
        let read: Vec<usize> = (0..columns.len())
            .filter(|&i| columns[i].kind.is_supported())
            .collect();
        let moved = |i: usize| {
            read.iter()
                .position(|&r| r == i)
                .expect("orderable is read")
        };
        let cursor_nullable = cursor.is_some_and(|i| columns[i].nullable != Some(false));
        let cursor = cursor.map(moved);
        let pk: Vec<usize> = pk.into_iter().map(moved).collect();
        let mut key: Vec<usize> = cursor.into_iter().collect();
        key.extend(pk.iter().copied().filter(|i| Some(*i) != cursor));

        let columns: Vec<Column> = read.into_iter().map(|i| columns[i].clone()).collect();
        let alias = d.quote(ALIAS);
        let column_sql: Vec<String> = columns
            .iter()
            .map(|c| format!("{alias}.{}", d.quote(&c.name)))
            .collect();
        let exprs: Vec<String> = columns
            .iter()
            .zip(&column_sql)
            .map(|(c, sql)| format!("{} AS {}", d.select_expr(sql, c), d.quote(&c.name)))
            .collect();
        let select = format!("SELECT {} FROM {from} AS {alias}", exprs.join(", "));
        Ok(Plan {
            info,
            what,
            from,
            fields: Arc::new(columns.iter().map(|c| c.name.clone()).collect()),
            wires: columns.iter().map(|c| d.wire(&c.kind)).collect(),
            columns,
            column_sql,
            select,
            cursor,
            cursor_nullable,
            pk,
            key,
        })
    }

    /// Whether a stream can be read: it resolves and a `LIMIT 0` read of it runs. `Ok` holds
    /// warnings (rows with a NULL cursor).
    pub(crate) async fn check_stream(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<Vec<String>, ConnectorError> {
        let at = format!("stream {name:?}");
        let plan = self.resolve(name, stream).await?;
        self.driver
            .fetch(format!("{} LIMIT 0", plan.select), vec![], &plan.wires)
            .await
            .map_err(|e| {
                error(
                    format!(
                        "{at}: cannot read {} on {}",
                        plan.what,
                        self.driver.target()
                    ),
                    e,
                    true,
                )
            })?;
        let mut warnings = vec![];
        if let Some(c) = plan.cursor
            && plan.cursor_nullable
        {
            let d = self.driver.dialect();
            let count = d.counts_null_cursors();
            let sql = format!(
                "SELECT {} FROM {} AS {} WHERE {} IS NULL{}",
                if count { "count(*)" } else { "1" },
                plan.from,
                d.quote(ALIAS),
                plan.column_sql[c],
                if count { "" } else { " LIMIT 1" }
            );
            // Only a count is decoded: `1` is a 4-byte integer on PostgreSQL.
            let wires: &[Wire] = if count { &[Wire::Int] } else { &[] };
            let rows = self
                .driver
                .fetch(sql, vec![], wires)
                .await
                .map_err(|e| error(format!("{at}: cannot read {}", plan.what), e, true))?;
            let column = &plan.columns[c].name;
            let later = "read only by a full read (the first read, or a read after the \
                         stream's state is reset)";
            let nulls = match rows.first() {
                None => 0,
                Some(row) if count => row.first().and_then(Cell::as_int).unwrap_or_default(),
                Some(_) => {
                    warnings.push(format!(
                        "some rows have a NULL cursor {column:?}; they are {later}"
                    ));
                    0
                }
            };
            match nulls {
                0 => {}
                1 => warnings.push(format!("1 row has a NULL cursor {column:?}; it is {later}")),
                n => warnings.push(format!(
                    "{n} rows have a NULL cursor {column:?}; they are {later}"
                )),
            }
        }
        Ok(warnings)
    }
}

/// The declared primary key, in key order.
fn table_pk(columns: &[Column]) -> Vec<String> {
    let mut pk: Vec<&Column> = columns.iter().filter(|c| c.pk_position > 0).collect();
    pk.sort_by_key(|c| c.pk_position);
    pk.iter().map(|c| c.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_time_names() {
        for (name, kind) in [
            ("updated_at", Kind::TimestampTz),
            ("last_update", Kind::Timestamp),
            ("LastModified", Kind::Int),
            ("row_updated_ts", Kind::Timestamp),
            ("date_modif", Kind::Date),
        ] {
            assert!(looks_like_update_time(name, &kind), "{name}");
        }
        for (name, kind) in [
            ("created_at", Kind::TimestampTz),
            ("row_updated_ts", Kind::Text),
            ("updated", Kind::Bool),
        ] {
            assert!(!looks_like_update_time(name, &kind), "{name}");
        }
    }
}
