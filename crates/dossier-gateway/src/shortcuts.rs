//! Saved shortcuts and rendering them for a contact (and one of its sessions).

use async_graphql::{Context, Error, ID, Object, Result};
use chrono::{DateTime, Utc};
use dossier_core::template::Template;
use dossier_core::value::from_micros;
use dossier_store::ShortcutRow;

use crate::Role;
use crate::auth::RoleGuard;
use crate::context::{gateway, parse_id, ws};

/// Reads of shortcuts, and rendering.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShortcutQuery;

#[Object]
impl ShortcutQuery {
    /// Every saved shortcut, by name.
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn shortcuts(&self, ctx: &Context<'_>) -> Result<Vec<Shortcut>> {
        let rows = gateway(ctx)?.store.shortcuts(ws(ctx)?).await?;
        Ok(rows.into_iter().map(Shortcut).collect())
    }

    /// Renders a saved shortcut (`name`) or a template given inline (`template`) for a
    /// contact and optionally one of its sessions. Unknown values render as their fallback
    /// (`{{ data.plan | "free" }}`) or empty.
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn render_shortcut(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        template: Option<String>,
        contact_id: ID,
        session_id: Option<ID>,
    ) -> Result<String> {
        let gw = gateway(ctx)?;
        let ws = ws(ctx)?;
        let source = match (name, template) {
            (Some(name), None) => {
                gw.store
                    .shortcut(ws, &name)
                    .await?
                    .ok_or_else(|| Error::new(format!("no shortcut named {name:?}")))?
                    .template
            }
            (None, Some(t)) => t,
            _ => return Err(Error::new("give either name or template")),
        };
        let template = Template::parse(&source)?;
        let contact = parse_id(&contact_id, "contact")?;
        let session = session_id.map(|s| parse_id(&s, "session")).transpose()?;
        Ok(gw
            .store
            .render_template(ws, &template, contact, session)
            .await?)
    }
}

/// Writes of shortcuts.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShortcutMutation;

#[Object]
impl ShortcutMutation {
    /// Creates or replaces a shortcut (write role). A template that does not parse is
    /// refused with its line and column.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn save_shortcut(
        &self,
        ctx: &Context<'_>,
        name: String,
        template: String,
    ) -> Result<Shortcut> {
        let row = gateway(ctx)?
            .store
            .save_shortcut(ws(ctx)?, &name, &template)
            .await?;
        Ok(Shortcut(row))
    }

    /// Deletes a shortcut; false if there was none (write role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn delete_shortcut(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        Ok(gateway(ctx)?.store.delete_shortcut(ws(ctx)?, &name).await?)
    }
}

/// A saved templated answer.
pub(crate) struct Shortcut(ShortcutRow);

#[Object]
impl Shortcut {
    /// Its name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Its template source.
    async fn template(&self) -> &str {
        &self.0.template
    }

    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }

    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        from_micros(self.0.updated_at)
    }
}
