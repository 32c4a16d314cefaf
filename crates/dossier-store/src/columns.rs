//! A contact's or a session's field as SQL, for the reads that order, group or measure by it:
//! native columns as they are, custom values (`data.<key>`, `agg.<name>`) as the number,
//! string and JSON projections their filters already compare.

use std::collections::HashMap;

use dossier_core::{DataKey, DataValue, FilterField};

use crate::filter_sql::{Bind, SessionValue, SqlBuilder};
use crate::{Result, StoreError};

/// A field of a session: what root `sessions` and `sessionStats` order and group by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionField {
    StartedAt,
    Kind,
    Source,
    Stream,
    Data(DataKey),
}

impl SessionField {
    /// Parses `started_at`, `kind`, `source`, `stream` or `data.<key>`.
    pub fn parse(path: &str) -> Result<Self> {
        match path {
            "started_at" => Ok(Self::StartedAt),
            "kind" => Ok(Self::Kind),
            "source" => Ok(Self::Source),
            "stream" => Ok(Self::Stream),
            _ => match path.strip_prefix("data.") {
                Some(k) => Ok(Self::Data(DataKey::new(k)?)),
                None => Err(StoreError::Refused(format!(
                    "unknown session field {path:?}; fields: started_at, kind, source, stream, data.<key>"
                ))),
            },
        }
    }
}

/// A field as SQL expressions over the contact alias `c` (and its joins) or the session `s`.
pub(crate) enum FieldSql {
    /// A native text column.
    Text(String),
    /// A native time, epoch microseconds.
    Time(String),
    /// A custom value: its number and string projections, and the value as stored (JSON).
    Custom {
        num: String,
        txt: String,
        value: String,
    },
}

/// The joins a contact query needs for its custom fields, and what a missing aggregate row
/// reads as (`count` and `sum` of nothing are 0), so orderings and groups agree with reads.
pub(crate) struct ContactFields<'a> {
    pub joins: Vec<String>,
    empty: &'a HashMap<String, DataValue>,
    sqlite: bool,
}

impl<'a> ContactFields<'a> {
    pub(crate) fn new(empty: &'a HashMap<String, DataValue>, sqlite: bool) -> Self {
        Self {
            joins: vec![],
            empty,
            sqlite,
        }
    }

    /// `field` as SQL; a custom field joins its row (one join per use).
    pub(crate) fn field(&mut self, b: &mut SqlBuilder, field: &FilterField) -> FieldSql {
        let (table, col, key) = match field {
            FilterField::Profile(p) => {
                return FieldSql::Text(text(self.sqlite, &format!("c.{}", p.name())));
            }
            FilterField::CreatedAt => return FieldSql::Time("c.created_at".into()),
            FilterField::UpdatedAt => return FieldSql::Time("c.updated_at".into()),
            FilterField::Data(k) => ("contact_data", "key", k),
            FilterField::Agg(k) => ("contact_aggregates", "name", k),
        };
        let alias = format!("j{}", self.joins.len());
        let key_p = b.param(Bind::Text(key.to_string()));
        self.joins.push(format!(
            "LEFT JOIN {table} {alias} ON {alias}.contact_id = c.id AND {alias}.{col} = {key_p}"
        ));
        let (mut num, txt, mut value) = (
            format!("{alias}.num"),
            text(self.sqlite, &format!("{alias}.txt")),
            format!("{alias}.value"),
        );
        let empty = match field {
            FilterField::Agg(k) => self.empty.get(k.as_str()),
            _ => None,
        };
        if let Some(empty) = empty {
            let missing = format!("{alias}.contact_id IS NULL");
            if let Some(n) = empty.as_sort_number() {
                let p = b.param(Bind::Float(n));
                num = format!(
                    "CASE WHEN {missing} THEN CAST({p} AS DOUBLE PRECISION) ELSE {num} END"
                );
            }
            let p = b.param(Bind::Text(crate::encoding::encode(empty)));
            value = format!("CASE WHEN {missing} THEN CAST({p} AS TEXT) ELSE {value} END");
        }
        FieldSql::Custom { num, txt, value }
    }
}

/// `field` of the session alias `s` as SQL.
pub(crate) fn session_field(b: &mut SqlBuilder, field: &SessionField, sqlite: bool) -> FieldSql {
    match field {
        SessionField::StartedAt => FieldSql::Time("s.started_at".into()),
        SessionField::Kind => FieldSql::Text(text(sqlite, "s.kind")),
        SessionField::Source => FieldSql::Text(text(sqlite, "s.source")),
        SessionField::Stream => FieldSql::Text(text(sqlite, "s.stream")),
        SessionField::Data(k) => {
            let key_p = b.param(Bind::Text(k.to_string()));
            let v = SessionValue::new(sqlite, &key_p);
            FieldSql::Custom {
                num: v.num,
                txt: text(sqlite, &v.txt),
                value: v.value,
            }
        }
    }
}

/// Text compared and sorted byte by byte on both backends (PostgreSQL would otherwise use
/// the database's locale, and pages and groups would differ between stores).
pub(crate) fn text(sqlite: bool, expr: &str) -> String {
    if sqlite {
        expr.to_string()
    } else {
        format!("({expr} COLLATE \"C\")")
    }
}
