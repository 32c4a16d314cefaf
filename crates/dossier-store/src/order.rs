//! Ordered lists: contacts by any field a filter can compare, and the workspace's sessions
//! by their start time or data, as keyset pages. A page ends at a [`Position`] (the sort
//! values of its last row and its id), and the next page starts strictly after it, so a
//! cursor stays valid however many rows come and go before it. Nulls sort last in either
//! direction and ties fall back to the id.

use std::collections::HashMap;

use dossier_core::{DataValue, Filter, FilterField};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::columns::{ContactFields, FieldSql, SessionField, session_field, text};
use crate::filter_sql::{Bind, SqlBuilder, bind_all, session_filter_fields};
use crate::read::{CONTACT_COLS, contact, session, session_cols};
use crate::{ContactRow, Page, Result, SessionRow, SqlStore, StoreError};

/// One key of an ordering: a field, and whether it sorts from the largest value.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy<F> {
    pub field: F,
    pub descending: bool,
}

/// A value of one sort column at a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortValue {
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "f")]
    Float(f64),
    #[serde(rename = "t")]
    Text(String),
}

/// Where a row stands in an ordered list: the values of its sort columns, then its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub keys: Vec<Option<SortValue>>,
    pub id: i64,
}

/// A row of an ordered page with its position (its cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct Placed<T> {
    pub row: T,
    pub position: Position,
}

/// What a root `sessions` list reads.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery<'a> {
    /// Only sessions of this kind.
    pub kind: Option<&'a str>,
    /// Only sessions of this source.
    pub source: Option<&'a str>,
    /// Only sessions started at or after this time (epoch microseconds).
    pub from: Option<i64>,
    /// Only sessions started before this time (epoch microseconds).
    pub to: Option<i64>,
    /// Only sessions whose data matches (fields `data.<key>` only).
    pub filter: Option<&'a Filter>,
    /// The ordering; none: newest first.
    pub order: &'a [OrderBy<SessionField>],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Float,
    Text,
}

/// A sort column: an SQL expression, its type and direction.
struct SortCol {
    expr: String,
    kind: Kind,
    descending: bool,
}

/// The sort columns of a field: a custom value sorts by its number, then its string.
fn sort_cols(field: FieldSql, descending: bool) -> Vec<SortCol> {
    let col = |expr, kind| SortCol {
        expr,
        kind,
        descending,
    };
    match field {
        FieldSql::Text(e) => vec![col(e, Kind::Text)],
        FieldSql::Time(e) => vec![col(e, Kind::Int)],
        FieldSql::Custom { num, txt, .. } => vec![col(num, Kind::Float), col(txt, Kind::Text)],
    }
}

/// `expr AS k0, ...` for the select list.
fn select_keys(cols: &[SortCol]) -> String {
    cols.iter()
        .enumerate()
        .map(|(i, c)| format!(", {} AS k{i}", c.expr))
        .collect()
}

fn order_sql(cols: &[SortCol], id: &str) -> String {
    let mut parts: Vec<String> = cols
        .iter()
        .map(|c| {
            let dir = if c.descending { "DESC" } else { "ASC" };
            format!("{} {dir} NULLS LAST", c.expr)
        })
        .collect();
    parts.push(format!("{id} ASC"));
    parts.join(", ")
}

/// Rows strictly after `pos`: greater on the first column where they differ (a null is
/// greater than any value, as nulls sort last), or equal on every column and a greater id.
fn after_sql(b: &mut SqlBuilder, cols: &[SortCol], pos: &Position, id: &str) -> Result<String> {
    let foreign = || StoreError::Refused("the cursor belongs to another ordering".into());
    if pos.keys.len() != cols.len() {
        return Err(foreign());
    }
    let mut ors = vec![];
    let mut equal: Vec<String> = vec![];
    for (c, v) in cols.iter().zip(&pos.keys) {
        let Some(v) = v else {
            // Nothing sorts after a null but other nulls.
            equal.push(format!("{} IS NULL", c.expr));
            continue;
        };
        let p = match (c.kind, v) {
            (Kind::Int, SortValue::Int(i)) => b.param(Bind::Int(*i)),
            (Kind::Float, SortValue::Float(f)) => {
                format!("CAST({} AS DOUBLE PRECISION)", b.param(Bind::Float(*f)))
            }
            (Kind::Text, SortValue::Text(t)) => b.param(Bind::Text(t.clone())),
            _ => return Err(foreign()),
        };
        let cmp = if c.descending { "<" } else { ">" };
        let mut gt = equal.clone();
        gt.push(format!("({e} {cmp} {p} OR {e} IS NULL)", e = c.expr));
        ors.push(format!("({})", gt.join(" AND ")));
        equal.push(format!("{} = {p}", c.expr));
    }
    equal.push(format!("{id} > {}", b.param(Bind::Int(pos.id))));
    ors.push(format!("({})", equal.join(" AND ")));
    Ok(format!("({})", ors.join(" OR ")))
}

fn position(r: &AnyRow, cols: &[SortCol], id: i64) -> Result<Position> {
    let keys = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let k = format!("k{i}");
            Ok(match c.kind {
                Kind::Int => r.try_get::<Option<i64>, _>(k.as_str())?.map(SortValue::Int),
                Kind::Float => r
                    .try_get::<Option<f64>, _>(k.as_str())?
                    .map(SortValue::Float),
                Kind::Text => r
                    .try_get::<Option<String>, _>(k.as_str())?
                    .map(SortValue::Text),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Position { keys, id })
}

/// The aggregates an ordering or grouping reads, as a filter naming them: what the
/// store's empty-aggregate lookup takes.
pub(crate) fn naming<'f>(fields: impl IntoIterator<Item = &'f FilterField>) -> Filter {
    Filter::And(fields.into_iter().cloned().map(Filter::Exists).collect())
}

impl SqlStore {
    /// The page `sql` reads (`first` rows and one more to tell whether more follow), each row
    /// with its id (from `read`) and its position in the ordering `cols`.
    async fn placed<T>(
        &self,
        sql: &str,
        binds: &[Bind],
        cols: &[SortCol],
        first: usize,
        read: fn(&AnyRow) -> Result<(i64, T)>,
    ) -> Result<Page<Placed<T>>> {
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql.to_string())), binds)
            .fetch_all(&self.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| {
                let (id, row) = read(r)?;
                let position = position(r, cols, id)?;
                Ok(Placed { row, position })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::cut(items, first))
    }

    /// Contacts matching `filter` in the `order` given (ties by id), after `after`.
    pub async fn contacts_ordered(
        &self,
        ws: &str,
        filter: Option<&Filter>,
        order: &[OrderBy<FilterField>],
        first: usize,
        after: Option<&Position>,
    ) -> Result<Page<Placed<ContactRow>>> {
        let sqlite = self.backend == crate::Backend::Sqlite;
        let names = naming(order.iter().map(|o| &o.field));
        let empty_sort = self.empty_aggregates(ws, Some(&names)).await?;
        // What the filter's aggregates read as on a contact without them: once, for the head
        // of the ordering and for the whole ordering alike.
        let empty_filter = self.empty_aggregates(ws, filter).await?;
        if let [
            OrderBy {
                field: FilterField::Agg(name),
                descending,
            },
        ] = order
        {
            let empty = empty_sort
                .get(name.as_str())
                .and_then(|v| v.as_sort_number());
            let top = self
                .top_by_aggregate(
                    ws,
                    (filter, empty_filter.clone()),
                    name.as_str(),
                    *descending,
                    empty,
                    first,
                    after,
                )
                .await?;
            if top.has_next {
                return Ok(top);
            }
        }
        let mut b = SqlBuilder::new(0).with_empty_aggregates(empty_filter);
        let ws_p = b.param(Bind::Text(ws.into()));
        let mut fields = ContactFields::new(&empty_sort, sqlite);
        let mut cols = vec![];
        for o in order {
            cols.extend(sort_cols(fields.field(&mut b, &o.field), o.descending));
        }
        let cond = filter.map_or_else(|| "1 = 1".to_string(), |f| b.filter(f));
        let after = match after {
            Some(pos) => after_sql(&mut b, &cols, pos, "c.id")?,
            None => "1 = 1".into(),
        };
        let limit_p = b.param(Bind::Int(first as i64 + 1));
        let sql = format!(
            "SELECT {CONTACT_COLS}{keys} FROM contacts c {joins} WHERE c.workspace = {ws_p} \
             AND c.merged_into IS NULL AND {cond} AND {after} ORDER BY {order} LIMIT {limit_p}",
            keys = select_keys(&cols),
            joins = fields.joins.join(" "),
            order = order_sql(&cols, "c.id"),
        );
        self.placed(&sql, &b.binds, &cols, first, |r| {
            let row = contact(r)?;
            Ok((row.id, row))
        })
        .await
    }

    /// The head of an ordering by one aggregate, read from the `(name, num)` index: the
    /// contacts whose value sorts before what a contact without one reads as (`empty`: 0 for
    /// a count or sum; none for the others, which sort last). Every other contact sorts
    /// after all of these, so when this finds a full page and one more row, it is the page;
    /// otherwise (`has_next` false) the caller reads the whole ordering. A top 20 then reads
    /// 21 index entries instead of every contact.
    #[allow(clippy::too_many_arguments)]
    async fn top_by_aggregate(
        &self,
        ws: &str,
        (filter, empty_filter): (Option<&Filter>, HashMap<String, DataValue>),
        name: &str,
        descending: bool,
        empty: Option<f64>,
        first: usize,
        after: Option<&Position>,
    ) -> Result<Page<Placed<ContactRow>>> {
        let sqlite = self.backend == crate::Backend::Sqlite;
        let mut b = SqlBuilder::new(0).with_empty_aggregates(empty_filter);
        let ws_p = b.param(Bind::Text(ws.into()));
        let name_p = b.param(Bind::Text(name.into()));
        let before_empty = match empty {
            Some(e) => format!(
                "a.num {} CAST({} AS DOUBLE PRECISION)",
                if descending { ">" } else { "<" },
                b.param(Bind::Float(e))
            ),
            None => "a.num IS NOT NULL".into(),
        };
        let cols = [
            SortCol {
                expr: "a.num".into(),
                kind: Kind::Float,
                descending,
            },
            SortCol {
                expr: text(sqlite, "a.txt"),
                kind: Kind::Text,
                descending,
            },
        ];
        let cond = filter.map_or_else(|| "1 = 1".to_string(), |f| b.filter(f));
        let after = match after {
            Some(pos) => after_sql(&mut b, &cols, pos, "c.id")?,
            None => "1 = 1".into(),
        };
        let limit_p = b.param(Bind::Int(first as i64 + 1));
        let dir = if descending { "DESC" } else { "ASC" };
        // `a.num` holds no null here: ordered without NULLS LAST, as the index is (PostgreSQL
        // reads a B-tree backwards as DESC NULLS FIRST).
        let sql = format!(
            "SELECT {CONTACT_COLS}{keys} FROM contact_aggregates a JOIN contacts c ON c.id = a.contact_id \
             WHERE a.name = {name_p} AND {before_empty} AND c.workspace = {ws_p} \
             AND c.merged_into IS NULL AND {cond} AND {after} \
             ORDER BY a.num {dir}, {txt} {dir} NULLS LAST, c.id ASC LIMIT {limit_p}",
            keys = select_keys(&cols),
            txt = cols[1].expr,
        );
        self.placed(&sql, &b.binds, &cols, first, |r| {
            let row = contact(r)?;
            Ok((row.id, row))
        })
        .await
    }

    /// The workspace's sessions, of one kind and matching a filter over their data when
    /// asked, in `q.order` (newest first when empty; ties by id), after `after`.
    pub async fn sessions_ordered(
        &self,
        ws: &str,
        q: &SessionQuery<'_>,
        first: usize,
        after: Option<&Position>,
    ) -> Result<Page<Placed<SessionRow>>> {
        let sqlite = self.backend == crate::Backend::Sqlite;
        if let Some(f) = q.filter {
            session_filter_fields(f)?;
        }
        let newest = [OrderBy {
            field: SessionField::StartedAt,
            descending: true,
        }];
        let order = if q.order.is_empty() { &newest } else { q.order };
        let mut b = SqlBuilder::new(0).over_sessions(sqlite);
        let ws_p = b.param(Bind::Text(ws.into()));
        let mut cols = vec![];
        for o in order {
            cols.extend(sort_cols(
                session_field(&mut b, &o.field, sqlite),
                o.descending,
            ));
        }
        let mut conds = vec!["1 = 1".to_string()];
        if let Some(k) = q.kind {
            conds.push(format!("s.kind = {}", b.param(Bind::Text(k.into()))));
        }
        if let Some(source) = q.source {
            conds.push(format!("s.source = {}", b.param(Bind::Text(source.into()))));
        }
        if let Some(from) = q.from {
            conds.push(format!("s.started_at >= {}", b.param(Bind::Int(from))));
        }
        if let Some(to) = q.to {
            conds.push(format!("s.started_at < {}", b.param(Bind::Int(to))));
        }
        if let Some(f) = q.filter {
            conds.push(b.filter(f));
        }
        let cond = conds.join(" AND ");
        let after = match after {
            Some(pos) => after_sql(&mut b, &cols, pos, "s.id")?,
            None => "1 = 1".into(),
        };
        let limit_p = b.param(Bind::Int(first as i64 + 1));
        let sql = format!(
            "SELECT {cols}{keys} FROM sessions s WHERE s.workspace = {ws_p} AND s.deleted = 0 \
             AND {cond} AND {after} ORDER BY {order} LIMIT {limit_p}",
            cols = session_cols(),
            keys = select_keys(&cols),
            order = order_sql(&cols, "s.id"),
        );
        self.placed(&sql, &b.binds, &cols, first, |r| {
            let row = session(r)?;
            Ok((row.id, row))
        })
        .await
    }
}
