//! The state both transports share and the door every request passes, over HTTP or
//! WebSocket alike: who the caller is (API keys, cached a second), and the per-key rate limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use dossier_store::{KeyCache, SqlStore};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::admission::Limits;
use crate::metrics::Metrics;
use crate::persisted::Cache;
use crate::{Access, Caller, DossierSchema, GatewayConfig};

/// How often a key's `last_used_at` is written, at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// What serving a schema over HTTP and WebSocket needs, built once by [`crate::router`].
pub(crate) struct App {
    pub(crate) schema: DossierSchema,
    pub(crate) store: SqlStore,
    pub(crate) config: GatewayConfig,
    /// What [`crate::admission::admit`] allows, from `config`.
    pub(crate) limits: Limits,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    pub(crate) persisted: Cache,
    /// Keys read in the last second: most requests then check their key without a store
    /// read (revocations through this process still apply at once; see [`KeyCache`]).
    keys: KeyCache,
    touched: Mutex<HashMap<String, Instant>>,
    pub(crate) metrics: Metrics,
}

pub(crate) type AppState = Arc<App>;

/// Why a caller was not let in.
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) code: &'static str,
}

/// Whom the rate limit counts: the key, or the client's address without keys.
pub(crate) fn who(key_id: String, client: Option<SocketAddr>) -> String {
    if key_id.is_empty() {
        client.map_or_else(|| "local".to_string(), |a| a.ip().to_string())
    } else {
        key_id
    }
}

impl App {
    pub(crate) fn new(
        schema: DossierSchema,
        store: SqlStore,
        config: GatewayConfig,
        metrics: Metrics,
    ) -> Self {
        let limiter = config.rate_limit.map(|r| {
            let per_second = NonZeroU32::new(r.per_second.max(1)).expect("non-zero");
            let burst = NonZeroU32::new(r.burst.max(1)).expect("non-zero");
            DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Self {
            schema,
            store,
            limits: Limits::of(&config),
            config,
            limiter,
            persisted: Cache::default(),
            keys: KeyCache::default(),
            touched: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The caller presenting this `Authorization` value (`Bearer <key>`), and its key's id
    /// (empty on an open gateway); `None`: no key was sent.
    pub(crate) async fn identify(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<(Caller, String), Refusal> {
        let unauthorized = |message: String| Refusal {
            status: StatusCode::UNAUTHORIZED,
            message,
            code: "UNAUTHENTICATED",
        };
        if let Access::Open { workspace } = &self.config.access {
            return Ok((Caller::admin(workspace), String::new()));
        }
        let Some(value) = authorization else {
            return Err(unauthorized(
                "no API key: send `Authorization: Bearer <key>` (an admin creates keys with `dossier keys create`)".into(),
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .unwrap_or_default();
        let key = match self.store.authenticate_cached(&self.keys, token).await {
            Ok(Ok(key)) => key,
            Ok(Err(refusal)) => return Err(unauthorized(refusal.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "cannot check an API key");
                return Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "the store is not answering; try again shortly".into(),
                    code: "UNAVAILABLE",
                });
            }
        };
        self.touch(&key.id).await;
        Ok((
            Caller {
                workspace: key.workspace,
                role: key.role,
            },
            key.id,
        ))
    }

    /// Records a key's use, at most once a minute per key.
    async fn touch(&self, id: &str) {
        let due = {
            let mut touched = self.touched.lock().expect("touch lock");
            let now = Instant::now();
            match touched.get(id) {
                Some(at) if now.duration_since(*at) < TOUCH_EVERY => false,
                _ => {
                    touched.insert(id.to_string(), now);
                    true
                }
            }
        };
        if due && let Err(e) = self.store.touch_key(id).await {
            tracing::warn!(key = id, error = %e, "cannot record an API key's last use");
        }
    }

    /// `Some(seconds to wait)` when `who` is over its rate; else counts one request.
    pub(crate) fn over_rate(&self, who: &str) -> Option<u64> {
        let limiter = self.limiter.as_ref()?;
        let not_until = limiter.check_key(&who.to_string()).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Some(secs.max(1))
    }
}
