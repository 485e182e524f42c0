//! The RBAC policy every cluster starts with — kube's bootstrap roles and bindings plus
//! Skiff's additions ([`crate::authz::skiff_policy`]) — reconciled at start as
//! kube-apiserver's RBAC post-start hook does: missing objects are created, existing ones
//! gain what they lack, objects annotated `rbac.authorization.kubernetes.io/autoupdate:
//! "false"` are left alone. Safe with racing replicas (a lost race is retried at the next
//! start, and both write the same objects).

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{debug, info};

use crate::{
    authz::{
        rbac::{
            bootstrap::bootstrap_policy,
            reconcile::{
                Operation, Reconciled, reconcile_cluster_role, reconcile_cluster_role_binding,
                reconcile_role, reconcile_role_binding,
            },
        },
        skiff_policy,
    },
    model::user::{MASTERS, UserInfo},
    registry::{DeleteOptions, FieldValidation, Registry, RegistryError, Request},
    resources,
};

/// How many objects were written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciliation {
    /// Created (or recreated) objects.
    pub created: usize,
    /// Updated objects.
    pub updated: usize,
}

/// Where a bootstrap object goes.
struct Place<'a> {
    registry: &'a Registry,
    user: &'a UserInfo,
    plural: &'a str,
    namespace: &'a str,
    name: &'a str,
}

async fn reconcile_one<K>(
    place: Place<'_>,
    expected: &K,
    reconcile: impl Fn(Option<&K>, &K) -> Reconciled<K>,
    counts: &mut Reconciliation,
) -> Result<(), RegistryError>
where
    K: Serialize + DeserializeOwned,
{
    let Place {
        registry,
        user,
        plural,
        namespace,
        name,
    } = place;
    let Some(resource) = resources::find("rbac.authorization.k8s.io", "v1", plural) else {
        return Ok(());
    };
    let request = Request {
        resource,
        namespace,
        subresource: "",
        user,
        dry_run: false,
        field_validation: FieldValidation::Ignore,
    };
    let existing: Option<K> = match registry.get(&request, name).await {
        Ok(object) => serde_json::from_value(object).ok(),
        Err(RegistryError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let reconciled = reconcile(existing.as_ref(), expected);
    let object = serde_json::to_value(&reconciled.object)
        .map_err(|e| crate::model::ApiError::internal(e.to_string()))?;
    match reconciled.effective_operation() {
        Operation::None => return Ok(()),
        Operation::Create => match registry.create(&request, object).await {
            Ok(_) => counts.created += 1,
            Err(RegistryError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        },
        Operation::Update => {
            registry.update(&request, name, object).await?;
            counts.updated += 1;
        }
        Operation::Recreate => {
            registry
                .delete(&request, name, &DeleteOptions::default())
                .await?;
            let mut object = object;
            crate::model::meta::remove_meta(&mut object, "resourceVersion");
            registry.create(&request, object).await?;
            counts.created += 1;
        }
    }
    debug!(%plural, %namespace, %name, "reconciled bootstrap RBAC object");
    Ok(())
}

/// Reconcile the bootstrap policy into the cluster (as `system:apiserver`, a superuser).
pub async fn reconcile_policy(registry: &Registry) -> Result<Reconciliation, RegistryError> {
    let user = UserInfo::authenticated("system:apiserver", vec![MASTERS.to_owned()]);
    let mut policy = bootstrap_policy();
    policy.cluster_roles.extend(skiff_policy::cluster_roles());
    policy
        .cluster_role_bindings
        .extend(skiff_policy::cluster_role_bindings());
    let mut counts = Reconciliation::default();
    let name_of = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    };
    for role in &policy.cluster_roles {
        let (_, name) = name_of(&role.metadata);
        reconcile_one::<ClusterRole>(
            Place {
                registry,
                user: &user,
                plural: "clusterroles",
                namespace: "",
                name: &name,
            },
            role,
            reconcile_cluster_role,
            &mut counts,
        )
        .await?;
    }
    for binding in &policy.cluster_role_bindings {
        let (_, name) = name_of(&binding.metadata);
        reconcile_one::<ClusterRoleBinding>(
            Place {
                registry,
                user: &user,
                plural: "clusterrolebindings",
                namespace: "",
                name: &name,
            },
            binding,
            reconcile_cluster_role_binding,
            &mut counts,
        )
        .await?;
    }
    for role in &policy.roles {
        let (namespace, name) = name_of(&role.metadata);
        reconcile_one::<Role>(
            Place {
                registry,
                user: &user,
                plural: "roles",
                namespace: &namespace,
                name: &name,
            },
            role,
            reconcile_role,
            &mut counts,
        )
        .await?;
    }
    for binding in &policy.role_bindings {
        let (namespace, name) = name_of(&binding.metadata);
        reconcile_one::<RoleBinding>(
            Place {
                registry,
                user: &user,
                plural: "rolebindings",
                namespace: &namespace,
                name: &name,
            },
            binding,
            reconcile_role_binding,
            &mut counts,
        )
        .await?;
    }
    if counts != Reconciliation::default() {
        info!(
            created = counts.created,
            updated = counts.updated,
            "bootstrap RBAC policy reconciled"
        );
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{admission::Chain, store::Store};

    #[tokio::test]
    async fn the_policy_is_created_once_and_then_left_alone() {
        let store = Store::in_memory();
        crate::bootstrap::ensure_namespaces(&store)
            .await
            .expect("namespaces");
        let chain: Chain =
            crate::admission::default_chain(&store, None, &crate::admission::Settings::default());
        let registry = Registry::new(Arc::clone(&store), chain);
        let first = reconcile_policy(&registry).await.expect("first");
        assert!(first.created > 100, "{first:?}");
        let second = reconcile_policy(&registry).await.expect("second");
        assert_eq!(second, Reconciliation::default(), "nothing written again");
    }
}
