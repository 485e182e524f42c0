//! NamespaceLifecycle, as kube-apiserver's plugin: nothing is created in a namespace that
//! does not exist or is being terminated, and the system namespaces cannot be deleted.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Attributes, Operation, Plugin};
use crate::{
    model::{ApiError, meta},
    registry::RegistryError,
    store::{Store, StoreError, object_key},
};

/// Namespaces that may never be deleted.
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// The NamespaceLifecycle admission plugin.
pub struct NamespaceLifecycle {
    store: Arc<Store>,
}

impl NamespaceLifecycle {
    /// The plugin, reading namespaces from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// The phase of `namespace` (its watch cache answers; only a miss — a namespace
    /// created a moment ago — goes to the store). `None` if it does not exist.
    async fn phase(
        &self,
        attributes: &Attributes<'_>,
        namespace: &str,
    ) -> Result<Option<String>, ApiError> {
        let namespaces = crate::resources::find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
        let key = object_key("", "namespaces", "", namespace);
        let cache = self
            .store
            .cache(&namespaces.prefix(), namespaces.projection());
        if let Some(cached) = cache.get(&key) {
            return Ok(Some(cached.field("status.phase")));
        }
        match self.store.get(&key).await {
            Ok(object) => Ok(Some(meta::field_value(&object, "status.phase"))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(RegistryError::storage(attributes.resource, attributes.name, e).into()),
        }
    }
}

#[async_trait]
impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    /// Runs in the mutating phase, as kube's plugin does: before validation, so a write
    /// into a missing namespace is a 404 whatever its body.
    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        _object: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        match attributes.operation {
            Operation::Delete
                if attributes.is("", "namespaces") && IMMORTAL.contains(&attributes.name) =>
            {
                Err(ApiError::forbidden(format!(
                    "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                    attributes.name
                )))
            }
            Operation::Create
                if attributes.resource.namespaced && attributes.subresource.is_empty() =>
            {
                let namespace = attributes.namespace;
                match self.phase(attributes, namespace).await?.as_deref() {
                    None => Err(ApiError::namespace_missing(namespace)),
                    Some("Terminating") => Err(ApiError::namespace_terminating(
                        attributes.resource.group,
                        attributes.resource.plural,
                        attributes.name,
                        namespace,
                    )),
                    Some(_) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}
