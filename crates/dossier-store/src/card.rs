//! A contact with the parts its reader asks for (data, aggregates, a first page of sessions)
//! in one statement. Looking one person up is the busiest read a support tool makes, and on
//! PostgreSQL every statement is a round trip: four of them were most of that read's time.

use std::collections::{BTreeMap, HashMap};

use dossier_core::DataValue;
use sqlx::{AssertSqlSafe, Row};

use crate::encoding::decode_value;
use crate::error::Result;
use crate::filter_sql::{Bind, SqlBuilder, bind_all};
use crate::json_sql::{Json, parse_json};
use crate::read::{
    AggregateRead, CONTACT_COLS, SESSION_FIELDS, SessionColumns, contact, fold_aggregates,
};
use crate::{Backend, ContactRow, Page, SessionRow, SqlStore};

/// How a contact is looked up.
#[derive(Debug, Clone, Copy)]
pub enum ContactKey<'a> {
    /// By id; a merged contact's id stands for the contact it merged into.
    Id(i64),
    /// By email identity (normalised before the lookup).
    Email(&'a str),
}

/// What to read along with a contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardParts {
    /// Its data view (own values over session values).
    pub data: bool,
    /// Its aggregate values, every declared rule present.
    pub aggregates: bool,
    /// The first page of its sessions, newest first.
    pub sessions: Option<SessionsPage>,
}

/// The first page of a contact's sessions: of one kind or all, `first` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsPage {
    pub kind: Option<String>,
    pub first: usize,
}

/// A contact and the parts that were asked for. A part is `None` when it was not asked for,
/// or when the key named a merged contact: the contact it merged into comes back alone, and
/// its parts are read separately (merged keys are rare).
#[derive(Debug, Clone)]
pub struct ContactCard {
    pub contact: ContactRow,
    pub data: Option<BTreeMap<String, DataValue>>,
    pub aggregates: Option<BTreeMap<String, DataValue>>,
    pub sessions: Option<Page<SessionRow>>,
}

impl SqlStore {
    /// A contact by id; a merged id returns the contact it merged into.
    pub async fn contact(&self, ws: &str, id: i64) -> Result<Option<ContactRow>> {
        self.contact_alone(ws, ContactKey::Id(id)).await
    }

    /// A contact by email identity (normalised before the lookup).
    pub async fn contact_by_email(&self, ws: &str, email: &str) -> Result<Option<ContactRow>> {
        self.contact_alone(ws, ContactKey::Email(email)).await
    }

    /// A contact by `key` without any of its parts.
    async fn contact_alone(&self, ws: &str, key: ContactKey<'_>) -> Result<Option<ContactRow>> {
        let card = self.contact_card(ws, key, &CardParts::default()).await?;
        Ok(card.map(|c| c.contact))
    }

    /// A contact and the `parts` asked for, in one statement.
    pub async fn contact_card(
        &self,
        ws: &str,
        key: ContactKey<'_>,
        parts: &CardParts,
    ) -> Result<Option<ContactCard>> {
        let mut b = SqlBuilder::new(0);
        let ws_p = b.param(Bind::Text(ws.into()));
        let (from, cond) = match key {
            ContactKey::Id(id) => {
                let id_p = b.param(Bind::Int(id));
                (
                    "contacts c",
                    format!("c.id = {id_p} AND c.workspace = {ws_p}"),
                )
            }
            ContactKey::Email(email) => {
                let Ok(email) = dossier_core::identity::normalise_email(email) else {
                    return Ok(None);
                };
                let email_p = b.param(Bind::Text(email));
                (
                    "identities i JOIN contacts c ON c.id = i.contact_id",
                    format!(
                        "i.workspace = {ws_p} AND i.kind = 'email' AND i.value = {email_p} AND i.retired = 0 AND c.workspace = {ws_p}"
                    ),
                )
            }
        };
        let Json {
            agg,
            array,
            object,
            as_text,
            ..
        } = Json::new(self.backend == Backend::Sqlite);
        let mut cols = format!("{CONTACT_COLS}, c.merged_into");
        if parts.data {
            cols += &format!(
                ", (SELECT {agg}({array}(d.key, d.value)){as_text} FROM contact_data d \
                 WHERE d.contact_id = c.id) AS card_data"
            );
        }
        if parts.aggregates {
            // As `SqlStore::aggregates` reads them: a rule's row with no contact when the
            // contact has no value for it.
            cols += &format!(
                ", (SELECT {agg}({array}(r.name, r.definition, a.contact_id, a.value)){as_text} \
                 FROM aggregate_rules r LEFT JOIN contact_aggregates a ON a.name = r.name AND a.contact_id = c.id \
                 WHERE r.workspace = {ws_p}) AS card_aggregates"
            );
        }
        if let Some(page) = &parts.sessions {
            let fields = SESSION_FIELDS
                .iter()
                .map(|f| format!("'{f}', s.{f}"))
                .collect::<Vec<_>>()
                .join(", ");
            let kind = match &page.kind {
                Some(k) => format!(" AND s.kind = {}", b.param(Bind::Text(k.clone()))),
                None => String::new(),
            };
            let limit = b.param(Bind::Int(page.first as i64 + 1));
            cols += &format!(
                ", (SELECT {agg}({object}({fields})){as_text} FROM (SELECT * FROM sessions s \
                 WHERE s.contact_id = c.id AND s.deleted = 0{kind} \
                 ORDER BY s.started_at DESC, s.id DESC LIMIT {limit}) s) AS card_sessions"
            );
        }
        let sql = format!("SELECT {cols} FROM {from} WHERE {cond}");
        let Some(row) = bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        if row.try_get::<Option<i64>, _>("merged_into")?.is_some() {
            return Ok(self
                .live_contact(ws, Some(row))
                .await?
                .map(|contact| ContactCard {
                    contact,
                    data: None,
                    aggregates: None,
                    sessions: None,
                }));
        }
        let contact = contact(&row)?;
        let id = contact.id;
        let data = if parts.data {
            let pairs: Vec<(String, String)> =
                parse_json("contact data", row.try_get("card_data")?)?;
            Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| Ok((k, decode_value(&v)?)))
                    .collect::<Result<_>>()?,
            )
        } else {
            None
        };
        let aggregates = if parts.aggregates {
            let rows: Vec<AggregateRead> =
                parse_json("aggregates", row.try_get("card_aggregates")?)?;
            let mut all: HashMap<i64, _> = fold_aggregates(rows, &[id])?;
            all.remove(&id)
        } else {
            None
        };
        let sessions = match &parts.sessions {
            Some(page) => {
                let stored: Vec<SessionColumns> =
                    parse_json("sessions", row.try_get("card_sessions")?)?;
                let mut items = stored
                    .into_iter()
                    .map(SessionColumns::decode)
                    .collect::<Result<Vec<_>>>()?;
                // A JSON aggregate need not keep its input's order.
                items.sort_by_key(|s| std::cmp::Reverse((s.started_at, s.id)));
                Some(Page::cut(items, page.first))
            }
            None => None,
        };
        Ok(Some(ContactCard {
            contact,
            data,
            aggregates,
            sessions,
        }))
    }
}
