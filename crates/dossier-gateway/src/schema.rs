//! The root Query and Mutation (merged from the modules that serve them), the core reads and
//! writes, and the types of sources and sync runs.

use async_graphql::{Context, Error, ID, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use dossier_core::value::from_micros;
use dossier_core::{DataKey, DataValue};
use dossier_store::{ContactKey, Page, RunRow, SourceRow};

use crate::auth::RoleGuard;
use crate::connectors::{Connector, connector_admin};
use crate::contact::{Contact, ContactConnection, Session};
use crate::context::{
    PageInfo, defined_aggregates_only, defined_fields_only, gateway, page_size, parse_cursor,
    parse_id, ws,
};
use crate::dashboards::OrderInput;
use crate::filter::ContactFilter;
use crate::{Role, cursor};

fn key_and_value(key: &str, value: &serde_json::Value) -> Result<(DataKey, DataValue)> {
    let key = DataKey::new(key)?;
    let value = DataValue::from_json(key.as_str(), value)?;
    Ok((key, value))
}
/// Every read, merged from the modules that serve them.
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(
    CoreQuery,
    crate::dashboards::DashboardQuery,
    crate::segments::SegmentQuery,
    crate::shortcuts::ShortcutQuery,
    crate::identity::IdentityQuery,
    crate::keys::KeyQuery,
);

/// Every write, merged from the modules that serve them.
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(
    CoreMutation,
    crate::connectors::ConnectorMutation,
    crate::segments::SegmentMutation,
    crate::shortcuts::ShortcutMutation,
    crate::keys::KeyMutation,
);

/// The read queries on contacts, sessions, sources and runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct CoreQuery;

/// Reads: contacts, sessions, sources and sync runs of the gateway's workspace.
#[Object]
impl CoreQuery {
    /// A contact by id or by email (give exactly one). A merged contact's id returns the
    /// contact it merged into.
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn contact(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        email: Option<String>,
    ) -> Result<Option<Contact>> {
        let gw = gateway(ctx)?;
        let ws = ws(ctx)?;
        let key = match (&id, email.as_deref()) {
            (Some(id), None) => ContactKey::Id(parse_id(id, "contact")?),
            (None, Some(email)) => ContactKey::Email(email),
            _ => return Err(Error::new("give either id or email")),
        };
        let parts = crate::card::parts_asked(gw, &ctx.field());
        let card = gw.store.contact_card(ws, key, &parts).await?;
        Ok(card.map(|card| Contact::card(card, &parts)))
    }

    /// Contacts matching `where` and `filter` (both when both are given), in id order or in
    /// `orderBy` (e.g. `[{field: "agg.total_spent", direction: DESC}]`; values a contact
    /// lacks sort last, ties by id). `filter` is the text form, e.g.
    /// `country = "FR" and agg.avg_basket > 50`.
    #[graphql(
        guard = "RoleGuard(Role::Read)",
        complexity = "crate::limits::contacts_cost(order_by.as_ref().is_some_and(|o| !o.is_empty()), child_complexity)"
    )]
    async fn contacts(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "where")] input: Option<ContactFilter>,
        filter: Option<String>,
        order_by: Option<Vec<OrderInput>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ContactConnection> {
        let filter = crate::filter::combine(input, filter)?;
        if let Some(f) = &filter {
            defined_aggregates_only(ctx, f).await?;
        }
        let order = crate::dashboards::contact_order(&order_by.unwrap_or_default())?;
        if order.is_empty() {
            return ContactConnection::load(ctx, filter, first, after).await;
        }
        defined_fields_only(ctx, order.iter().map(|o| &o.field)).await?;
        ContactConnection::ordered(ctx, filter, &order, first, after).await
    }

    /// A session by id.
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn session(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Session>> {
        let gw = gateway(ctx)?;
        let row = gw
            .store
            .session(ws(ctx)?, parse_id(&id, "session")?)
            .await?;
        Ok(row.map(Session))
    }

    /// The configured sources, their configs with secrets redacted (admin role).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn sources(&self, ctx: &Context<'_>) -> Result<Vec<Source>> {
        let gw = gateway(ctx)?;
        Ok(gw
            .store
            .sources(ws(ctx)?)
            .await?
            .into_iter()
            .map(Source)
            .collect())
    }

    /// The connectors this server knows: built in and installed plugins, with their versions
    /// and config schemas (admin role).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn connectors(&self, ctx: &Context<'_>) -> Result<Vec<Connector>> {
        Ok(connector_admin(ctx)?
            .connectors()
            .into_iter()
            .map(Connector)
            .collect())
    }

    /// Sync runs, newest first, optionally of one source (write role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn sync_runs(
        &self,
        ctx: &Context<'_>,
        source: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<SyncRunConnection> {
        let gw = gateway(ctx)?;
        let first = page_size(gw, first)?;
        let before = parse_cursor(after.as_deref(), cursor::parse_run)?;
        let page = gw
            .store
            .runs(ws(ctx)?, source.as_deref(), first, before)
            .await?;
        Ok(SyncRunConnection(page))
    }
}

/// The writes.
#[derive(Debug, Default, Clone, Copy)]
pub struct CoreMutation;

/// Writes: custom data on contacts and sessions, and syncs.
#[Object]
impl CoreMutation {
    /// Sets a data value on a contact itself; it takes precedence over its sessions' values.
    /// Keys are lowercase `a-z`, `0-9`, `_` or `-`; values a string, number or boolean
    /// (write role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn set_contact_data(
        &self,
        ctx: &Context<'_>,
        id: ID,
        key: String,
        value: Json<serde_json::Value>,
    ) -> Result<Contact> {
        let gw = gateway(ctx)?;
        let ws = ws(ctx)?;
        let id = parse_id(&id, "contact")?;
        let (key, value) = key_and_value(&key, &value)?;
        gw.store.set_contact_data(ws, id, &key, &value).await?;
        gw.store
            .contact(ws, id)
            .await?
            .map(Contact::alone)
            .ok_or_else(|| Error::new(format!("contact {id} not found")))
    }

    /// Sets a data value on a session; its contact's data view and aggregates follow (write
    /// role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn set_session_data(
        &self,
        ctx: &Context<'_>,
        id: ID,
        key: String,
        value: Json<serde_json::Value>,
    ) -> Result<Session> {
        let gw = gateway(ctx)?;
        let ws = ws(ctx)?;
        let id = parse_id(&id, "session")?;
        let (key, value) = key_and_value(&key, &value)?;
        gw.store.set_session_data(ws, id, &key, &value).await?;
        gw.store
            .session(ws, id)
            .await?
            .map(Session)
            .ok_or_else(|| Error::new(format!("session {id} not found")))
    }

    /// Pauses a source: no scheduled or manual runs until `resumeSource` (write role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn pause_source(&self, ctx: &Context<'_>, name: String) -> Result<Source> {
        set_paused(ctx, &name, true).await
    }

    /// Resumes a paused source (write role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn resume_source(&self, ctx: &Context<'_>, name: String) -> Result<Source> {
        set_paused(ctx, &name, false).await
    }

    /// Asks the scheduler running a source to stop at its next batch (committed batches
    /// stay; the next run resumes from them). False when it is not running (write role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn cancel_sync(&self, ctx: &Context<'_>, source: String) -> Result<bool> {
        let s = known_source(ctx, &source).await?;
        Ok(gateway(ctx)?
            .store
            .request_cancel(ws(ctx)?, &s.name, Utc::now().timestamp_micros())
            .await?)
    }

    /// Syncs a source now and returns its run (write role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn trigger_sync(&self, ctx: &Context<'_>, source: String) -> Result<SyncRun> {
        let gw = gateway(ctx)?;
        let sync = gw
            .sync
            .as_ref()
            .ok_or_else(|| Error::new("syncing is not available in this process"))?;
        let run = sync.trigger(ws(ctx)?, &source).await.map_err(Error::new)?;
        let runs = gw.store.runs(ws(ctx)?, Some(&source), 50, None).await?;
        runs.items
            .into_iter()
            .find(|r| r.id == run)
            .map(SyncRun)
            .ok_or_else(|| Error::new(format!("sync run {run} not found")))
    }

    /// Checks a source's connection, streams and mappings, as `dossier check` does, without
    /// syncing (write role: it connects to the source).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn check_source(&self, ctx: &Context<'_>, name: String) -> Result<crate::SourceCheck> {
        let s = known_source(ctx, &name).await?;
        let sync = gateway(ctx)?
            .sync
            .as_ref()
            .ok_or_else(|| Error::new("checking sources is not available in this process"))?;
        sync.check(ws(ctx)?, &s.name).await.map_err(Error::new)
    }
}

/// A source of the caller's workspace, or an error naming the ones that exist.
async fn known_source(ctx: &Context<'_>, name: &str) -> Result<SourceRow> {
    let sources = gateway(ctx)?.store.sources(ws(ctx)?).await?;
    let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    sources.into_iter().find(|s| s.name == name).ok_or_else(|| {
        Error::new(format!(
            "unknown source {name:?}; sources: {}",
            names.join(", ")
        ))
    })
}

async fn set_paused(ctx: &Context<'_>, name: &str, paused: bool) -> Result<Source> {
    let s = known_source(ctx, name).await?;
    gateway(ctx)?
        .store
        .set_paused(ws(ctx)?, &s.name, paused)
        .await?;
    Ok(Source(s))
}

/// A configured source.
pub(crate) struct Source(SourceRow);

/// A configured source.
#[Object]
impl Source {
    /// Its name in the config.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The connector that reads it.
    async fn connector(&self) -> &str {
        &self.0.connector
    }

    /// Its configuration, secrets redacted.
    async fn config(&self) -> Json<serde_json::Value> {
        Json(self.0.config.clone())
    }

    /// The streams it syncs.
    async fn streams(&self) -> &[String] {
        &self.0.streams
    }

    /// Each stream as configured: its `name`, what it reads (`read`) and its `mapping`, secrets
    /// masked (empty for a source registered by an older version until it is registered again).
    async fn stream_configs(&self) -> Json<&[serde_json::Value]> {
        Json(&self.0.stream_configs)
    }

    /// Its sync schedule, if it has one.
    async fn schedule(&self) -> Option<&str> {
        self.0.schedule.as_deref()
    }

    /// Records its mappings refused, newest first, with the reason (at most 100; write role:
    /// a reason may quote the record).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn rejected_records(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> Result<Vec<RejectedRecord>> {
        if !(0..=100).contains(&first) {
            return Err(Error::new(format!(
                "rejectedRecords: first must be between 0 and 100, not {first}"
            )));
        }
        let rows = gateway(ctx)?
            .store
            .rejected(ws(ctx)?, &self.0.name, first as usize)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(stream, record_id, error)| RejectedRecord {
                stream,
                record_id,
                error,
            })
            .collect())
    }

    /// Scheduling state and health: paused, running, next due time, failures in a row and
    /// the last error (so a source that keeps failing shows without reading logs).
    async fn health(&self, ctx: &Context<'_>) -> Result<SourceHealth> {
        let now = Utc::now().timestamp_micros();
        let row = gateway(ctx)?
            .store
            .schedule(ws(ctx)?, &self.0.name, now)
            .await?;
        Ok(SourceHealth(row))
    }
}

/// A record a source's mapping refused.
#[derive(SimpleObject)]
pub(crate) struct RejectedRecord {
    /// The stream it came from.
    stream: String,
    /// Its id at the source, where the record had one.
    record_id: Option<String>,
    /// Why the mapping refused it.
    error: String,
}

/// A source's scheduling state and health.
pub(crate) struct SourceHealth(Option<dossier_store::ScheduleRow>);

#[Object]
impl SourceHealth {
    /// Paused: no scheduled or manual runs until resumed.
    async fn paused(&self) -> bool {
        self.0.as_ref().is_some_and(|r| r.paused)
    }

    /// A run is in progress (some scheduler holds the source's lease).
    async fn running(&self) -> bool {
        self.0.as_ref().is_some_and(|r| r.running_by.is_some())
    }

    /// The scheduler running it now.
    async fn running_by(&self) -> Option<&str> {
        self.0.as_ref().and_then(|r| r.running_by.as_deref())
    }

    /// When it is next due (none: manual triggers only).
    async fn next_due_at(&self) -> Option<DateTime<Utc>> {
        self.0.as_ref().and_then(|r| r.next_due).map(from_micros)
    }

    /// Failed runs in a row (0 after a success).
    async fn consecutive_failures(&self) -> i64 {
        self.0.as_ref().map_or(0, |r| r.consecutive_failures)
    }

    /// The error of the last failed run.
    async fn last_error(&self) -> Option<&str> {
        self.0.as_ref().and_then(|r| r.last_error.as_deref())
    }

    /// When a run last succeeded.
    async fn last_success_at(&self) -> Option<DateTime<Utc>> {
        self.0
            .as_ref()
            .and_then(|r| r.last_success_at)
            .map(from_micros)
    }
}

/// A page of sync runs.
pub(crate) struct SyncRunConnection(Page<RunRow>);

/// A run on a page of sync runs.
#[derive(SimpleObject)]
pub(crate) struct SyncRunEdge {
    /// Pass as `after` to read the (older) runs that follow this one.
    cursor: String,
    node: SyncRun,
}

/// A page of sync runs, newest first.
#[Object]
impl SyncRunConnection {
    /// The runs of this page.
    async fn edges(&self) -> Vec<SyncRunEdge> {
        self.0
            .items
            .iter()
            .map(|r| SyncRunEdge {
                cursor: cursor::run(r.id),
                node: SyncRun(r.clone()),
            })
            .collect()
    }

    /// Where this page ends.
    async fn page_info(&self) -> PageInfo {
        PageInfo::new(
            self.0.has_next,
            self.0.items.last().map(|r| cursor::run(r.id)),
        )
    }
}

/// One sync of a source.
pub(crate) struct SyncRun(RunRow);

/// One sync of a source.
#[Object]
impl SyncRun {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The source it synced.
    async fn source(&self) -> &str {
        &self.0.source
    }

    /// What started it: `manual`, `schedule` or `api`.
    async fn trigger(&self) -> &str {
        &self.0.trigger
    }

    /// `running`, `succeeded` or `failed`.
    async fn status(&self) -> &str {
        &self.0.status
    }

    async fn started_at(&self) -> DateTime<Utc> {
        from_micros(self.0.started_at)
    }

    /// Null while it runs.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at.map(from_micros)
    }

    /// Records read from the source, over all streams.
    async fn rows_read(&self) -> i64 {
        self.0.rows_read
    }

    /// Records that created or changed a contact or session.
    async fn rows_written(&self) -> i64 {
        self.0.rows_written
    }

    /// Records their mapping refused.
    async fn rows_rejected(&self) -> i64 {
        self.0.rows_rejected
    }

    /// Why it failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// Per-stream counters: stream to `{read, written, rejected, deleted}`, and `retries`
    /// with `retry_errors` when retryable errors were retried.
    async fn streams(&self) -> Json<serde_json::Value> {
        Json(serde_json::to_value(&self.0.streams).unwrap_or_default())
    }

    /// The schedule slot this run served (scheduled runs).
    async fn due_at(&self) -> Option<DateTime<Utc>> {
        self.0.due_at.map(from_micros)
    }

    /// The scheduler (`serve`/`worker` process) that ran it.
    async fn owner(&self) -> Option<&str> {
        self.0.owner.as_deref()
    }

    /// The stream checkpoints it ended at: stream to connector state.
    async fn end_state(&self) -> Option<Json<serde_json::Value>> {
        self.0.end_state.clone().map(Json)
    }
}
