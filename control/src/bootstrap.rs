//! Objects every cluster starts with: the namespaces and PriorityClasses kube-apiserver
//! creates at start, the default StorageClass (as a cluster's addons install one), and the
//! system Services ([`services`]).

pub mod rbac;
pub mod services;

use serde_json::json;
use tracing::info;

use crate::{
    resources::{self, scheduling::SYSTEM_PRIORITY_CLASSES},
    store::{Store, StoreError, object_key},
};

/// Namespaces created at start (kube-apiserver's system namespaces).
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Create the system namespaces that do not exist yet (safe with racing replicas).
pub async fn ensure_namespaces(store: &Store) -> Result<(), StoreError> {
    for name in SYSTEM_NAMESPACES {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        ensure(store, "", "v1", "namespaces", namespace).await?;
    }
    Ok(())
}

/// Create kube's built-in PriorityClasses (`system-node-critical`,
/// `system-cluster-critical`) that do not exist yet.
pub async fn ensure_priority_classes(store: &Store) -> Result<(), StoreError> {
    for (name, value) in SYSTEM_PRIORITY_CLASSES {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": "Used for system critical pods that must not be moved from their current node.",
        });
        ensure(store, "scheduling.k8s.io", "v1", "priorityclasses", class).await?;
    }
    Ok(())
}

/// Create the default StorageClass `local-path` of the built-in local-path provisioner
/// unless it exists (a class the user changed or removed the default mark from is kept).
pub async fn ensure_storage_classes(store: &Store) -> Result<(), StoreError> {
    let class = crate::model::storage::default_class_object();
    ensure(store, "storage.k8s.io", "v1", "storageclasses", class).await
}

/// Create `object` of `group`/`plural` (in its `metadata.namespace`, if any) unless an
/// object of its name exists, defaulted and validated as a create through the API would be.
pub(crate) async fn ensure(
    store: &Store,
    group: &str,
    version: &str,
    plural: &str,
    mut object: serde_json::Value,
) -> Result<(), StoreError> {
    let info = resources::find(group, version, plural).ok_or(StoreError::NotFound)?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = object_key(group, plural, &namespace, &name);
    match store.get(&key).await {
        Ok(_) => return Ok(()),
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e),
    }
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["creationTimestamp"] = json!(
        jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    );
    let prepared = info
        .strategy
        .prepare(&object, None)
        .map_err(|reason| StoreError::Corrupt {
            key: key.clone(),
            reason,
        })?;
    match store.create(&key, &prepared.object).await {
        Ok(_) => info!(kind = info.kind, name, "created a built-in object"),
        Err(StoreError::AlreadyExists) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}
