//! Server-side sessions: the browser holds only a random id (an HttpOnly, SameSite=Strict
//! cookie); the API key it was exchanged for, the CSRF token and the one-shot flash message
//! stay here. Sessions live in memory: a restart signs everyone out, which is the safe way
//! to lose them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use rand::RngCore as _;

/// The cookie holding the session id.
pub(crate) const COOKIE: &str = "dossier_session";

/// How long a session lasts after sign-in, whatever its use.
pub(crate) const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The most sessions kept at once: past it the oldest goes, so that a client creating
/// sessions in a loop cannot grow memory without bound.
const CAPACITY: usize = 10_000;

#[derive(Clone)]
pub(crate) struct Session {
    /// The API key signed in with; `None` on an open console.
    pub(crate) key: Option<String>,
    pub(crate) csrf: String,
    pub(crate) flash: Option<String>,
    created: Instant,
}

#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as hex.
fn token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal strings, in time independent of where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// A new session for `key`; returns its id.
    pub(crate) fn create(&self, key: Option<String>) -> String {
        let id = token();
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| now.duration_since(s.created) < LIFETIME);
        if map.len() >= CAPACITY
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                key,
                csrf: token(),
                flash: None,
                created: now,
            },
        );
        id
    }

    /// The live session `id`, its flash message taken.
    pub(crate) fn take(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().expect("sessions lock");
        let live = map.get(id).is_some_and(|s| s.created.elapsed() < LIFETIME);
        if !live {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        let out = s.clone();
        s.flash = None;
        Some(out)
    }

    /// Sets the message the next page of session `id` shows.
    pub(crate) fn flash(&self, id: &str, message: String) {
        if let Some(s) = self.map.lock().expect("sessions lock").get_mut(id) {
            s.flash = Some(message);
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
    }
}

/// The session id a request's cookies carry.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The `Set-Cookie` value giving the browser session `id`.
pub(crate) fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_and_forgotten_when_removed() {
        let s = Sessions::default();
        let a = s.create(Some("k".into()));
        let b = s.create(None);
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        let sa = s.take(&a).unwrap();
        assert_ne!(sa.csrf, s.take(&b).unwrap().csrf);
        s.remove(&a);
        assert!(s.take(&a).is_none());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_flash_shows_once() {
        let s = Sessions::default();
        let id = s.create(None);
        s.flash(&id, "done".into());
        assert_eq!(s.take(&id).unwrap().flash.as_deref(), Some("done"));
        assert_eq!(s.take(&id).unwrap().flash, None);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; dossier_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
