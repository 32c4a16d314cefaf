//! Reading contacts, sessions and their data; every query is scoped to one workspace.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use dossier_core::{AggState, AggregateRule, DataValue, Filter};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::encoding::{decode_data, decode_value};
use crate::error::{Result, StoreError};
use crate::filter_sql::{Bind, SqlBuilder, bind_all};
use crate::identity::resolve_contact_id;
use crate::{ContactRow, IdentityRow, Page, SessionRow, SqlStore};

pub(crate) const CONTACT_COLS: &str = "c.id, c.email, c.phone, c.first_name, c.last_name, c.company, c.country, c.city, c.locale, c.created_at, c.updated_at";

pub(crate) fn contact(r: &AnyRow) -> Result<ContactRow> {
    Ok(ContactRow {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        company: r.try_get("company")?,
        country: r.try_get("country")?,
        city: r.try_get("city")?,
        locale: r.try_get("locale")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A session's columns as reads select them (`s.<name>`, or `'<name>', s.<name>` in a JSON
/// object), the names of [`SessionColumns`]' fields.
pub(crate) const SESSION_FIELDS: [&str; 10] = [
    "id",
    "contact_id",
    "source",
    "stream",
    "external_id",
    "kind",
    "started_at",
    "ended_at",
    "data",
    "updated_at",
];

/// `s.id, s.contact_id, ...`: [`SESSION_FIELDS`] as a select list.
pub(crate) fn session_cols() -> &'static str {
    static COLS: LazyLock<String> = LazyLock::new(|| {
        SESSION_FIELDS
            .iter()
            .map(|f| format!("s.{f}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    &COLS
}

/// A session's columns as stored, its data still encoded: from a row, or from a JSON object
/// keyed by [`SESSION_FIELDS`] (a contact card's sessions).
#[derive(serde::Deserialize, sqlx::FromRow)]
pub(crate) struct SessionColumns {
    id: i64,
    contact_id: Option<i64>,
    source: String,
    stream: String,
    external_id: String,
    kind: String,
    started_at: i64,
    ended_at: Option<i64>,
    data: String,
    updated_at: i64,
}

impl SessionColumns {
    pub(crate) fn decode(self) -> Result<SessionRow> {
        Ok(SessionRow {
            id: self.id,
            contact_id: self.contact_id,
            source: self.source,
            stream: self.stream,
            external_id: self.external_id,
            kind: self.kind,
            started_at: self.started_at,
            ended_at: self.ended_at,
            data: decode_data(&self.data)?,
            updated_at: self.updated_at,
        })
    }
}

pub(crate) fn session(r: &AnyRow) -> Result<SessionRow> {
    <SessionColumns as sqlx::FromRow<AnyRow>>::from_row(r)?.decode()
}

/// A rule's row of an aggregates read: (rule name, rule definition, contact, value), with
/// no contact when no contact of the read has a value for the rule.
pub(crate) type AggregateRead = (String, String, Option<i64>, Option<String>);

/// The aggregate values of `ids` from the rows of an aggregates read: every declared rule
/// is present (count and sum of nothing are 0, avg/min/max/first/last of nothing are absent).
pub(crate) fn fold_aggregates(
    rows: Vec<AggregateRead>,
    ids: &[i64],
) -> Result<HashMap<i64, BTreeMap<String, DataValue>>> {
    let mut out: HashMap<i64, BTreeMap<String, DataValue>> = HashMap::new();
    let mut rules: BTreeMap<String, AggregateRule> = BTreeMap::new();
    let mut values = vec![];
    for (name, definition, contact, value) in rows {
        if !rules.contains_key(&name) {
            let rule = serde_json::from_str(&definition)
                .map_err(|e| StoreError::corrupt("aggregate rule", e))?;
            rules.insert(name.clone(), rule);
        }
        if let Some(contact) = contact {
            values.push((contact, name, value));
        }
    }
    for id in ids {
        let defaults = out.entry(*id).or_default();
        for r in rules.values() {
            if let Some(v) = AggState::default().value(r.op) {
                defaults.insert(r.name.to_string(), v);
            }
        }
    }
    for (contact, name, value) in values {
        let entry = out.entry(contact).or_default();
        match value {
            Some(v) => entry.insert(name, decode_value(&v)?),
            None => entry.remove(&name),
        };
    }
    Ok(out)
}

fn in_list(b: &mut SqlBuilder, ids: &[i64]) -> String {
    ids.iter()
        .map(|i| b.param(Bind::Int(*i)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqlStore {
    /// A contact read with its `merged_into`: itself when live, else the contact its merge
    /// chain ends at.
    pub(crate) async fn live_contact(
        &self,
        ws: &str,
        row: Option<AnyRow>,
    ) -> Result<Option<ContactRow>> {
        let Some(row) = row else {
            return Ok(None);
        };
        let Some(next) = row.try_get::<Option<i64>, _>("merged_into")? else {
            return contact(&row).map(Some);
        };
        let mut conn = self.read.acquire().await?;
        let Some(id) = resolve_contact_id(&mut conn, ws, next).await? else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONTACT_COLS} FROM contacts c WHERE c.id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(contact).transpose()
    }

    /// Several contacts by id in one query; a merged id returns the contact it merged into.
    pub async fn contacts_by_ids(&self, ws: &str, ids: &[i64]) -> Result<HashMap<i64, ContactRow>> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut b = SqlBuilder::new(0);
        let ws_p = b.param(Bind::Text(ws.into()));
        let list = in_list(&mut b, ids);
        let sql = format!(
            "SELECT {CONTACT_COLS} FROM contacts c WHERE c.workspace = {ws_p} AND c.merged_into IS NULL AND c.id IN ({list})"
        );
        for r in bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_all(&self.read)
            .await?
        {
            let c = contact(&r)?;
            out.insert(c.id, c);
        }
        // Merged (or unknown) ids are rare: follow them one by one.
        for id in ids
            .iter()
            .filter(|id| !out.contains_key(id))
            .copied()
            .collect::<Vec<_>>()
        {
            if let Some(c) = self.contact(ws, id).await? {
                out.insert(id, c);
            }
        }
        Ok(out)
    }

    /// Contacts matching `filter`, in id order, after the contact id `after`.
    pub async fn contacts(
        &self,
        ws: &str,
        filter: Option<&Filter>,
        first: usize,
        after: Option<i64>,
    ) -> Result<Page<ContactRow>> {
        let mut b =
            SqlBuilder::new(0).with_empty_aggregates(self.empty_aggregates(ws, filter).await?);
        let ws_p = b.param(Bind::Text(ws.into()));
        let after_p = b.param(Bind::Int(after.unwrap_or(i64::MIN)));
        if after.is_some() {
            b.contacts_after(&after_p);
        }
        let cond = filter.map_or_else(|| "1 = 1".to_string(), |f| b.filter(f));
        let limit_p = b.param(Bind::Int(first as i64 + 1));
        let sql = format!(
            "SELECT {CONTACT_COLS} FROM contacts c WHERE c.workspace = {ws_p} AND c.merged_into IS NULL \
             AND c.id > {after_p} AND {cond} ORDER BY c.id LIMIT {limit_p}"
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_all(&self.read)
            .await?;
        let items = rows.iter().map(contact).collect::<Result<Vec<_>>>()?;
        Ok(Page::cut(items, first))
    }

    pub async fn count_contacts(&self, ws: &str, filter: Option<&Filter>) -> Result<i64> {
        let (sql, binds) = count_sql(ws, filter, self.empty_aggregates(ws, filter).await?);
        let row = bind_all(sqlx::query(AssertSqlSafe(sql)), &binds)
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// How the database plans [`SqlStore::count_contacts`] for `filter`, one line per step
    /// (SQLite's `EXPLAIN QUERY PLAN`, PostgreSQL's `EXPLAIN`): to check that indexes are used.
    pub async fn count_plan(&self, ws: &str, filter: Option<&Filter>) -> Result<Vec<String>> {
        let (sql, binds) = count_sql(ws, filter, self.empty_aggregates(ws, filter).await?);
        let sqlite = self.backend == crate::Backend::Sqlite;
        let explain = if sqlite {
            "EXPLAIN QUERY PLAN"
        } else {
            "EXPLAIN"
        };
        let rows = bind_all(
            sqlx::query(AssertSqlSafe(format!("{explain} {sql}"))),
            &binds,
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(if sqlite { 3 } else { 0 })?))
            .collect()
    }

    /// The merged data view (own values over session values) of several contacts at once.
    pub async fn contact_data(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, BTreeMap<String, DataValue>>> {
        let mut out: HashMap<i64, BTreeMap<String, DataValue>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut b = SqlBuilder::new(0);
        let list = in_list(&mut b, ids);
        let sql =
            format!("SELECT contact_id, key, value FROM contact_data WHERE contact_id IN ({list})");
        for r in bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_all(&self.read)
            .await?
        {
            out.entry(r.try_get(0)?)
                .or_default()
                .insert(r.try_get(1)?, decode_value(&r.try_get::<String, _>(2)?)?);
        }
        Ok(out)
    }

    /// Aggregate values of several contacts; every declared rule is present (count and sum
    /// of nothing are 0, avg/min/max/first/last of nothing are absent).
    pub async fn aggregates(
        &self,
        ws: &str,
        ids: &[i64],
    ) -> Result<HashMap<i64, BTreeMap<String, DataValue>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        // The rules and the values in one read: a rule's row comes back once per contact
        // that has a value for it, or once with a NULL contact when none has.
        let mut b = SqlBuilder::new(0);
        let ws_p = b.param(Bind::Text(ws.into()));
        let list = in_list(&mut b, ids);
        let sql = format!(
            "SELECT r.name, r.definition, a.contact_id, a.value FROM aggregate_rules r \
             LEFT JOIN contact_aggregates a ON a.name = r.name AND a.contact_id IN ({list}) \
             WHERE r.workspace = {ws_p}"
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_all(&self.read)
            .await?;
        let rows = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<Vec<_>>>()?;
        fold_aggregates(rows, ids)
    }

    pub async fn identities(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<IdentityRow>>> {
        let mut out: HashMap<i64, Vec<IdentityRow>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut b = SqlBuilder::new(0);
        let list = in_list(&mut b, ids);
        let sql = format!(
            "SELECT contact_id, kind, value FROM identities WHERE contact_id IN ({list}) ORDER BY kind, value"
        );
        for r in bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_all(&self.read)
            .await?
        {
            out.entry(r.try_get(0)?).or_default().push(IdentityRow {
                kind: r.try_get(1)?,
                value: r.try_get(2)?,
            });
        }
        Ok(out)
    }

    /// The latest sessions of several contacts in one query: per contact, newest first,
    /// before the cursor `(started_at, id)` if given, at most `first` (+1 to tell if more follow).
    pub async fn sessions_of(
        &self,
        ids: &[i64],
        kind: Option<&str>,
        first: usize,
        before: Option<(i64, i64)>,
    ) -> Result<HashMap<i64, Page<SessionRow>>> {
        let mut out: HashMap<i64, Page<SessionRow>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut b = SqlBuilder::new(0);
        let list = in_list(&mut b, ids);
        let mut cond = String::new();
        if let Some(k) = kind {
            cond += &format!(" AND s.kind = {}", b.param(Bind::Text(k.into())));
        }
        if let Some((at, id)) = before {
            let (p1, p2, p3) = (
                b.param(Bind::Int(at)),
                b.param(Bind::Int(at)),
                b.param(Bind::Int(id)),
            );
            cond += &format!(" AND (s.started_at < {p1} OR (s.started_at = {p2} AND s.id < {p3}))");
        }
        let limit = b.param(Bind::Int(first as i64 + 1));
        let cols = session_cols();
        let sql = if ids.len() == 1 {
            // One contact (a contact looked up by id or email) needs no window: a plain
            // LIMIT reads just the newest entries of the (contact_id, started_at, id) index.
            format!(
                "SELECT {cols} FROM sessions s WHERE s.contact_id IN ({list}) AND s.deleted = 0{cond} \
                 ORDER BY s.started_at DESC, s.id DESC LIMIT {limit}"
            )
        } else {
            format!(
                "SELECT * FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY s.contact_id ORDER BY s.started_at DESC, s.id DESC) AS rn \
                 FROM sessions s WHERE s.contact_id IN ({list}) AND s.deleted = 0{cond}) s WHERE s.rn <= {limit} ORDER BY s.contact_id, s.rn"
            )
        };
        for r in bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_all(&self.read)
            .await?
        {
            let s = session(&r)?;
            let page = out.entry(s.contact_id.unwrap_or_default()).or_insert(Page {
                items: vec![],
                has_next: false,
            });
            if page.items.len() < first {
                page.items.push(s);
            } else {
                page.has_next = true;
            }
        }
        Ok(out)
    }

    pub async fn session(&self, ws: &str, id: i64) -> Result<Option<SessionRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {cols} FROM sessions s WHERE s.id = $1 AND s.workspace = $2 AND s.deleted = 0",
            cols = session_cols()
        )))
        .bind(id)
        .bind(ws)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(session).transpose()
    }

    /// Counts of what the store holds, for summaries and tests.
    pub async fn counts(&self, ws: &str) -> Result<(i64, i64)> {
        let c: i64 = sqlx::query(
            "SELECT COUNT(*) FROM contacts WHERE workspace = $1 AND merged_into IS NULL",
        )
        .bind(ws)
        .fetch_one(&self.read)
        .await?
        .try_get(0)?;
        let s: i64 =
            sqlx::query("SELECT COUNT(*) FROM sessions WHERE workspace = $1 AND deleted = 0")
                .bind(ws)
                .fetch_one(&self.read)
                .await?
                .try_get(0)?;
        Ok((c, s))
    }
}

fn count_sql(
    ws: &str,
    filter: Option<&Filter>,
    empty_aggs: HashMap<String, DataValue>,
) -> (String, Vec<Bind>) {
    let mut b = SqlBuilder::new(0).with_empty_aggregates(empty_aggs);
    let ws_p = b.param(Bind::Text(ws.into()));
    let cond = filter.map_or_else(|| "1 = 1".to_string(), |f| b.filter(f));
    let sql = format!(
        "SELECT COUNT(*) FROM contacts c WHERE c.workspace = {ws_p} AND c.merged_into IS NULL AND {cond}"
    );
    (sql, b.binds)
}
