//! The GraphQL types and their resolvers.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, Error, ID, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use dossier_core::value::from_micros;
use dossier_core::{DataKey, DataValue, Filter};
use dossier_store::{
    CardParts, ContactCard, ContactKey, ContactRow, IdentityRow, Page, RunRow, SessionRow,
    SessionsPage, SourceRow,
};

use crate::auth::RoleGuard;
use crate::connectors::Connector;
use crate::filter::ContactFilter;
use crate::loaders::{Loaders, SessionsKey};
use crate::{Caller, Gateway, Role, cursor};

pub(crate) fn gateway<'a>(ctx: &Context<'a>) -> Result<&'a Gateway> {
    ctx.data::<Gateway>()
}

fn connector_admin<'a>(ctx: &Context<'a>) -> Result<&'a dyn crate::ConnectorAdmin> {
    gateway(ctx)?
        .connectors
        .as_deref()
        .ok_or_else(|| Error::new("connectors are not available in this process"))
}

pub(crate) fn loaders<'a>(ctx: &Context<'a>) -> Result<&'a Loaders> {
    Ok(ctx.data::<Arc<Loaders>>()?)
}

/// The workspace of the request's caller.
pub(crate) fn ws<'a>(ctx: &Context<'a>) -> Result<&'a str> {
    Ok(&ctx.data::<Caller>()?.workspace)
}

/// The page size a connection serves for `first`, within the configured bounds.
pub(crate) fn page_size(gw: &Gateway, first: Option<i32>) -> Result<usize> {
    let max = gw.config.max_page_size;
    match first {
        None => Ok(gw.config.default_page_size.clamp(1, max.max(1))),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(Error::new(format!(
            "first must be between 1 and {max} (got {n})"
        ))),
    }
}

pub(crate) fn parse_id(id: &ID, what: &str) -> Result<i64> {
    id.parse::<i64>()
        .map_err(|_| Error::new(format!("invalid {what} id")))
}

pub(crate) fn parse_cursor<T>(
    after: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>> {
    after.map(parse).transpose().map_err(Error::new)
}

fn data_json(data: &BTreeMap<String, DataValue>) -> Json<serde_json::Value> {
    Json(serde_json::Value::Object(
        data.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
    ))
}

fn key_and_value(key: &str, value: &serde_json::Value) -> Result<(DataKey, DataValue)> {
    let key = DataKey::new(key)?;
    let value = DataValue::from_json(key.as_str(), value)?;
    Ok((key, value))
}

/// Whether more items follow a page, and where the page ends.
#[derive(Debug, Clone, SimpleObject)]
pub(crate) struct PageInfo {
    /// More items follow: ask again with `after: endCursor`.
    has_next_page: bool,
    /// The cursor of the page's last item (null for an empty page).
    end_cursor: Option<String>,
}

impl PageInfo {
    pub(crate) fn new(has_next_page: bool, end_cursor: Option<String>) -> Self {
        Self {
            has_next_page,
            end_cursor,
        }
    }
}

/// Every read, merged from the modules that serve them.
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(
    CoreQuery,
    crate::segments::SegmentQuery,
    crate::shortcuts::ShortcutQuery,
    crate::identity::IdentityQuery,
);

/// Every write, merged from the modules that serve them.
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(
    CoreMutation,
    crate::segments::SegmentMutation,
    crate::shortcuts::ShortcutMutation,
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

    /// Contacts matching `where` and `filter` (both when both are given), in id order.
    /// `filter` is the text form, e.g. `country = "FR" and agg.avg_basket > 50`.
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn contacts(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "where")] input: Option<ContactFilter>,
        filter: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ContactConnection> {
        let mut parts = vec![];
        if let Some(f) = input {
            parts.push(f.to_filter().map_err(Error::new)?);
        }
        if let Some(text) = filter {
            parts.push(dossier_core::filter_text::parse_filter(&text)?);
        }
        let filter = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Filter::And(parts)),
        };
        if let Some(f) = &filter {
            defined_aggregates_only(ctx, f).await?;
        }
        ContactConnection::load(ctx, filter, first, after).await
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

    /// Installs a connector plugin from the plugin directory (`file` is a file name there),
    /// checking `sha256` when given, and returns it (admin role). Refused unless the server's
    /// config sets `server.allow_plugin_install = true`.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn install_connector(
        &self,
        ctx: &Context<'_>,
        file: String,
        sha256: Option<String>,
    ) -> Result<Connector> {
        let gw = gateway(ctx)?;
        if !gw.config.allow_plugin_install {
            return Err(Error::new(
                "installing plugins over the API is disabled; set `server.allow_plugin_install = true` \
                 in the config to allow it (an admin key could then load code into the server), or \
                 use `dossier connectors install`",
            ));
        }
        connector_admin(ctx)?
            .install(&file, sha256.as_deref())
            .await
            .map(Connector)
            .map_err(Error::new)
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
}

/// Refuses a filter on an aggregate the workspace's rules do not define, listing those they do.
pub(crate) async fn defined_aggregates_only(ctx: &Context<'_>, filter: &Filter) -> Result<()> {
    let rules = gateway(ctx)?.store.rules(ws(ctx)?).await?;
    filter.check_aggregates(rules.iter().map(|r| r.name.as_str()))?;
    Ok(())
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

/// A page of contacts.
pub(crate) struct ContactConnection {
    page: Page<ContactRow>,
    filter: Option<Filter>,
}

/// A contact on a page of contacts.
#[derive(SimpleObject)]
pub(crate) struct ContactEdge {
    /// Pass as `after` to read the contacts that follow this one.
    cursor: String,
    node: Contact,
}

impl ContactConnection {
    /// A page of the contacts matching `filter`.
    pub(crate) async fn load(
        ctx: &Context<'_>,
        filter: Option<Filter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Self> {
        let gw = gateway(ctx)?;
        let first = page_size(gw, first)?;
        let after = parse_cursor(after.as_deref(), cursor::parse_contact)?;
        let page = gw
            .store
            .contacts(ws(ctx)?, filter.as_ref(), first, after)
            .await?;
        Ok(Self { page, filter })
    }
}

/// A page of contacts.
#[Object]
impl ContactConnection {
    /// The contacts of this page.
    async fn edges(&self) -> Vec<ContactEdge> {
        self.page
            .items
            .iter()
            .map(|c| ContactEdge {
                cursor: cursor::contact(c.id),
                node: Contact::listed(c.clone()),
            })
            .collect()
    }

    /// Where this page ends.
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.page.has_next,
            end_cursor: self.page.items.last().map(|c| cursor::contact(c.id)),
        }
    }

    /// How many contacts match the filter, over all pages (counted only when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let gw = gateway(ctx)?;
        Ok(gw
            .store
            .count_contacts(ws(ctx)?, self.filter.as_ref())
            .await?)
    }
}

/// A person: profile fields, identities, data, aggregates and sessions.
pub(crate) struct Contact(pub(crate) ContactRow, Siblings, Prefetched);

/// Parts of a contact read along with it (a root lookup's card), served without another read.
#[derive(Default)]
struct Prefetched {
    data: Option<BTreeMap<String, DataValue>>,
    aggregates: Option<BTreeMap<String, DataValue>>,
    /// The first page of sessions and what it was read for.
    sessions: Option<(SessionsPage, Page<SessionRow>)>,
}

/// Whether a contact's per-contact fields can share store calls with other contacts'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Siblings {
    /// On a page or under sessions: the fields go through the request's data loaders, one
    /// call per field for all the contacts at that level.
    Batched,
    /// Alone (a root `contact` or a mutation's answer): nothing to batch with, so the store
    /// is called at once rather than after the loaders' wait for more keys, which would
    /// be most of a small request's time.
    Alone,
}

impl Contact {
    /// A contact among others at its level of the document.
    pub(crate) fn listed(row: ContactRow) -> Self {
        Self(row, Siblings::Batched, Prefetched::default())
    }

    /// A contact with no siblings at its level of the document.
    pub(crate) fn alone(row: ContactRow) -> Self {
        Self(row, Siblings::Alone, Prefetched::default())
    }

    /// A contact read with the `parts` of it a document asks for.
    fn card(card: ContactCard, parts: &CardParts) -> Self {
        let prefetched = Prefetched {
            data: card.data,
            aggregates: card.aggregates,
            sessions: parts.sessions.clone().zip(card.sessions),
        };
        Self(card.contact, Siblings::Alone, prefetched)
    }
}

/// A person: profile fields, identities, data, aggregates and sessions.
#[Object]
impl Contact {
    /// The contact's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Normalised (trimmed, lowercase) email.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    /// Normalised phone number.
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }

    async fn first_name(&self) -> Option<&str> {
        self.0.first_name.as_deref()
    }

    async fn last_name(&self) -> Option<&str> {
        self.0.last_name.as_deref()
    }

    async fn company(&self) -> Option<&str> {
        self.0.company.as_deref()
    }

    /// ISO 3166-1 alpha-2 country code, upper case.
    async fn country(&self) -> Option<&str> {
        self.0.country.as_deref()
    }

    async fn city(&self) -> Option<&str> {
        self.0.city.as_deref()
    }

    async fn locale(&self) -> Option<&str> {
        self.0.locale.as_deref()
    }

    /// When the contact was created: its source's creation time when known.
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }

    /// When the contact last changed in Dossier.
    async fn updated_at(&self) -> DateTime<Utc> {
        from_micros(self.0.updated_at)
    }

    /// Custom data, key to value: the contact's own values over its sessions' values.
    async fn data(&self, ctx: &Context<'_>) -> Result<Json<serde_json::Value>> {
        if let Some(data) = &self.2.data {
            return Ok(data_json(data));
        }
        let id = self.0.id;
        let data = match self.1 {
            Siblings::Batched => loaders(ctx)?.data.load_one(id).await?,
            Siblings::Alone => gateway(ctx)?.store.contact_data(&[id]).await?.remove(&id),
        };
        Ok(data_json(&data.unwrap_or_default()))
    }

    /// Aggregate values, rule name to value (absent when a rule has nothing to aggregate).
    async fn aggregates(&self, ctx: &Context<'_>) -> Result<Json<serde_json::Value>> {
        if let Some(aggs) = &self.2.aggregates {
            return Ok(data_json(aggs));
        }
        let id = self.0.id;
        let aggs = match self.1 {
            Siblings::Batched => loaders(ctx)?.aggregates.load_one(id).await?,
            Siblings::Alone => gateway(ctx)?
                .store
                .aggregates(ws(ctx)?, &[id])
                .await?
                .remove(&id),
        };
        Ok(data_json(&aggs.unwrap_or_default()))
    }

    /// The saved segments this contact is in now.
    async fn segments(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(gateway(ctx)?
            .store
            .segments_of_contact(ws(ctx)?, self.0.id)
            .await?)
    }

    /// Where each profile field and data value came from (source, stream, record, time).
    async fn origins(&self, ctx: &Context<'_>) -> Result<Vec<crate::identity::ValueOrigin>> {
        let rows = gateway(ctx)?
            .store
            .value_origins(ws(ctx)?, self.0.id)
            .await?;
        Ok(rows.into_iter().map(crate::identity::ValueOrigin).collect())
    }

    /// Merges into or out of this contact, refused ones included, newest first.
    async fn merges(&self, ctx: &Context<'_>) -> Result<Vec<crate::identity::Merge>> {
        let rows = gateway(ctx)?
            .store
            .merges(ws(ctx)?, Some(self.0.id), 100)
            .await?;
        Ok(rows.into_iter().map(crate::identity::Merge).collect())
    }

    /// The identities that resolve to this contact.
    async fn identities(&self, ctx: &Context<'_>) -> Result<Vec<Identity>> {
        let id = self.0.id;
        let identities = match self.1 {
            Siblings::Batched => loaders(ctx)?.identities.load_one(id).await?,
            Siblings::Alone => gateway(ctx)?.store.identities(&[id]).await?.remove(&id),
        };
        Ok(identities
            .unwrap_or_default()
            .into_iter()
            .map(Identity)
            .collect())
    }

    /// The contact's sessions, newest first, optionally of one kind.
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        kind: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<SessionConnection> {
        let first = page_size(gateway(ctx)?, first)?;
        let before = parse_cursor(after.as_deref(), cursor::parse_session)?;
        if let Some((asked, page)) = &self.2.sessions
            && before.is_none()
            && asked.first == first
            && asked.kind == kind
        {
            return Ok(SessionConnection(page.clone()));
        }
        let id = self.0.id;
        let page = match self.1 {
            Siblings::Batched => {
                let key = SessionsKey {
                    contact: id,
                    kind,
                    first,
                    before,
                };
                loaders(ctx)?.sessions.load_one(key).await?
            }
            Siblings::Alone => gateway(ctx)?
                .store
                .sessions_of(&[id], kind.as_deref(), first, before)
                .await?
                .remove(&id),
        };
        Ok(SessionConnection(page.unwrap_or(Page {
            items: vec![],
            has_next: false,
        })))
    }
}

/// A way to recognise a contact: `email`, `phone` or `external` (`source:stream:id`).
pub(crate) struct Identity(IdentityRow);

/// A way to recognise a contact.
#[Object]
impl Identity {
    /// `email`, `phone` or `external` (an id in a source).
    async fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The normalised value; `source:stream:id` for an external id.
    async fn value(&self) -> &str {
        &self.0.value
    }
}

/// A page of sessions.
pub(crate) struct SessionConnection(Page<SessionRow>);

/// A session on a page of sessions.
#[derive(SimpleObject)]
pub(crate) struct SessionEdge {
    /// Pass as `after` to read the (older) sessions that follow this one.
    cursor: String,
    node: Session,
}

/// A page of sessions, newest first.
#[Object]
impl SessionConnection {
    /// The sessions of this page.
    async fn edges(&self) -> Vec<SessionEdge> {
        self.0
            .items
            .iter()
            .map(|s| SessionEdge {
                cursor: cursor::session(s.started_at, s.id),
                node: Session(s.clone()),
            })
            .collect()
    }

    /// Where this page ends.
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.0.has_next,
            end_cursor: self
                .0
                .items
                .last()
                .map(|s| cursor::session(s.started_at, s.id)),
        }
    }
}

/// Something a contact did or had: an order, a visit, a ticket.
pub(crate) struct Session(SessionRow);

/// Something a contact did or had: an order, a visit, a ticket.
#[Object]
impl Session {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// What kind of session this is (`order`, `visit`, ...), as its mapping says.
    async fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The source it was synced from.
    async fn source(&self) -> &str {
        &self.0.source
    }

    /// The stream of the source it was synced from.
    async fn stream(&self) -> &str {
        &self.0.stream
    }

    /// Its id in the source.
    async fn external_id(&self) -> &str {
        &self.0.external_id
    }

    /// When it started (sessions are ordered by this).
    async fn started_at(&self) -> DateTime<Utc> {
        from_micros(self.0.started_at)
    }

    /// When it ended, if it has an end.
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.0.ended_at.map(from_micros)
    }

    /// Custom data, key to value.
    async fn data(&self) -> Json<serde_json::Value> {
        data_json(&self.0.data)
    }

    /// The contact it belongs to, if it is linked to one.
    async fn contact(&self, ctx: &Context<'_>) -> Result<Option<Contact>> {
        let Some(id) = self.0.contact_id else {
            return Ok(None);
        };
        Ok(loaders(ctx)?
            .contacts
            .load_one(id)
            .await?
            .map(Contact::listed))
    }
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

    /// Its sync schedule, if it has one.
    async fn schedule(&self) -> Option<&str> {
        self.0.schedule.as_deref()
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
        PageInfo {
            has_next_page: self.0.has_next,
            end_cursor: self.0.items.last().map(|r| cursor::run(r.id)),
        }
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
