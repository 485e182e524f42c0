//! StorageObjectInUseProtection admission, as kube-apiserver's plugin: every created
//! PersistentVolumeClaim gets the `kubernetes.io/pvc-protection` finalizer, so deleting a
//! claim a pod still uses only marks it; the PVC protection controller removes the
//! finalizer once no pod uses the claim.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin};
use crate::model::{ApiError, storage::PVC_PROTECTION};

/// The StorageObjectInUseProtection admission plugin.
pub struct StorageObjectInUseProtection;

#[async_trait]
impl Plugin for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        "StorageObjectInUseProtection"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        claim: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if attributes.operation != Operation::Create || !attributes.is("", "persistentvolumeclaims")
        {
            return Ok(());
        }
        let Some(metadata) = claim.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let finalizers = metadata.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == PVC_PROTECTION)
        {
            list.push(json!(PVC_PROTECTION));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::user::UserInfo, resources};

    #[tokio::test]
    async fn created_claims_are_protected_once() {
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
        let mut claim = json!({"metadata": {"name": "data", "finalizers": ["example.com/keep"]}});
        for _ in 0..2 {
            StorageObjectInUseProtection
                .admit(&attributes, &mut claim, None, &mut Vec::new())
                .await
                .expect("admitted");
        }
        assert_eq!(
            claim["metadata"]["finalizers"],
            json!(["example.com/keep", PVC_PROTECTION])
        );
    }
}
