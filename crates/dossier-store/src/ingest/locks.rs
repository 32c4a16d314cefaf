//! What keeps writers of one workspace apart on PostgreSQL: the workspace lock, shared by
//! sync batches and exclusive for every other write, and the row locks a batch takes on the
//! stored contacts it will read and change. SQLite has one writer per database and takes
//! neither.

use std::collections::HashSet;

use dossier_core::MappedRecord;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::prefetch::BatchKeys;
use crate::Backend;
use crate::error::Result;
use crate::json_sql::{parse_json, strings_param};

/// How a write transaction holds its workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Beside other batches: each locks the contacts it names (see [`lock_contacts`]).
    Shared,
    /// Alone: no other write of the workspace runs until it ends.
    Exclusive,
}

/// Takes the workspace's lock for the rest of the transaction, before anything is read: a
/// transaction-scoped advisory lock keyed by the workspace, shared or exclusive. Nothing on
/// SQLite, whose transactions begin with the database's write lock.
pub(super) async fn lock_workspace(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &str,
    access: Access,
) -> Result<()> {
    if backend == Backend::Postgres {
        let function = match access {
            Access::Shared => "pg_advisory_xact_lock_shared",
            Access::Exclusive => "pg_advisory_xact_lock",
        };
        // The `dossier.workspace:` prefix keeps the key apart from other advisory locks a
        // shared database may use.
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {function}(hashtextextended($1, 0))"
        )))
        .bind(format!("dossier.workspace:{ws}"))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Locks (`FOR NO KEY UPDATE`, in id order) the stored contacts that a batch's records name
/// through their identities and their stored sessions, and returns them. With `wait` false
/// it takes only the locks free now and returns `None` if some were held: a transaction that
/// already holds locks must not wait for more, as two such could wait for each other.
///
/// Row locks rather than advisory ones: a bulk batch names thousands of contacts, more than
/// PostgreSQL's shared lock table is sized for.
pub(super) async fn lock_contacts(
    conn: &mut AnyConnection,
    ws: &str,
    source: &str,
    stream: &str,
    records: &[MappedRecord],
    wait: bool,
) -> Result<Option<HashSet<i64>>> {
    let keys = BatchKeys::of(records);
    let pairs: Vec<(&str, &str)> = keys
        .by_kind
        .iter()
        .flat_map(|(kind, values)| values.iter().map(|v| (kind.as_str(), *v)))
        .collect();
    let named: Option<String> = sqlx::query(
        "SELECT json_agg(DISTINCT n.id)::text FROM ( \
           SELECT i.contact_id AS id FROM json_array_elements(CAST($1 AS json)) AS k(pair) \
           JOIN identities i ON i.workspace = $2 AND i.kind = k.pair->>0 AND i.value = k.pair->>1 \
           UNION ALL \
           SELECT s.contact_id FROM json_array_elements_text(CAST($3 AS json)) AS j(value) \
           JOIN sessions s ON s.workspace = $2 AND s.source = $4 AND s.stream = $5 \
             AND s.external_id = j.value \
           WHERE s.contact_id IS NOT NULL) n",
    )
    .bind(serde_json::to_string(&pairs).expect("pairs serialize"))
    .bind(ws)
    .bind(strings_param(&keys.external_ids))
    .bind(source)
    .bind(stream)
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let named: Vec<i64> = parse_json("contacts named", named)?;
    if named.is_empty() {
        return Ok(Some(HashSet::new()));
    }
    let skip = if wait { "" } else { " SKIP LOCKED" };
    let locked: Option<String> = sqlx::query(AssertSqlSafe(format!(
        "SELECT json_agg(l.id)::text FROM (SELECT c.id FROM contacts c \
         WHERE c.id IN (SELECT CAST(j.value AS BIGINT) FROM json_array_elements_text(CAST($1 AS json)) AS j(value)) \
         ORDER BY c.id FOR NO KEY UPDATE OF c{skip}) l"
    )))
    .bind(serde_json::to_string(&named).expect("ids serialize"))
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let locked: HashSet<i64> = parse_json::<i64>("contacts locked", locked)?
        .into_iter()
        .collect();
    Ok((wait || locked.len() == named.len()).then_some(locked))
}
