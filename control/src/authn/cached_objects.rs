//! [`BoundObjects`] from the API server's watch caches: a token's ServiceAccount, pod,
//! secret or node looked up without a round trip to etcd. An object the cache does not
//! hold (or a cache not synced yet) counts as absent, so the token is refused — failing
//! closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BoundObjects, LiveObject};
use crate::{
    resources,
    store::{Store, WatchCache, object_key},
};

/// The caches a binding check reads.
pub struct CachedObjects {
    service_accounts: Arc<WatchCache>,
    pods: Arc<WatchCache>,
    secrets: Arc<WatchCache>,
    nodes: Arc<WatchCache>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    uid: String,
    #[serde(default, rename = "deletionTimestamp")]
    deletion_timestamp: Option<String>,
}

#[derive(Deserialize)]
struct Object {
    metadata: Metadata,
}

fn cache(store: &Arc<Store>, plural: &str) -> Arc<WatchCache> {
    resources::watch_cache(store, "", "v1", plural)
}

impl CachedObjects {
    /// The caches of `store` (started if they were not).
    pub fn new(store: &Arc<Store>) -> Self {
        Self {
            service_accounts: cache(store, "serviceaccounts"),
            pods: cache(store, "pods"),
            secrets: cache(store, "secrets"),
            nodes: cache(store, "nodes"),
        }
    }

    fn live(cache: &WatchCache, key: &str) -> Option<LiveObject> {
        let object = cache.get(key)?;
        let parsed: Object = serde_json::from_slice(&object.raw).ok()?;
        Some(LiveObject {
            uid: parsed.metadata.uid,
            deletion_timestamp: parsed
                .metadata
                .deletion_timestamp
                .and_then(|t| t.parse().ok()),
        })
    }
}

impl BoundObjects for CachedObjects {
    fn service_account(&self, namespace: &str, name: &str) -> Option<LiveObject> {
        Self::live(
            &self.service_accounts,
            &object_key("", "serviceaccounts", namespace, name),
        )
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<LiveObject> {
        Self::live(&self.pods, &object_key("", "pods", namespace, name))
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<LiveObject> {
        Self::live(&self.secrets, &object_key("", "secrets", namespace, name))
    }

    fn node(&self, name: &str) -> Option<LiveObject> {
        Self::live(&self.nodes, &object_key("", "nodes", "", name))
    }
}
