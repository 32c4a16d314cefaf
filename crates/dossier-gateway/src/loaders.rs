//! Data loaders: the per-contact fields of a page load with one store call per field.
//!
//! The loaders do not cache (a mutation's answer reads what it wrote); they only batch the
//! keys requested while one level of a document resolves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::dataloader::{DataLoader, Loader};
use dossier_core::DataValue;
use dossier_store::{ContactRow, IdentityRow, Page, SessionRow, SqlStore};

type LoadResult<K, V> = Result<HashMap<K, V>, async_graphql::Error>;

fn store_error(e: dossier_store::StoreError) -> async_graphql::Error {
    async_graphql::Error::new(e.to_string())
}

/// Counts the store calls a loader made (for tests that guard against N+1 queries).
#[derive(Debug, Default)]
pub(crate) struct Calls(AtomicUsize);

impl Calls {
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The merged data view of contacts (`Contact.data`).
pub(crate) struct ContactDataLoader {
    store: SqlStore,
    pub(crate) calls: Calls,
}

impl ContactDataLoader {
    pub(crate) fn new(store: SqlStore) -> Self {
        Self {
            store,
            calls: Calls::default(),
        }
    }
}

impl Loader<i64> for ContactDataLoader {
    type Value = BTreeMap<String, DataValue>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[i64]) -> LoadResult<i64, Self::Value> {
        self.calls.hit();
        self.store.contact_data(keys).await.map_err(store_error)
    }
}

/// The aggregate values of contacts (`Contact.aggregates`).
pub(crate) struct AggregatesLoader {
    store: SqlStore,
    ws: String,
    pub(crate) calls: Calls,
}

impl AggregatesLoader {
    pub(crate) fn new(store: SqlStore, ws: String) -> Self {
        Self {
            store,
            ws,
            calls: Calls::default(),
        }
    }
}

impl Loader<i64> for AggregatesLoader {
    type Value = BTreeMap<String, DataValue>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[i64]) -> LoadResult<i64, Self::Value> {
        self.calls.hit();
        self.store
            .aggregates(&self.ws, keys)
            .await
            .map_err(store_error)
    }
}

/// The identities of contacts (`Contact.identities`).
pub(crate) struct IdentitiesLoader {
    store: SqlStore,
    pub(crate) calls: Calls,
}

impl IdentitiesLoader {
    pub(crate) fn new(store: SqlStore) -> Self {
        Self {
            store,
            calls: Calls::default(),
        }
    }
}

impl Loader<i64> for IdentitiesLoader {
    type Value = Vec<IdentityRow>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[i64]) -> LoadResult<i64, Self::Value> {
        self.calls.hit();
        self.store.identities(keys).await.map_err(store_error)
    }
}

/// One contact's page of sessions: the arguments of `Contact.sessions` are part of the key,
/// so contacts asked with the same arguments share one store call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionsKey {
    pub(crate) contact: i64,
    pub(crate) kind: Option<String>,
    pub(crate) first: usize,
    /// The `(started_at, id)` of the session the page starts before.
    pub(crate) before: Option<(i64, i64)>,
}

type SessionsGroup = (Option<String>, usize, Option<(i64, i64)>);

/// Pages of the sessions of contacts, newest first (`Contact.sessions`).
pub(crate) struct SessionsLoader {
    store: SqlStore,
    pub(crate) calls: Calls,
}

impl SessionsLoader {
    pub(crate) fn new(store: SqlStore) -> Self {
        Self {
            store,
            calls: Calls::default(),
        }
    }
}

impl Loader<SessionsKey> for SessionsLoader {
    type Value = Page<SessionRow>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[SessionsKey]) -> LoadResult<SessionsKey, Self::Value> {
        let mut groups: HashMap<SessionsGroup, Vec<i64>> = HashMap::new();
        for k in keys {
            groups
                .entry((k.kind.clone(), k.first, k.before))
                .or_default()
                .push(k.contact);
        }
        let calls = groups
            .into_iter()
            .map(|((kind, first, before), ids)| async move {
                self.calls.hit();
                let mut pages = self
                    .store
                    .sessions_of(&ids, kind.as_deref(), first, before)
                    .await
                    .map_err(store_error)?;
                Ok::<_, async_graphql::Error>(
                    ids.into_iter()
                        .map(|contact| {
                            let page = pages.remove(&contact).unwrap_or(Page {
                                items: vec![],
                                has_next: false,
                            });
                            let key = SessionsKey {
                                contact,
                                kind: kind.clone(),
                                first,
                                before,
                            };
                            (key, page)
                        })
                        .collect::<Vec<_>>(),
                )
            });
        let mut out = HashMap::new();
        for group in futures::future::try_join_all(calls).await? {
            out.extend(group);
        }
        Ok(out)
    }
}

/// Contacts by id (`Session.contact`). The store reads one contact per call, so this loader
/// only removes duplicates: the sessions of one page mostly share their contact.
pub(crate) struct ContactLoader {
    store: SqlStore,
    ws: String,
    pub(crate) calls: Calls,
}

impl ContactLoader {
    pub(crate) fn new(store: SqlStore, ws: String) -> Self {
        Self {
            store,
            ws,
            calls: Calls::default(),
        }
    }
}

impl Loader<i64> for ContactLoader {
    type Value = ContactRow;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[i64]) -> LoadResult<i64, Self::Value> {
        self.calls.hit();
        self.store
            .contacts_by_ids(&self.ws, keys)
            .await
            .map_err(store_error)
    }
}

/// One request's data loaders (made per request: nothing batches or leaks across callers).
pub(crate) struct Loaders {
    pub(crate) data: DataLoader<ContactDataLoader>,
    pub(crate) aggregates: DataLoader<AggregatesLoader>,
    pub(crate) identities: DataLoader<IdentitiesLoader>,
    pub(crate) sessions: DataLoader<SessionsLoader>,
    pub(crate) contacts: DataLoader<ContactLoader>,
}

impl Loaders {
    pub(crate) fn new(store: &SqlStore, ws: &str) -> Arc<Self> {
        let spawn = |fut| {
            tokio::spawn(fut);
        };
        Arc::new(Self {
            data: DataLoader::new(ContactDataLoader::new(store.clone()), spawn),
            aggregates: DataLoader::new(
                AggregatesLoader::new(store.clone(), ws.to_string()),
                spawn,
            ),
            identities: DataLoader::new(IdentitiesLoader::new(store.clone()), spawn),
            sessions: DataLoader::new(SessionsLoader::new(store.clone()), spawn),
            contacts: DataLoader::new(ContactLoader::new(store.clone(), ws.to_string()), spawn),
        })
    }
}
