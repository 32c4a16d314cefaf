//! Turns a contact [`Filter`] into SQL with bound parameters; user text is never pasted.

use std::collections::HashMap;

use dossier_core::{CmpOp, DataValue, Filter, FilterField, holds_for_value};

/// A parameter to bind, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Int(i64),
    Float(f64),
    Text(String),
}

/// Accumulates SQL text and its parameters; placeholders are numbered from `first`.
#[derive(Debug)]
pub(crate) struct SqlBuilder {
    pub(crate) binds: Vec<Bind>,
    offset: usize,
    /// The placeholder of a bound the query puts on `c.id` (`c.id > floor`, a page's
    /// cursor), repeated on the contact id of every custom-field subquery.
    contact_floor: Option<String>,
    /// What each aggregate reads as on a contact without its row (`count` and `sum` of
    /// nothing are 0), so filters agree with reads; rules absent here have no such value.
    empty_aggs: HashMap<String, DataValue>,
    /// `Some(sqlite)`: the filter is over sessions (alias `s`), whose data is the JSON
    /// column `s.data` of the given backend, rather than over contacts.
    sessions: Option<bool>,
}

impl SqlBuilder {
    pub(crate) fn new(offset: usize) -> Self {
        Self {
            binds: vec![],
            offset,
            contact_floor: None,
            empty_aggs: HashMap::new(),
            sessions: None,
        }
    }

    /// Filters then run over sessions (alias `s`): `data.<key>` reads the session's own data.
    /// Other fields must have been refused first ([`session_filter_fields`]).
    pub(crate) fn over_sessions(mut self, sqlite: bool) -> Self {
        self.sessions = Some(sqlite);
        self
    }

    /// Filters then match a contact without an aggregate's row as reads show it: with the
    /// value `empty` gives for the aggregate's name.
    pub(crate) fn with_empty_aggregates(mut self, empty: HashMap<String, DataValue>) -> Self {
        self.empty_aggs = empty;
        self
    }

    /// Declares that the query also requires `c.id > {placeholder}`, as a top-level
    /// conjunct. Each custom-field subquery then repeats the bound on its own contact id: it
    /// changes no answer (the subquery matches `c.id`), but PostgreSQL's merge join over a
    /// page's contacts and their data would otherwise read the data of every contact before
    /// the cursor (119 ms instead of 0.7 ms for a page deep into a million contacts).
    pub(crate) fn contacts_after(&mut self, placeholder: &str) {
        self.contact_floor = Some(placeholder.to_string());
    }

    pub(crate) fn param(&mut self, b: Bind) -> String {
        self.binds.push(b);
        numbered(self.offset + self.binds.len())
    }

    /// SQL for `f`, a boolean expression over the contact alias `c`.
    pub(crate) fn filter(&mut self, f: &Filter) -> String {
        match f {
            Filter::And(v) if v.is_empty() => "1 = 1".into(),
            Filter::Or(v) if v.is_empty() => "1 = 0".into(),
            Filter::And(v) => format!(
                "({})",
                v.iter()
                    .map(|c| self.filter(c))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            ),
            Filter::Or(v) => format!(
                "({})",
                v.iter()
                    .map(|c| self.filter(c))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            Filter::Not(c) => format!("NOT ({})", self.filter(c)),
            // Relative dates are resolved against the clock when the SQL is built.
            Filter::Ago { .. } => self.filter(&f.resolve(chrono::Utc::now())),
            Filter::Exists(field) => match field {
                FilterField::Profile(p) => format!("c.{} IS NOT NULL", p.name()),
                FilterField::CreatedAt | FilterField::UpdatedAt => "1 = 1".into(),
                FilterField::Data(_) | FilterField::Agg(_) => {
                    let cond = self.custom(field, "1 = 1".into());
                    self.or_empty(field, f, cond)
                }
            },
            Filter::Cmp { field, op, value } => {
                let cond = self.compare(field, *op, value);
                if *op == CmpOp::Ne {
                    // "not equal" includes contacts without the value.
                    let eq = self.compare(field, CmpOp::Eq, value);
                    let leaf = Filter::Cmp {
                        field: field.clone(),
                        op: CmpOp::Eq,
                        value: value.clone(),
                    };
                    return format!("NOT ({})", self.wrap(field, eq, &leaf));
                }
                self.wrap(field, cond, f)
            }
            Filter::In { field, values } => {
                if values.is_empty() {
                    return "1 = 0".into();
                }
                let parts: Vec<String> = values
                    .iter()
                    .map(|v| self.compare(field, CmpOp::Eq, v))
                    .collect();
                let any = format!("({})", parts.join(" OR "));
                self.wrap(field, any, f)
            }
            Filter::Contains { field, text } => {
                let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
                let col = self.text_col(field);
                let p = self.param(Bind::Text(pattern));
                let cond = format!("LOWER({col}) LIKE {p} ESCAPE '\\'");
                self.wrap(field, cond, f)
            }
        }
    }

    fn text_col(&self, field: &FilterField) -> String {
        match field {
            FilterField::Profile(p) => format!("c.{}", p.name()),
            FilterField::CreatedAt => "CAST(c.created_at AS TEXT)".into(),
            FilterField::UpdatedAt => "CAST(c.updated_at AS TEXT)".into(),
            FilterField::Data(_) | FilterField::Agg(_) => "x.txt".into(),
        }
    }

    /// A comparison on the field's own column (`x` is the data/aggregate row).
    fn compare(&mut self, field: &FilterField, op: CmpOp, value: &DataValue) -> String {
        let op_sql = if op == CmpOp::Ne { "=" } else { op.sql() };
        match field {
            FilterField::Profile(p) => {
                let v = match value {
                    DataValue::String(s) if p.name() == "country" => s.to_ascii_uppercase(),
                    DataValue::String(s) if p.name() == "email" => s.trim().to_lowercase(),
                    DataValue::String(s) => s.clone(),
                    other => other.to_json().to_string(),
                };
                let ph = self.param(Bind::Text(v));
                format!("c.{} {op_sql} {ph}", p.name())
            }
            FilterField::CreatedAt | FilterField::UpdatedAt => {
                let col = if matches!(field, FilterField::CreatedAt) {
                    "created_at"
                } else {
                    "updated_at"
                };
                let n = value.as_sort_number().unwrap_or(f64::NAN) as i64;
                let ph = self.param(Bind::Int(n));
                format!("c.{col} {op_sql} {ph}")
            }
            FilterField::Data(_) | FilterField::Agg(_) => match value {
                DataValue::String(s) => {
                    let ph = self.param(Bind::Text(s.clone()));
                    format!("x.txt {op_sql} {ph}")
                }
                other => {
                    let ph = self.param(Bind::Float(other.as_sort_number().unwrap_or_default()));
                    // The cast pins the parameter's type: sqlx's Any driver leaves it open.
                    format!("x.num {op_sql} CAST({ph} AS DOUBLE PRECISION)")
                }
            },
        }
    }

    /// For custom fields, the condition runs on the contact's data or aggregate row; `leaf`
    /// is the comparison `cond` implements.
    fn wrap(&mut self, field: &FilterField, cond: String, leaf: &Filter) -> String {
        match field {
            FilterField::Data(_) | FilterField::Agg(_) => {
                let cond = self.custom(field, cond);
                self.or_empty(field, leaf, cond)
            }
            _ => cond,
        }
    }

    /// `exists` (the SQL of `leaf` on a stored row), or also a contact without the
    /// aggregate's row when `leaf` holds for the value such a contact reads.
    fn or_empty(&mut self, field: &FilterField, leaf: &Filter, exists: String) -> String {
        let FilterField::Agg(name) = field else {
            return exists;
        };
        let holds = self
            .empty_aggs
            .get(name.as_str())
            .is_some_and(|empty| holds_for_value(leaf, empty));
        if !holds {
            return exists;
        }
        let row = self.custom(field, "1 = 1".into());
        format!("({exists} OR NOT {row})")
    }

    fn custom(&mut self, field: &FilterField, cond: String) -> String {
        if let (Some(sqlite), FilterField::Data(k)) = (self.sessions, field) {
            let key = self.param(Bind::Text(k.to_string()));
            let v = SessionValue::new(sqlite, &key);
            // The same `x.num`/`x.txt` the comparisons read on a contact's data row.
            return format!(
                "EXISTS (SELECT 1 FROM (SELECT {} AS num, {} AS txt) x WHERE {} IS NOT NULL AND {cond})",
                v.num, v.txt, v.value
            );
        }
        let (table, col, key) = match field {
            FilterField::Data(k) => ("contact_data", "key", k),
            FilterField::Agg(k) => ("contact_aggregates", "name", k),
            _ => unreachable!("only custom fields"),
        };
        let ph = self.param(Bind::Text(key.to_string()));
        let floor = self
            .contact_floor
            .as_ref()
            .map(|p| format!(" AND x.contact_id > {p}"))
            .unwrap_or_default();
        format!(
            "EXISTS (SELECT 1 FROM {table} x WHERE x.contact_id = c.id{floor} AND x.{col} = {ph} AND {cond})"
        )
    }
}

/// Whether `f` compares an aggregate (`agg.<name>`) anywhere: only then does building its SQL
/// need what the workspace's aggregates read as without a row.
pub(crate) fn names_aggregate(f: &Filter) -> bool {
    f.fields()
        .into_iter()
        .any(|field| matches!(field, FilterField::Agg(_)))
}

/// Refuses a session filter that looks at anything but the session's data.
pub(crate) fn session_filter_fields(f: &Filter) -> crate::Result<()> {
    match f
        .fields()
        .into_iter()
        .find(|f| !matches!(f, FilterField::Data(_)))
    {
        None => Ok(()),
        Some(other) => Err(crate::StoreError::Refused(format!(
            "a session filter looks at the session's data (`data.<key>`) only, not {other}"
        ))),
    }
}

/// One key of a session's data (the JSON column `s.data`, `{"<key>": {"n": 1.5}}`) as SQL:
/// the projections a contact's data row stores as columns.
pub(crate) struct SessionValue {
    /// The number (`NULL` for other values).
    pub num: String,
    /// The string (`NULL` for other values).
    pub txt: String,
    /// The stored value as JSON text (`NULL` when the session has no such key).
    pub value: String,
}

impl SessionValue {
    /// The value of the key bound at `key`.
    pub(crate) fn new(sqlite: bool, key: &str) -> Self {
        if sqlite {
            let at = |tail: &str| format!("json_extract(s.data, '$.\"' || {key} || '\"{tail}')");
            Self {
                num: at(".n"),
                txt: at(".s"),
                value: at(""),
            }
        } else {
            let v = format!("(CAST(s.data AS json) -> {key})");
            Self {
                num: format!("CAST({v} ->> 'n' AS DOUBLE PRECISION)"),
                txt: format!("({v} ->> 's')"),
                value: format!("CAST({v} AS TEXT)"),
            }
        }
    }
}

/// The `n`th parameter (from 1) as every statement of the store spells it, `$n`; the write
/// path's multi-row statements use `?` on SQLite instead (`ingest::sql`).
pub(crate) fn numbered(n: usize) -> String {
    format!("${n}")
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Binds parameters in order onto an `Any` query.
pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Float(f) => q.bind(*f),
            Bind::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}
