//! Objects every cluster starts with: the namespaces kube-apiserver creates at start, and
//! the system Services ([`services`]).

pub mod rbac;
pub mod services;

use serde_json::json;
use tracing::info;

use crate::{
    resources,
    store::{Store, StoreError, object_key},
};

/// Namespaces created at start (kube-apiserver's system namespaces).
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Create the system namespaces that do not exist yet (safe with racing replicas).
pub async fn ensure_namespaces(store: &Store) -> Result<(), StoreError> {
    let info = resources::find("", "v1", "namespaces").ok_or(StoreError::NotFound)?;
    for name in SYSTEM_NAMESPACES {
        let key = object_key("", "namespaces", "", name);
        match store.get(&key).await {
            Ok(_) => continue,
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
        });
        let prepared =
            info.strategy
                .prepare(&object, None)
                .map_err(|reason| StoreError::Corrupt {
                    key: key.clone(),
                    reason,
                })?;
        match store.create(&key, &prepared.object).await {
            Ok(_) => info!(namespace = name, "created system namespace"),
            Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
