//! API keys: created with a role in one workspace, shown once, kept as a SHA-256 of the
//! secret, revocable and optionally expiring.
//!
//! A key reads `dsk_<id>_<secret>`: the id finds the row (and names the key in lists and
//! logs), the secret is 32 random bytes. A fast hash is enough for secrets of that entropy;
//! comparison is constant-time.

use std::fmt;
use std::str::FromStr;

use dossier_core::sha256_hex;
use rand::RngCore as _;
use sqlx::Row as _;

use crate::backend::{SqlStore, now_micros};
use crate::{Result, StoreError};

const PREFIX: &str = "dsk_";

/// What a key may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Contacts, sessions, segments and shortcuts.
    Read,
    /// Also sets data and triggers syncs.
    Write,
    /// Also sources, connectors, rules and keys.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

    /// The role's name: `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: expected read, write or admin"))
    }
}

/// A key as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's public id (`dsk_<id>_...`).
    pub id: String,
    /// The workspace the key sees, and the only one.
    pub workspace: String,
    /// A label chosen at creation.
    pub name: String,
    pub role: Role,
    /// Epoch microseconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// Why a presented key was refused. The messages never say whether a key id exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Not a key, unknown, or a wrong secret.
    Invalid,
    Revoked,
    Expired,
}

impl fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyRefusal::Invalid => "invalid API key",
            KeyRefusal::Revoked => "this API key was revoked",
            KeyRefusal::Expired => "this API key has expired",
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal strings, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The id part of a presented key, if it has the key's shape.
fn key_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (ok(id, 12) && ok(secret, 64)).then_some(id)
}

fn key_row(r: &sqlx::any::AnyRow) -> Result<ApiKey> {
    let role: String = r.try_get("role")?;
    Ok(ApiKey {
        id: r.try_get("id")?,
        workspace: r.try_get("workspace")?,
        name: r.try_get("name")?,
        role: role
            .parse()
            .map_err(|e| StoreError::corrupt("api key role", e))?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

const COLUMNS: &str = "id, workspace, name, role, created_at, expires_at, revoked_at, last_used_at";

impl SqlStore {
    /// Creates a key (and its workspace, if new); returns it with the full key, which is
    /// not kept and cannot be shown again.
    pub async fn create_key(
        &self,
        ws: &str,
        name: &str,
        role: Role,
        expires_at: Option<i64>,
    ) -> Result<(ApiKey, String)> {
        self.ensure_workspace(ws).await?;
        let mut raw = [0u8; 38];
        rand::rng().fill_bytes(&mut raw);
        let id = hex(&raw[..6]);
        let token = format!("{PREFIX}{id}_{}", hex(&raw[6..]));
        let now = now_micros();
        sqlx::query(
            "INSERT INTO api_keys (id, workspace, name, role, secret_sha256, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(ws)
        .bind(name)
        .bind(role.as_str())
        .bind(sha256_hex(&token))
        .bind(now)
        .bind(expires_at)
        .execute(&self.write)
        .await?;
        let key = ApiKey {
            id,
            workspace: ws.to_string(),
            name: name.to_string(),
            role,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        Ok((key, token))
    }

    /// The key a request presents, or why it is refused.
    pub async fn authenticate(&self, token: &str) -> Result<Result<ApiKey, KeyRefusal>> {
        let Some(id) = key_id(token.trim()) else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        let row = sqlx::query(
            "SELECT id, workspace, name, role, created_at, expires_at, revoked_at, last_used_at, \
             secret_sha256 FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        let stored: String = row.try_get("secret_sha256")?;
        if !constant_time_eq(stored.as_bytes(), sha256_hex(token.trim()).as_bytes()) {
            return Ok(Err(KeyRefusal::Invalid));
        }
        let key = key_row(&row)?;
        let now = now_micros();
        if key.revoked_at.is_some() {
            return Ok(Err(KeyRefusal::Revoked));
        }
        if key.expires_at.is_some_and(|e| e <= now) {
            return Ok(Err(KeyRefusal::Expired));
        }
        Ok(Ok(key))
    }

    /// Records that a key was used (at most about once a minute per key is worth a write).
    pub async fn touch_key(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now_micros())
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The keys of a workspace (or of all), oldest first.
    pub async fn keys(&self, ws: Option<&str>) -> Result<Vec<ApiKey>> {
        let rows =
            match ws {
                Some(ws) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE workspace = $1 ORDER BY created_at, id"
                )))
                .bind(ws)
                .fetch_all(&self.read)
                .await?,
                None => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLUMNS} FROM api_keys ORDER BY workspace, created_at, id"
                    )))
                    .fetch_all(&self.read)
                    .await?
                }
            };
        rows.iter().map(key_row).collect()
    }

    /// Revokes a key at once; revoking it again changes nothing.
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKey> {
        let id = id.trim();
        let id = key_id(id).unwrap_or(id);
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_micros())
            .bind(id)
            .execute(&self.write)
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        match row {
            Some(r) => key_row(&r),
            None => Err(StoreError::NotFound {
                what: "api key",
                id: id.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes() {
        let id = "0123456789ab";
        let secret = "f".repeat(64);
        assert_eq!(key_id(&format!("dsk_{id}_{secret}")), Some(id));
        for bad in [
            "",
            "dsk_",
            "Bearer dsk_x",
            &format!("dsk_{id}_{}", "f".repeat(63)),
            &format!("dsk_{id}x_{secret}"),
            &format!("dsk_{id}_{}g", "f".repeat(63)),
            &format!("sk_{id}_{secret}"),
        ] {
            assert_eq!(key_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert_eq!(
            "owner".parse::<Role>().unwrap_err(),
            "unknown role \"owner\": expected read, write or admin"
        );
    }
}
