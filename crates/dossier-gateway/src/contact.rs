//! A contact and what hangs off it: its page, identities, sessions and their pages.

use std::collections::BTreeMap;

use async_graphql::{Context, Error, ID, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use dossier_core::value::from_micros;
use dossier_core::{DataValue, Filter, FilterField};
use dossier_store::{
    CardParts, ContactCard, ContactRow, IdentityRow, OrderBy, Page, Placed, SessionRow,
    SessionsPage,
};

use crate::context::{PageInfo, data_json, gateway, loaders, page_size, parse_cursor, ws};
use crate::cursor;
use crate::loaders::SessionsKey;

/// A page of contacts.
pub(crate) struct ContactConnection {
    page: Page<ContactRow>,
    /// The cursor of each contact of the page.
    cursors: Vec<String>,
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
        let cursors = page.items.iter().map(|c| cursor::contact(c.id)).collect();
        Ok(Self {
            page,
            cursors,
            filter,
        })
    }

    /// A page of the contacts matching `filter` in `order`; `spec` names the ordering in its
    /// cursors, so that a cursor of another ordering is refused.
    pub(crate) async fn ordered(
        ctx: &Context<'_>,
        filter: Option<Filter>,
        order: &[OrderBy<FilterField>],
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Self> {
        let gw = gateway(ctx)?;
        let first = page_size(gw, first)?;
        let spec = cursor::order_spec(order.iter().map(|o| (o.field.to_string(), o.descending)));
        let after = match after {
            Some(a) => Some(cursor::parse_ordered(&a, &spec).map_err(Error::new)?),
            None => None,
        };
        let page = gw
            .store
            .contacts_ordered(ws(ctx)?, filter.as_ref(), order, first, after.as_ref())
            .await?;
        let cursors = page
            .items
            .iter()
            .map(|p| cursor::ordered(&spec, &p.position))
            .collect();
        Ok(Self {
            page: Page {
                items: page.items.into_iter().map(|p| p.row).collect(),
                has_next: page.has_next,
            },
            cursors,
            filter,
        })
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
            .zip(&self.cursors)
            .map(|(c, cursor)| ContactEdge {
                cursor: cursor.clone(),
                node: Contact::listed(c.clone()),
            })
            .collect()
    }

    /// Where this page ends.
    async fn page_info(&self) -> PageInfo {
        PageInfo::new(self.page.has_next, self.cursors.last().cloned())
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
    pub(crate) fn card(card: ContactCard, parts: &CardParts) -> Self {
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

    /// Email, trimmed and lowercased (the form the contact's email identity takes).
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    /// Phone number: as the source wrote it (trimmed) where the mapping sets `profile.phone`;
    /// otherwise, read as an identity (`identities.phone`), in E.164 form (`+33612345678`).
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

    /// Aggregate values, rule name to value. Over no sessions a count, distinct count or sum
    /// reads 0 (filters agree: `agg.transactions = 0` finds such contacts); an average,
    /// minimum, maximum, first or last is absent.
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
            return Ok(SessionConnection::newest_first(page.clone()));
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
        Ok(SessionConnection::newest_first(page.unwrap_or(Page {
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

/// A page of sessions, with the cursor of each.
pub(crate) struct SessionConnection(Page<SessionRow>, Vec<String>);

impl SessionConnection {
    /// A page of a contact's sessions, newest first.
    pub(crate) fn newest_first(page: Page<SessionRow>) -> Self {
        let cursors = page
            .items
            .iter()
            .map(|s| cursor::session(s.started_at, s.id))
            .collect();
        Self(page, cursors)
    }

    /// A page of an ordered list of sessions; `spec` names the ordering in its cursors.
    pub(crate) fn placed(page: Page<Placed<SessionRow>>, spec: &str) -> Self {
        let cursors = page
            .items
            .iter()
            .map(|p| cursor::ordered(spec, &p.position))
            .collect();
        let items = page.items.into_iter().map(|p| p.row).collect();
        Self(
            Page {
                items,
                has_next: page.has_next,
            },
            cursors,
        )
    }
}

/// A session on a page of sessions.
#[derive(SimpleObject)]
pub(crate) struct SessionEdge {
    /// Pass as `after` to read the sessions that follow this one.
    cursor: String,
    node: Session,
}

/// A page of sessions: a contact's newest first, the root list in the order it asks for.
#[Object]
impl SessionConnection {
    /// The sessions of this page.
    async fn edges(&self) -> Vec<SessionEdge> {
        self.0
            .items
            .iter()
            .zip(&self.1)
            .map(|(s, cursor)| SessionEdge {
                cursor: cursor.clone(),
                node: Session(s.clone()),
            })
            .collect()
    }

    /// Where this page ends.
    async fn page_info(&self) -> PageInfo {
        PageInfo::new(self.0.has_next, self.1.last().cloned())
    }
}

/// Something a contact did or had: an order, a visit, a ticket.
pub(crate) struct Session(pub(crate) SessionRow);

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
