//! Persisted queries: automatic (a client sends a document's sha256; the gateway runs the
//! document it saw under that hash, or asks for it) and allow-list mode (only listed
//! documents run).
//!
//! The automatic cache is keyed by workspace and hash: a hash one workspace's key registered
//! is unknown to another workspace's keys, as an allow-list boundary should be.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_graphql::{Request, ServerError};
use dossier_core::sha256_hex;

use crate::PersistedQueries;

/// Documents remembered for automatic persisted queries.
const CACHE_ENTRIES: usize = 1024;
/// Larger documents run but are not remembered (the cache stays small whatever is sent).
const CACHE_MAX_DOCUMENT: usize = 64 * 1024;

/// The remembered documents, by workspace and sha256.
pub(crate) struct Cache(Mutex<lru::LruCache<(String, String), Arc<str>>>);

impl Default for Cache {
    fn default() -> Self {
        Self(Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(CACHE_ENTRIES).expect("non-zero"),
        )))
    }
}

use crate::admission::request_error as error;

/// The `sha256Hash` of the request's `persistedQuery` extension, if it has one.
fn requested_hash(request: &Request) -> Result<Option<String>, ServerError> {
    let Some(ext) = request.extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let ext = ext.clone().into_json().unwrap_or_default();
    if ext["version"] != 1 {
        return Err(error(
            "persistedQuery.version must be 1",
            "PERSISTED_QUERY_NOT_SUPPORTED",
        ));
    }
    match ext["sha256Hash"].as_str() {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(h.to_ascii_lowercase()))
        }
        _ => Err(error(
            "persistedQuery.sha256Hash must be 64 hexadecimal digits",
            "BAD_REQUEST",
        )),
    }
}

/// A document sent with its hash, to cache once admission has let it through.
#[derive(Debug)]
pub(crate) struct Unadmitted {
    key: (String, String),
    doc: Arc<str>,
}

impl Unadmitted {
    /// Caches the document: later requests of its workspace may send the hash alone.
    pub(crate) fn admitted(self, cache: &Cache) {
        cache.0.lock().expect("cache lock").put(self.key, self.doc);
    }
}

/// Fills in the document of a request of `workspace` that sent only its hash, and refuses what
/// the mode does not allow. Errors are request errors (nothing runs). A document sent with its
/// hash comes back as [`Unadmitted`]: it is cached only once admission let it through, so a
/// document the limits refuse is never remembered.
pub(crate) fn resolve(
    mode: &PersistedQueries,
    cache: &Cache,
    workspace: &str,
    request: &mut Request,
) -> Result<Option<Unadmitted>, ServerError> {
    let hash = requested_hash(request)?;
    let has_query = !request.query.trim().is_empty();
    if has_query && let Some(h) = &hash {
        let actual = sha256_hex(&request.query);
        if &actual != h {
            return Err(error(
                format!("persistedQuery.sha256Hash is {h} but the query's sha256 is {actual}"),
                "BAD_REQUEST",
            ));
        }
    }
    match mode {
        PersistedQueries::AllowList(list) => {
            let h = match (&hash, has_query) {
                (Some(h), _) => h.clone(),
                (None, true) => sha256_hex(&request.query),
                (None, false) => return Err(error("the request has no query", "BAD_REQUEST")),
            };
            match list.get(&h) {
                Some(doc) => {
                    request.query = doc.clone();
                    Ok(None)
                }
                None => Err(error(
                    format!(
                        "this gateway runs only allow-listed documents, and {h} is not on its list"
                    ),
                    "PERSISTED_QUERY_NOT_ALLOWED",
                )),
            }
        }
        PersistedQueries::Automatic => match (hash, has_query) {
            (Some(h), false) => {
                let key = (workspace.to_string(), h);
                let doc = cache.0.lock().expect("cache lock").get(&key).cloned();
                match doc {
                    Some(doc) => {
                        request.query = doc.to_string();
                        Ok(None)
                    }
                    // Apollo's protocol: the client sends the document with its hash next.
                    None => Err(error("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")),
                }
            }
            (Some(h), true) if request.query.len() <= CACHE_MAX_DOCUMENT => Ok(Some(Unadmitted {
                key: (workspace.to_string(), h),
                doc: request.query.as_str().into(),
            })),
            (Some(_) | None, true) => Ok(None),
            (None, false) => Err(error("the request has no query", "BAD_REQUEST")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hash(query: &str, hash: &str) -> Request {
        let mut r = Request::new(query);
        r.extensions.insert(
            "persistedQuery".into(),
            async_graphql::Value::from_json(
                serde_json::json!({ "version": 1, "sha256Hash": hash }),
            )
            .unwrap(),
        );
        r
    }

    #[test]
    fn automatic_persisted_queries() {
        let cache = Cache::default();
        let doc = "{ contacts { totalCount } }";
        let h = sha256_hex(doc);
        let mode = PersistedQueries::Automatic;
        let e = resolve(&mode, &cache, "w", &mut with_hash("", &h)).unwrap_err();
        assert_eq!(e.message, "PersistedQueryNotFound");
        resolve(&mode, &cache, "w", &mut with_hash(doc, &h))
            .unwrap()
            .expect("a document to cache")
            .admitted(&cache);
        let mut r = with_hash("", &h);
        resolve(&mode, &cache, "w", &mut r).unwrap();
        assert_eq!(r.query, doc);
        // A hash that is not the document's is refused, not remembered.
        let other = sha256_hex("{ x }");
        let e = resolve(&mode, &cache, "w", &mut with_hash(doc, &other)).unwrap_err();
        assert!(
            e.message.contains("but the query's sha256 is"),
            "{}",
            e.message
        );
        assert!(resolve(&mode, &cache, "w", &mut with_hash("", &other)).is_err());
        // Another workspace never saw the document.
        let e = resolve(&mode, &cache, "x", &mut with_hash("", &h)).unwrap_err();
        assert_eq!(e.message, "PersistedQueryNotFound");
        let e = resolve(&mode, &cache, "w", &mut with_hash("", "abc")).unwrap_err();
        assert_eq!(
            e.message,
            "persistedQuery.sha256Hash must be 64 hexadecimal digits"
        );
    }

    #[test]
    fn allow_list_mode() {
        let cache = Cache::default();
        let doc = "{ contacts { totalCount } }";
        let h = sha256_hex(doc);
        let mode = PersistedQueries::AllowList(Arc::new([(h.clone(), doc.to_string())].into()));
        let mut r = with_hash("", &h);
        resolve(&mode, &cache, "w", &mut r).unwrap();
        assert_eq!(r.query, doc);
        resolve(&mode, &cache, "w", &mut Request::new(doc)).unwrap();
        let e = resolve(
            &mode,
            &cache,
            "w",
            &mut Request::new("{ sources { name } }"),
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("this gateway runs only allow-listed documents"),
            "{}",
            e.message
        );
    }
}
