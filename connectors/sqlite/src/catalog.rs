//! Discovery, and configured streams checked against the file's schema.

use dossier_connector::{Catalog, ConnectorError, FieldInfo, StreamInfo};
use sqlx::{
    AssertSqlSafe, Column as _, Executor as _, SqlSafeStr as _, Statement as _, TypeInfo as _,
};

use crate::sql::{self, quote};
use crate::{Source, SqliteConnector, Stream};

/// A table or view of the file.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub name: String,
    /// `table`, `view` or `virtual`.
    pub kind: String,
    pub without_rowid: bool,
}

impl Table {
    fn describe(&self) -> String {
        let kind = if self.kind == "view" { "view" } else { "table" };
        format!("{kind} {:?}", self.name)
    }
}

/// A column as `pragma_table_xinfo` describes it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    declared: String,
    /// Position in the primary key, from 1; 0 when not part of it.
    pk: i64,
}

/// A configured stream, checked against the file.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub info: StreamInfo,
    /// What `FROM` reads: a quoted table name, or the query as a subquery.
    pub from: String,
    /// `SELECT <fields> FROM <from>`, without `WHERE`.
    pub select: String,
    /// Position of the cursor field.
    pub cursor: Option<usize>,
    /// Positions of the primary key fields.
    pub pk: Vec<usize>,
    /// Positions of the keyset fields: the cursor, then the primary key fields but the cursor.
    pub key: Vec<usize>,
    /// The keyset fields, quoted.
    pub key_sql: Vec<String>,
}

impl Resolved {
    pub fn field(&self, i: usize) -> &str {
        &self.info.fields[i].name
    }
}

/// Names that say "last updated".
const CURSOR_NAMES: &[&str] = &[
    "updatedat",
    "updated",
    "updatedon",
    "updatetime",
    "lastupdated",
    "lastupdatedat",
    "dateupdated",
    "modified",
    "modifiedat",
    "modifiedon",
    "lastmodified",
    "lastmodifiedat",
    "datemodified",
];

/// Whether a column looks like a last-update timestamp: by name, or by a date/time declared
/// type and "update" or "modif" in the name.
fn looks_like_update_time(name: &str, declared: &str) -> bool {
    let name: String = name
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    if CURSOR_NAMES.contains(&name.as_str()) {
        return true;
    }
    let declared = declared.to_ascii_lowercase();
    (declared.contains("time") || declared.contains("date"))
        && (name.contains("update") || name.contains("modif"))
}

fn source_type(declared: &str) -> String {
    if declared.is_empty() {
        "ANY".to_string()
    } else {
        declared.to_string()
    }
}

/// A table's stream: every column is mappable, since SQLite values are dynamically typed.
///
/// Cursor candidates are the columns that look like update timestamps and, in a rowid table,
/// an `INTEGER PRIMARY KEY` (an alias of the rowid, which grows with inserts but does not see
/// updates; without `AUTOINCREMENT` the id of a deleted last row can be reused).
fn table_stream(name: &str, table: &Table, columns: &[Column]) -> StreamInfo {
    let mut pk: Vec<&Column> = columns.iter().filter(|c| c.pk > 0).collect();
    pk.sort_by_key(|c| c.pk);
    let rowid_alias = match pk.as_slice() {
        [c] if table.kind == "table"
            && !table.without_rowid
            && c.declared.eq_ignore_ascii_case("integer") =>
        {
            Some(c.name.as_str())
        }
        _ => None,
    };
    StreamInfo {
        name: name.to_string(),
        fields: columns
            .iter()
            .map(|c| FieldInfo {
                name: c.name.clone(),
                source_type: source_type(&c.declared),
                unsupported: None,
            })
            .collect(),
        primary_key: pk.iter().map(|c| c.name.clone()).collect(),
        cursor_candidates: columns
            .iter()
            .filter(|c| {
                looks_like_update_time(&c.name, &c.declared) || rowid_alias == Some(&c.name)
            })
            .map(|c| c.name.clone())
            .collect(),
    }
}

/// The field called `name`: exact, else ASCII case-insensitive as SQLite resolves names.
fn find_field(fields: &[FieldInfo], name: &str) -> Option<usize> {
    fields.iter().position(|f| f.name == name).or_else(|| {
        fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
    })
}

fn names(fields: &[FieldInfo]) -> String {
    fields
        .iter()
        .map(|f| format!("{:?}", f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqliteConnector {
    /// The tables and views of the `main` schema, without SQLite's own and shadow tables.
    pub(crate) async fn tables(&self) -> Result<Vec<Table>, ConnectorError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            r"SELECT name, type, wr FROM pragma_table_list
              WHERE schema = 'main' AND type IN ('table', 'view', 'virtual')
                AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
              ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::error("cannot list the tables", e, false))?;
        Ok(rows
            .into_iter()
            .map(|(name, kind, wr)| Table {
                name,
                kind,
                without_rowid: wr != 0,
            })
            .collect())
    }

    /// The columns `SELECT *` returns, in order (generated columns included, hidden columns of
    /// virtual tables not).
    async fn columns(&self, table: &str) -> Result<Vec<Column>, sqlx::Error> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT name, type, pk FROM pragma_table_xinfo(?) \
             WHERE hidden IN (0, 2, 3) ORDER BY cid",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, declared, pk)| Column { name, declared, pk })
            .collect())
    }

    pub(crate) async fn discover_streams(&self) -> Result<Catalog, ConnectorError> {
        let mut streams = vec![];
        for table in self.tables().await? {
            match self.columns(&table.name).await {
                Ok(columns) => streams.push(table_stream(&table.name, &table, &columns)),
                // A view over a dropped table, a virtual table of a module we lack.
                Err(e) => tracing::warn!(
                    table = %table.name,
                    error = %e,
                    "sqlite: skipping a table whose columns cannot be read"
                ),
            }
        }
        Ok(Catalog { streams })
    }

    /// Checks a configured stream against the file: the table or query, the cursor and
    /// primary key columns.
    pub(crate) async fn resolve(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<Resolved, ConnectorError> {
        let at = format!("stream {name:?}");
        let source = stream
            .source()
            .map_err(|m| ConnectorError::config(format!("{at}: {m}")))?;
        let (info, from, select, what) = match source {
            Source::Table(wanted) => {
                let tables = self.tables().await?;
                let table = tables
                    .iter()
                    .find(|t| t.name == wanted)
                    .or_else(|| tables.iter().find(|t| t.name.eq_ignore_ascii_case(wanted)))
                    .ok_or_else(|| {
                        let have = if tables.is_empty() {
                            "it has no tables or views".to_string()
                        } else {
                            let list: Vec<_> = tables.iter().map(|t| t.name.as_str()).collect();
                            format!("it has: {}", list.join(", "))
                        };
                        ConnectorError::config(format!(
                            "{at}: no table or view {wanted:?} in {}; {have}",
                            self.path.display()
                        ))
                    })?;
                let columns = self.columns(&table.name).await.map_err(|e| {
                    sql::error(
                        format!("{at}: cannot read the columns of {}", table.describe()),
                        e,
                        true,
                    )
                })?;
                let info = table_stream(name, table, &columns);
                let from = quote(&table.name);
                let list: Vec<_> = columns.iter().map(|c| quote(&c.name)).collect();
                let select = format!("SELECT {} FROM {from}", list.join(", "));
                (info, from, select, table.describe())
            }
            Source::Query(query) => {
                // The newline ends a trailing `--` comment of the query.
                let from = format!("(\n{query}\n) AS \"src\"");
                let select = format!("SELECT * FROM {from}");
                let info = self.describe_query(&at, name, &select).await?;
                (info, from, select, "the query".to_string())
            }
        };

        let cursor = match &stream.cursor {
            None => None,
            Some(c) => Some(find_field(&info.fields, c).ok_or_else(|| {
                ConnectorError::config(format!(
                    "{at}: cursor column {c:?} is not a column of {what}; its columns are: {}",
                    names(&info.fields)
                ))
            })?),
        };

        let pk = match &stream.primary_key {
            Some(pk) => {
                let (found, missing): (Vec<_>, Vec<_>) = pk
                    .iter()
                    .map(|c| (c, find_field(&info.fields, c)))
                    .partition(|(_, i)| i.is_some());
                if !missing.is_empty() {
                    let missing: Vec<_> = missing.iter().map(|(c, _)| format!("{c:?}")).collect();
                    return Err(ConnectorError::config(format!(
                        "{at}: {} of {what}; its columns are: {}",
                        if missing.len() == 1 {
                            format!("primary key column {} is not a column", missing[0])
                        } else {
                            format!("primary key columns {} are not columns", missing.join(", "))
                        },
                        names(&info.fields)
                    )));
                }
                let pk: Vec<usize> = found.into_iter().filter_map(|(_, i)| i).collect();
                if let Some(dup) = pk.iter().enumerate().find(|(n, i)| pk[..*n].contains(i)) {
                    return Err(ConnectorError::config(format!(
                        "{at}: `primary_key` names column {:?} twice",
                        info.fields[*dup.1].name
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
            None if info.primary_key.is_empty() => {
                return Err(ConnectorError::config(format!(
                    "{at}: {what} has no declared primary key; set `primary_key` to the columns \
                     that identify a row"
                )));
            }
            None => info
                .primary_key
                .iter()
                .filter_map(|c| find_field(&info.fields, c))
                .collect(),
        };

        let mut key: Vec<usize> = cursor.into_iter().collect();
        key.extend(pk.iter().copied().filter(|i| Some(*i) != cursor));
        let key_sql = key.iter().map(|&i| quote(&info.fields[i].name)).collect();
        let mut info = info;
        info.primary_key = pk.iter().map(|&i| info.fields[i].name.clone()).collect();
        Ok(Resolved {
            info,
            from,
            select,
            cursor,
            pk,
            key,
            key_sql,
        })
    }

    /// The fields of a query, from its prepared statement (nothing is run). SQLite names the
    /// columns of a subquery uniquely: a second `id` is called `id:1`.
    async fn describe_query(
        &self,
        at: &str,
        name: &str,
        select: &str,
    ) -> Result<StreamInfo, ConnectorError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| sql::error(format!("{at}: cannot open the database"), e, false))?;
        let statement = (&mut *conn)
            .prepare(AssertSqlSafe(select.to_string()).into_sql_str())
            .await
            .map_err(|e| sql::error(format!("{at}: the query is not valid"), e, true))?;
        if let Some(n) = statement
            .parameters()
            .and_then(|p| p.right())
            .filter(|&n| n > 0)
        {
            return Err(ConnectorError::config(format!(
                "{at}: the query has {n} parameter(s) (`?`, `:name`); write the values into it"
            )));
        }
        let mut fields: Vec<FieldInfo> = vec![];
        for column in statement.columns() {
            // The declared type of a column the query takes from a table (as SQLx reads it),
            // else the type of the first value, which is unknown before a row is read.
            let ty = column.type_info().name();
            fields.push(FieldInfo {
                name: column.name().to_string(),
                source_type: if ty == "NULL" { "ANY" } else { ty }.to_string(),
                unsupported: None,
            });
        }
        let cursor_candidates = fields
            .iter()
            .filter(|f| looks_like_update_time(&f.name, &f.source_type))
            .map(|f| f.name.clone())
            .collect();
        Ok(StreamInfo {
            name: name.to_string(),
            fields,
            primary_key: vec![],
            cursor_candidates,
        })
    }

    /// Whether a stream can be read; `Ok` holds warnings (rows with a NULL cursor).
    pub(crate) async fn check_stream(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<Vec<String>, ConnectorError> {
        let resolved = self.resolve(name, stream).await?;
        self.fetch_page(name, &resolved, None, 1).await?;
        let mut warnings = vec![];
        if let Some(c) = resolved.cursor {
            let column = resolved.field(c);
            let nulls: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM {} WHERE {} IS NULL",
                resolved.from,
                quote(column)
            )))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                sql::error(
                    format!("stream {name:?}: cannot count NULL cursors"),
                    e,
                    false,
                )
            })?;
            if nulls > 0 {
                warnings.push(format!(
                    "{nulls} {} a NULL cursor {column:?}; {} read only by a full read (the \
                     first read, or a read after the stream's state is reset)",
                    if nulls == 1 { "row has" } else { "rows have" },
                    if nulls == 1 { "it is" } else { "they are" },
                ));
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_time_names() {
        for (name, ty) in [
            ("updated_at", "TEXT"),
            ("UpdatedAt", ""),
            ("last_modified", "INTEGER"),
            ("modified", ""),
            ("updated", "DATETIME"),
            ("row_updated_ts", "TIMESTAMP"),
            ("date_modif", "DATE"),
        ] {
            assert!(looks_like_update_time(name, ty), "{name} {ty}");
        }
        for (name, ty) in [
            ("created_at", "DATETIME"),
            ("row_updated_ts", "TEXT"),
            ("email", "TEXT"),
        ] {
            assert!(!looks_like_update_time(name, ty), "{name} {ty}");
        }
    }
}
