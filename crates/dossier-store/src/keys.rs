//! API keys: created with a role in one workspace, shown once, kept as a SHA-256 of the
//! secret, revocable and optionally expiring.
//!
//! A key reads `dsk_<id>_<secret>`: the id finds the row (and names the key in lists and
//! logs), the secret is 32 random bytes. A fast hash is enough for secrets of that entropy;
//! comparison is constant-time.
//!
//! A gateway checks a key on every request; [`KeyCache`] spares it the store read for a
//! short while (see there for what it may and may not skip).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Bumped by every revocation in this process: cached keys read before it are stale. One
/// counter for all stores, because revocations are rare and a spurious re-read costs little.
static REVOCATIONS: AtomicU64 = AtomicU64::new(0);

/// A key's row as read for a check, with the hash its secret must match.
#[derive(Clone)]
struct StoredKey {
    key: ApiKey,
    secret_sha256: String,
}

struct CachedKey {
    stored: StoredKey,
    read_at: Instant,
    /// [`REVOCATIONS`] as it was before the row was read.
    revocations: u64,
}

/// Recently read API key rows, for [`SqlStore::authenticate_cached`]: at most `capacity`
/// keys, each trusted for `ttl` after it was read.
///
/// What a hit skips is only the read of the row. The presented secret is still hashed and
/// compared with the stored hash, so a wrong secret never passes, and revocation and expiry
/// are still checked, against the row as read. A revocation made through any store of this
/// process empties the cache at once; one made by another process (`dossier keys revoke`)
/// takes effect here within `ttl`.
pub struct KeyCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, CachedKey>>,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(KeyCache::TTL, KeyCache::CAPACITY)
    }
}

impl KeyCache {
    /// How long a key read from the store is trusted by default: the longest a revocation
    /// made by another process may go unnoticed.
    pub const TTL: Duration = Duration::from_secs(1);
    /// How many keys the cache holds by default.
    pub const CAPACITY: usize = 1024;

    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, id: &str, revocations: u64) -> Option<StoredKey> {
        let entries = self.entries.lock().expect("key cache lock");
        let e = entries.get(id)?;
        (e.revocations == revocations && e.read_at.elapsed() < self.ttl).then(|| e.stored.clone())
    }

    fn put(&self, stored: StoredKey, read_at: Instant, revocations: u64) {
        let mut entries = self.entries.lock().expect("key cache lock");
        if entries.len() >= self.capacity && !entries.contains_key(&stored.key.id) {
            entries.retain(|_, e| e.revocations == revocations && e.read_at.elapsed() < self.ttl);
            // Still full of fresh keys: the oldest goes. Only rows that exist get here, so
            // this scan is bounded by the keys an operator made, not by what clients send.
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.read_at)
                    .map(|(id, _)| id.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            stored.key.id.clone(),
            CachedKey {
                stored,
                read_at,
                revocations,
            },
        );
    }
}

/// The verdict on a presented token against its key's row.
fn check(token: &str, stored: StoredKey) -> Result<ApiKey, KeyRefusal> {
    if !constant_time_eq(
        stored.secret_sha256.as_bytes(),
        sha256_hex(token).as_bytes(),
    ) {
        return Err(KeyRefusal::Invalid);
    }
    let key = stored.key;
    if key.revoked_at.is_some() {
        return Err(KeyRefusal::Revoked);
    }
    if key.expires_at.is_some_and(|e| e <= now_micros()) {
        return Err(KeyRefusal::Expired);
    }
    Ok(key)
}

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
        let token = token.trim();
        let Some(id) = key_id(token) else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        Ok(match self.stored_key(id).await? {
            Some(stored) => check(token, stored),
            None => Err(KeyRefusal::Invalid),
        })
    }

    /// [`SqlStore::authenticate`], reading the key's row only when `cache` has no fresh copy.
    pub async fn authenticate_cached(
        &self,
        cache: &KeyCache,
        token: &str,
    ) -> Result<Result<ApiKey, KeyRefusal>> {
        let token = token.trim();
        let Some(id) = key_id(token) else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        // Read before the row: a revocation that lands while we read makes this copy stale.
        let revocations = REVOCATIONS.load(Ordering::Acquire);
        if let Some(stored) = cache.get(id, revocations) {
            return Ok(check(token, stored));
        }
        let read_at = Instant::now();
        // Unknown ids are not cached: they would let clients fill the cache.
        let Some(stored) = self.stored_key(id).await? else {
            return Ok(Err(KeyRefusal::Invalid));
        };
        cache.put(stored.clone(), read_at, revocations);
        Ok(check(token, stored))
    }

    async fn stored_key(&self, id: &str) -> Result<Option<StoredKey>> {
        let row = sqlx::query(
            "SELECT id, workspace, name, role, created_at, expires_at, revoked_at, last_used_at, \
             secret_sha256 FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(StoredKey {
                secret_sha256: row.try_get("secret_sha256")?,
                key: key_row(&row)?,
            })
        })
        .transpose()
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
        // After the write: a check that reads the row from now on sees the revocation.
        REVOCATIONS.fetch_add(1, Ordering::Release);
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

    async fn store() -> (SqlStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keys.db").display());
        (SqlStore::open(&url).await.unwrap(), dir)
    }

    /// The presented token with its last secret digit changed: the right id, a wrong secret.
    fn wrong_secret(token: &str) -> String {
        let last = if token.ends_with('0') { "1" } else { "0" };
        format!("{}{last}", &token[..token.len() - 1])
    }

    #[tokio::test]
    async fn a_cached_key_is_still_checked() {
        let (s, _dir) = store().await;
        // Long enough that every check below is answered from the cache.
        let cache = KeyCache::new(Duration::from_secs(3600), 16);
        let (key, token) = s.create_key("acme", "k", Role::Read, None).await.unwrap();
        let ok = s
            .authenticate_cached(&cache, &token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((ok.id.as_str(), ok.role), (key.id.as_str(), Role::Read));
        assert_eq!(
            s.authenticate_cached(&cache, &wrong_secret(&token))
                .await
                .unwrap(),
            Err(KeyRefusal::Invalid)
        );
        assert!(s.authenticate_cached(&cache, &token).await.unwrap().is_ok());

        // Expiry is checked against the cached row on every hit.
        let soon = now_micros() + 1_000_000;
        let (_, expiring) = s
            .create_key("acme", "e", Role::Read, Some(soon))
            .await
            .unwrap();
        assert!(
            s.authenticate_cached(&cache, &expiring)
                .await
                .unwrap()
                .is_ok()
        );
        tokio::time::sleep(Duration::from_micros(
            (soon - now_micros()).max(0) as u64 + 50_000,
        ))
        .await;
        assert_eq!(
            s.authenticate_cached(&cache, &expiring).await.unwrap(),
            Err(KeyRefusal::Expired)
        );

        // A revocation through the store (any clone) applies at once.
        s.clone().revoke_key(&key.id).await.unwrap();
        assert_eq!(
            s.authenticate_cached(&cache, &token).await.unwrap(),
            Err(KeyRefusal::Revoked)
        );
    }

    #[tokio::test]
    async fn a_revocation_by_another_process_applies_within_the_ttl() {
        let (s, _dir) = store().await;
        let ttl = Duration::from_millis(300);
        let cache = KeyCache::new(ttl, 16);
        let (key, token) = s.create_key("acme", "k", Role::Read, None).await.unwrap();
        assert!(s.authenticate_cached(&cache, &token).await.unwrap().is_ok());
        // As `dossier keys revoke` in another process does it: this one is not told.
        sqlx::query("UPDATE api_keys SET revoked_at = 1 WHERE id = $1")
            .bind(&key.id)
            .execute(&s.write)
            .await
            .unwrap();
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert_eq!(
            s.authenticate_cached(&cache, &token).await.unwrap(),
            Err(KeyRefusal::Revoked)
        );
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_skips_unknown_ids() {
        let (s, _dir) = store().await;
        let cache = KeyCache::new(Duration::from_secs(3600), 2);
        for i in 0..5 {
            let (_, token) = s
                .create_key("acme", &format!("k{i}"), Role::Read, None)
                .await
                .unwrap();
            assert!(s.authenticate_cached(&cache, &token).await.unwrap().is_ok());
            assert!(cache.entries.lock().unwrap().len() <= 2);
        }
        let unknown = format!("dsk_{}_{}", "0".repeat(12), "f".repeat(64));
        let before = cache.entries.lock().unwrap().len();
        assert_eq!(
            s.authenticate_cached(&cache, &unknown).await.unwrap(),
            Err(KeyRefusal::Invalid)
        );
        assert_eq!(cache.entries.lock().unwrap().len(), before);
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
