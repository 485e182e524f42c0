//! The RBAC authorizer of a running server: the pure [`RbacPolicy`] built from the
//! watch caches of the four RBAC kinds, rebuilt only when one of them changed (a
//! generation check per request, no lock held while authorizing).

use std::sync::{Arc, RwLock};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;

use super::{Attributes, Authorizer, Decision, rbac::RbacPolicy};
use crate::{
    resources,
    store::{Store, WatchCache},
};

/// RBAC over the live RBAC objects.
pub struct RbacAuthorizer {
    roles: Arc<WatchCache>,
    cluster_roles: Arc<WatchCache>,
    role_bindings: Arc<WatchCache>,
    cluster_role_bindings: Arc<WatchCache>,
    current: RwLock<(u64, Arc<RbacPolicy>)>,
}

fn cache(store: &Arc<Store>, plural: &str) -> Arc<WatchCache> {
    resources::watch_cache(store, "rbac.authorization.k8s.io", "v1", plural)
}

fn objects<K: DeserializeOwned>(cache: &WatchCache) -> Vec<K> {
    cache
        .snapshot("")
        .map(|s| {
            s.objects
                .iter()
                .filter_map(|o| serde_json::from_slice(&o.raw).ok())
                .collect()
        })
        .unwrap_or_default()
}

impl RbacAuthorizer {
    /// The authorizer over `store`'s RBAC caches (started if they were not).
    pub fn new(store: &Arc<Store>) -> Self {
        Self {
            roles: cache(store, "roles"),
            cluster_roles: cache(store, "clusterroles"),
            role_bindings: cache(store, "rolebindings"),
            cluster_role_bindings: cache(store, "clusterrolebindings"),
            current: RwLock::new((u64::MAX, Arc::new(RbacPolicy::default()))),
        }
    }

    fn caches(&self) -> [&Arc<WatchCache>; 4] {
        [
            &self.roles,
            &self.cluster_roles,
            &self.role_bindings,
            &self.cluster_role_bindings,
        ]
    }

    /// True once every RBAC cache has its first list.
    pub fn synced(&self) -> bool {
        self.caches().iter().all(|c| c.synced())
    }

    /// The policy as of now.
    pub fn policy(&self) -> Arc<RbacPolicy> {
        let generation = self
            .caches()
            .iter()
            .fold(0u64, |sum, c| sum.wrapping_add(c.generation()));
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.0 == generation {
                return Arc::clone(&current.1);
            }
        }
        let policy = Arc::new(RbacPolicy::new(
            objects::<Role>(&self.roles),
            objects::<ClusterRole>(&self.cluster_roles),
            objects::<RoleBinding>(&self.role_bindings),
            objects::<ClusterRoleBinding>(&self.cluster_role_bindings),
        ));
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = (generation, Arc::clone(&policy));
        policy
    }
}

impl Authorizer for RbacAuthorizer {
    fn name(&self) -> &'static str {
        "RBAC"
    }

    fn authorize(&self, attributes: &Attributes) -> Decision {
        self.policy().authorize(attributes)
    }
}
