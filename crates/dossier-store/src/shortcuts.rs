//! Saved shortcuts (templated answers for support) and rendering them for a contact and,
//! optionally, one of its sessions. Templates are checked when saved; rendering is pure
//! substitution of values the store already holds.

use std::collections::BTreeMap;

use dossier_core::template::{Template, TemplateContext, TemplatePath};
use dossier_core::value::from_micros;
use dossier_core::{DataValue, ProfileField};

use crate::backend::{SqlStore, now_micros};
use crate::names::check_name;
use crate::{ContactRow, Result, SessionRow, StoreError};

/// A saved shortcut.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ShortcutRow {
    pub name: String,
    pub template: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a template can see: one contact, its data and aggregates, and maybe a session.
struct RenderContext {
    contact: ContactRow,
    data: BTreeMap<String, DataValue>,
    aggs: BTreeMap<String, DataValue>,
    session: Option<SessionRow>,
}

impl RenderContext {
    fn profile(&self, f: ProfileField) -> Option<&str> {
        let c = &self.contact;
        match f {
            ProfileField::Email => c.email.as_deref(),
            ProfileField::Phone => c.phone.as_deref(),
            ProfileField::FirstName => c.first_name.as_deref(),
            ProfileField::LastName => c.last_name.as_deref(),
            ProfileField::Company => c.company.as_deref(),
            ProfileField::Country => c.country.as_deref(),
            ProfileField::City => c.city.as_deref(),
            ProfileField::Locale => c.locale.as_deref(),
        }
    }
}

impl TemplateContext for RenderContext {
    fn value(&self, path: &TemplatePath) -> Option<DataValue> {
        let text = |s: Option<&str>| s.map(|s| DataValue::String(s.to_string()));
        match path {
            TemplatePath::Profile(f) => text(self.profile(*f)),
            TemplatePath::NameFirst => text(self.profile(ProfileField::FirstName)),
            TemplatePath::NameLast => text(self.profile(ProfileField::LastName)),
            TemplatePath::NameFull => {
                let parts: Vec<&str> = [ProfileField::FirstName, ProfileField::LastName]
                    .into_iter()
                    .filter_map(|f| self.profile(f))
                    .collect();
                (!parts.is_empty()).then(|| DataValue::String(parts.join(" ")))
            }
            TemplatePath::Id => Some(DataValue::String(self.contact.id.to_string())),
            TemplatePath::Data(k) => self.data.get(k.as_str()).cloned(),
            TemplatePath::Agg(k) => self.aggs.get(k.as_str()).cloned(),
            TemplatePath::SessionId => self
                .session
                .as_ref()
                .map(|s| DataValue::String(s.id.to_string())),
            TemplatePath::SessionKind => self
                .session
                .as_ref()
                .map(|s| DataValue::String(s.kind.clone())),
            TemplatePath::SessionStartedAt => self
                .session
                .as_ref()
                .map(|s| DataValue::DateTime(from_micros(s.started_at))),
            TemplatePath::SessionData(k) => self.session.as_ref()?.data.get(k.as_str()).cloned(),
        }
    }
}

impl SqlStore {
    /// Creates or replaces a shortcut; a template that does not parse is refused with its
    /// position.
    pub async fn save_shortcut(&self, ws: &str, name: &str, template: &str) -> Result<ShortcutRow> {
        check_name("shortcut", name)?;
        Template::parse(template)?;
        let now = now_micros();
        sqlx::query(
            "INSERT INTO shortcuts (workspace, name, template, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (workspace, name) DO UPDATE SET template = excluded.template, updated_at = excluded.updated_at",
        )
        .bind(ws)
        .bind(name)
        .bind(template)
        .bind(now)
        .execute(&self.write)
        .await?;
        self.shortcut(ws, name)
            .await?
            .ok_or_else(|| StoreError::corrupt("shortcut", "vanished after saving"))
    }

    pub async fn delete_shortcut(&self, ws: &str, name: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM shortcuts WHERE workspace = $1 AND name = $2")
            .bind(ws)
            .bind(name)
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub async fn shortcuts(&self, ws: &str) -> Result<Vec<ShortcutRow>> {
        Ok(sqlx::query_as(
            "SELECT name, template, created_at, updated_at FROM shortcuts WHERE workspace = $1 ORDER BY name",
        )
        .bind(ws)
        .fetch_all(&self.read)
        .await?)
    }

    pub async fn shortcut(&self, ws: &str, name: &str) -> Result<Option<ShortcutRow>> {
        Ok(sqlx::query_as(
            "SELECT name, template, created_at, updated_at FROM shortcuts WHERE workspace = $1 AND name = $2",
        )
        .bind(ws)
        .bind(name)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Renders a template for a contact (merged ids resolve to the survivor) and optionally
    /// one of that contact's sessions.
    pub async fn render_template(
        &self,
        ws: &str,
        template: &Template,
        contact: i64,
        session: Option<i64>,
    ) -> Result<String> {
        let contact = self
            .contact(ws, contact)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "contact",
                id: contact.to_string(),
            })?;
        let session = match session {
            None => None,
            Some(id) => {
                let s = self
                    .session(ws, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound {
                        what: "session",
                        id: id.to_string(),
                    })?;
                if s.contact_id != Some(contact.id) {
                    return Err(StoreError::Refused(format!(
                        "session {id} does not belong to contact {}",
                        contact.id
                    )));
                }
                Some(s)
            }
        };
        let ids = [contact.id];
        let data = self.contact_data(&ids).await?.remove(&contact.id);
        let aggs = self.aggregates(ws, &ids).await?.remove(&contact.id);
        let ctx = RenderContext {
            contact,
            data: data.unwrap_or_default(),
            aggs: aggs.unwrap_or_default(),
            session,
        };
        Ok(template.render(&ctx))
    }
}
