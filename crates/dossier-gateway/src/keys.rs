//! API keys of the caller's workspace over the API (admin role): listed without their
//! secrets, created (the secret is in that one answer only; the store keeps a hash) and
//! revoked. What `dossier keys` does from the command line, for the web console.

use async_graphql::{Context, Enum, Error, ErrorExtensions as _, ID, Object, Result};
use chrono::{DateTime, Utc};
use dossier_core::value::from_micros;
use dossier_store::ApiKey as KeyRow;

use crate::Role;
use crate::auth::RoleGuard;
use crate::context::{gateway, ws};

/// Longest key name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum KeyRole {
    /// Contacts, sessions, segments and shortcuts.
    Read,
    /// Also sets data, saves segments and shortcuts, and triggers syncs.
    Write,
    /// Also sources, connectors and keys.
    Admin,
}

impl From<Role> for KeyRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Read => KeyRole::Read,
            Role::Write => KeyRole::Write,
            Role::Admin => KeyRole::Admin,
        }
    }
}

impl From<KeyRole> for Role {
    fn from(r: KeyRole) -> Self {
        match r {
            KeyRole::Read => Role::Read,
            KeyRole::Write => Role::Write,
            KeyRole::Admin => Role::Admin,
        }
    }
}

/// Reads of API keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyQuery;

#[Object]
impl KeyQuery {
    /// The workspace's API keys, oldest first, revoked and expired ones included; never
    /// their secrets (admin role).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKey>> {
        let keys = gateway(ctx)?.store.keys(Some(ws(ctx)?)).await?;
        Ok(keys.into_iter().map(ApiKey).collect())
    }
}

/// Writes of API keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyMutation;

#[Object]
impl KeyMutation {
    /// Creates a key of the workspace with `role`, expiring `expiresIn` from now when given
    /// (`90d`, `12h`, `2w`, as `dossier keys create --expires-in`) (admin role). The answer
    /// holds the secret: it is not stored (only its hash is) and cannot be shown again.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        role: KeyRole,
        expires_in: Option<String>,
    ) -> Result<CreatedApiKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(Error::new(format!(
                "a key's name is 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::new("a key's name holds no control characters"));
        }
        let expires_at = expires_in
            .map(|text| {
                dossier_core::parse_duration_secs(&text)
                    .ok()
                    .and_then(|secs| secs.checked_mul(1_000_000))
                    .and_then(|micros| Utc::now().timestamp_micros().checked_add(micros))
                    .ok_or_else(|| {
                        Error::new(format!(
                            "expiresIn: {text:?} is not a duration such as 90d, 12h or 2w"
                        ))
                    })
            })
            .transpose()?;
        let (key, secret) = gateway(ctx)?
            .store
            .create_key(ws(ctx)?, name, role.into(), expires_at)
            .await?;
        tracing::info!(key = key.id, workspace = key.workspace, role = %key.role, "API key created over the API");
        Ok(CreatedApiKey { key, secret })
    }

    /// Revokes a key of the workspace at once (admin role): requests presenting it are
    /// refused from now on, and console sessions signed in with it end. Revoking a revoked
    /// key changes nothing. Another workspace's key is not found.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<ApiKey> {
        let gw = gateway(ctx)?;
        let ws = ws(ctx)?;
        let id = id.trim();
        let known = gw.store.keys(Some(ws)).await?;
        if !known.iter().any(|k| k.id == id) {
            return Err(Error::new(format!("no API key {id:?} in this workspace"))
                .extend_with(|_, e| e.set("code", "NOT_FOUND")));
        }
        let key = gw.store.revoke_key(id).await?;
        tracing::info!(
            key = key.id,
            workspace = key.workspace,
            "API key revoked over the API"
        );
        Ok(ApiKey(key))
    }
}

/// An API key, without its secret.
pub(crate) struct ApiKey(KeyRow);

/// An API key, without its secret.
#[Object]
impl ApiKey {
    /// Its public id: the part after `dsk_` of the key.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// The label it was created with.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// What it may do.
    async fn role(&self) -> KeyRole {
        self.0.role.into()
    }

    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }

    /// When it expires, if it does.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at.map(from_micros)
    }

    /// When it was revoked, if it was.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at.map(from_micros)
    }

    /// When it was last used, as far as the server recorded it.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at.map(from_micros)
    }

    /// Whether it is accepted now: neither revoked nor expired.
    async fn active(&self) -> bool {
        self.0.revoked_at.is_none()
            && self
                .0
                .expires_at
                .is_none_or(|e| e > Utc::now().timestamp_micros())
    }
}

/// A key just created, with its secret.
pub(crate) struct CreatedApiKey {
    key: KeyRow,
    secret: String,
}

/// A key just created, with its secret.
#[Object]
impl CreatedApiKey {
    /// The key.
    async fn key(&self) -> ApiKey {
        ApiKey(self.key.clone())
    }

    /// The whole key to present (`dsk_<id>_<secret>`): in this answer only, never again.
    async fn secret(&self) -> &str {
        &self.secret
    }
}
