//! DefaultStorageClass admission, as kube-apiserver's plugin: a PersistentVolumeClaim
//! created without `storageClassName` gets the cluster's default StorageClass (the newest
//! class marked `storageclass.kubernetes.io/is-default-class: "true"`). A claim that names
//! a class, even `""` (no class: static volumes only), is left as sent; without a default
//! class nothing changes.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;

use super::{Attributes, Operation, Plugin};
use crate::{
    model::{ApiError, storage},
    registry::RegistryError,
    store::{Store, resource_prefix},
};

/// The DefaultStorageClass admission plugin.
pub struct DefaultStorageClass {
    store: Arc<Store>,
}

impl DefaultStorageClass {
    /// The plugin, reading StorageClasses from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Every StorageClass (clusters have a handful).
    async fn classes(&self) -> Result<Vec<StorageClass>, crate::store::StoreError> {
        let prefix = resource_prefix("storage.k8s.io", "storageclasses");
        let mut classes = Vec::new();
        let mut start = prefix.clone();
        loop {
            let page = self.store.list_page(&prefix, &start, 0, 500).await?;
            classes.extend(
                page.objects
                    .into_iter()
                    .filter_map(|o| serde_json::from_value::<StorageClass>(o).ok()),
            );
            match page.next_key {
                Some(next) => start = next,
                None => return Ok(classes),
            }
        }
    }
}

#[async_trait]
impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        claim: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if attributes.operation != Operation::Create
            || !attributes.is("", "persistentvolumeclaims")
            || claim
                .pointer("/spec/storageClassName")
                .is_some_and(|c| !c.is_null())
        {
            return Ok(());
        }
        let classes = self
            .classes()
            .await
            .map_err(|e| RegistryError::storage(attributes.resource, attributes.name, e))?;
        let Some(name) = storage::default_class(&classes).and_then(|c| c.metadata.name.clone())
        else {
            return Ok(());
        };
        if let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".to_owned(), Value::String(name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{model::user::UserInfo, resources};

    async fn admitted(store: &Arc<Store>, mut claim: Value) -> Value {
        let info = resources::find("", "v1", "persistentvolumeclaims").expect("claims");
        let user = UserInfo::default();
        let attributes = Attributes {
            operation: Operation::Create,
            resource: info,
            subresource: "",
            namespace: "ns",
            name: "data",
            user: &user,
            dry_run: false,
        };
        DefaultStorageClass::new(Arc::clone(store))
            .admit(&attributes, &mut claim, None, &mut Vec::new())
            .await
            .expect("admitted");
        claim
    }

    #[tokio::test]
    async fn claims_without_a_class_get_the_default() {
        let store = Store::in_memory();
        let claim = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            admitted(&store, claim.clone()).await,
            claim,
            "no default class yet"
        );
        let key = crate::store::object_key("storage.k8s.io", "storageclasses", "", "local-path");
        store
            .create(&key, &storage::default_class_object())
            .await
            .expect("class");
        let defaulted = admitted(&store, claim).await;
        assert_eq!(defaulted["spec"]["storageClassName"], "local-path");
        let explicit = json!({"spec": {"storageClassName": ""}});
        assert_eq!(admitted(&store, explicit.clone()).await, explicit);
    }
}
