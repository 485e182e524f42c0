//! The scale of the pods' controllers, which a budget with `maxUnavailable` or a percentage
//! `minAvailable` expects (kube's controller finders): ReplicationControllers, Deployments
//! (through their ReplicaSets), ReplicaSets and StatefulSets from the watch caches, any other
//! controller through its scale subresource.

use std::collections::HashMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet, StatefulSet},
        core::v1::{Pod, ReplicationController},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client,
    api::{DynamicObject, GroupVersionKind},
    runtime::reflector::{ObjectRef, Store},
};

/// Why the expected scale cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// A selected pod's controller is nowhere to be found.
    #[error("found no controllers for pod {pod:?}")]
    NoController {
        /// The pod.
        pod: String,
    },
    /// A controller reference names an apiVersion that does not parse.
    #[error("unexpected GroupVersion string: {api_version}")]
    ApiVersion {
        /// What the reference says.
        api_version: String,
    },
    /// The controller's kind has no scale subresource.
    #[error("{resource} does not implement the scale subresource")]
    NotScalable {
        /// `<plural>.<group>`.
        resource: String,
    },
    /// Discovery or the scale subresource failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// A controller and its `spec.replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerScale {
    /// The controller's UID (a Deployment's, for pods of its ReplicaSets).
    pub uid: String,
    /// `spec.replicas`.
    pub replicas: i32,
}

/// The expected scale of a budget's pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedScale {
    /// The summed scale of the pods' controllers, each counted once.
    pub total: i32,
    /// Pods without a controller (they count for nothing).
    pub unmanaged: Vec<String>,
}

/// Finds controllers and their scale.
#[derive(Clone)]
pub struct Finder {
    /// For the scale subresource of other kinds.
    pub client: Client,
    /// ReplicationControllers.
    pub controllers: Store<ReplicationController>,
    /// ReplicaSets.
    pub replica_sets: Store<ReplicaSet>,
    /// Deployments.
    pub deployments: Store<Deployment>,
    /// StatefulSets.
    pub stateful_sets: Store<StatefulSet>,
}

/// The controller reference of an object.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The group of an apiVersion (`apps/v1` → `apps`, `v1` → core).
fn group_of(api_version: &str) -> Result<&str, ScaleError> {
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [_version] => Ok(""),
        [group, _version] => Ok(group),
        _ => Err(ScaleError::ApiVersion {
            api_version: api_version.to_owned(),
        }),
    }
}

/// kube's `verifyGroupKind`.
fn is_kind(reference: &OwnerReference, kind: &str, groups: &[&str]) -> Result<bool, ScaleError> {
    let group = group_of(&reference.api_version)?;
    Ok(reference.kind == kind && groups.contains(&group))
}

/// The object named by `reference` in `namespace`, if the cache has it with the same UID.
fn cached<K>(
    store: &Store<K>,
    reference: &OwnerReference,
    namespace: &str,
) -> Option<std::sync::Arc<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::new(&reference.name).within(namespace))
        .filter(|o| o.meta().uid.as_deref() == Some(reference.uid.as_str()))
}

impl Finder {
    /// The controller `reference` names, from the caches (kube's finders for
    /// ReplicationControllers, Deployments, ReplicaSets and StatefulSets, in that order).
    pub fn cached_scale(
        &self,
        reference: &OwnerReference,
        namespace: &str,
    ) -> Result<Option<ControllerScale>, ScaleError> {
        let scale = |uid: Option<&String>, replicas: Option<i32>| ControllerScale {
            uid: uid.cloned().unwrap_or_default(),
            replicas: replicas.unwrap_or(1),
        };
        if is_kind(reference, "ReplicationController", &[""])?
            && let Some(rc) = cached(&self.controllers, reference, namespace)
        {
            let replicas = rc.spec.as_ref().and_then(|s| s.replicas);
            return Ok(Some(scale(rc.metadata.uid.as_ref(), replicas)));
        }
        if is_kind(reference, "ReplicaSet", &["apps", "extensions"])?
            && let Some(rs) = cached(&self.replica_sets, reference, namespace)
        {
            // A ReplicaSet of a Deployment counts as its Deployment.
            match controller_of(&rs.metadata) {
                Some(owner) if owner.kind == "Deployment" => {
                    if is_kind(owner, "Deployment", &["apps", "extensions"])?
                        && let Some(deployment) = cached(&self.deployments, owner, namespace)
                    {
                        let replicas = deployment.spec.as_ref().and_then(|s| s.replicas);
                        return Ok(Some(scale(deployment.metadata.uid.as_ref(), replicas)));
                    }
                }
                _ => {
                    let replicas = rs.spec.as_ref().and_then(|s| s.replicas);
                    return Ok(Some(scale(rs.metadata.uid.as_ref(), replicas)));
                }
            }
        }
        if is_kind(reference, "StatefulSet", &["apps"])?
            && let Some(set) = cached(&self.stateful_sets, reference, namespace)
        {
            let replicas = set.spec.as_ref().and_then(|s| s.replicas);
            return Ok(Some(scale(set.metadata.uid.as_ref(), replicas)));
        }
        Ok(None)
    }

    /// The controller `reference` names, through its kind's scale subresource (kube's
    /// `getScaleController`): `None` if it is gone or is another object now.
    async fn subresource_scale(
        &self,
        reference: &OwnerReference,
        namespace: &str,
    ) -> Result<Option<ControllerScale>, ScaleError> {
        let group = group_of(&reference.api_version)?;
        let version = reference.api_version.rsplit('/').next().unwrap_or_default();
        let gvk = GroupVersionKind::gvk(group, version, &reference.kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk).await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        match api.get_scale(&reference.name).await {
            Ok(scale) if scale.metadata.uid.as_deref() == Some(reference.uid.as_str()) => {
                Ok(Some(ControllerScale {
                    uid: reference.uid.clone(),
                    replicas: scale.spec.and_then(|s| s.replicas).unwrap_or(0),
                }))
            }
            Ok(_) => Ok(None),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let scalable = capabilities
                    .subresources
                    .iter()
                    .any(|(sub, _)| sub.plural == "scale");
                if scalable {
                    Ok(None)
                } else {
                    let resource = if group.is_empty() {
                        resource.plural
                    } else {
                        format!("{}.{group}", resource.plural)
                    };
                    Err(ScaleError::NotScalable { resource })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// kube's `getExpectedScale`: the summed scale of the controllers of `pods`, each
    /// controller counted once; a pod whose controller cannot be found is an error.
    pub async fn expected_scale(&self, pods: &[&Pod]) -> Result<ExpectedScale, ScaleError> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(reference) = controller_of(&pod.metadata) else {
                unmanaged.push(name);
                continue;
            };
            if scales.contains_key(&reference.uid) {
                continue;
            }
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let found = match self.cached_scale(reference, namespace)? {
                Some(found) => Some(found),
                None => self.subresource_scale(reference, namespace).await?,
            };
            let Some(found) = found else {
                return Err(ScaleError::NoController { pod: name });
            };
            scales.insert(found.uid, found.replicas);
        }
        let total: i64 = scales.values().map(|r| i64::from(*r)).sum();
        Ok(ExpectedScale {
            total: i32::try_from(total).unwrap_or(i32::MAX),
            unmanaged,
        })
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector::store::Writer, watcher};
    use serde_json::json;

    use super::*;

    fn store<K>(objects: &[serde_json::Value]) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned,
    {
        let mut writer = Writer::<K>::default();
        for object in objects {
            let object: K = serde_json::from_value(object.clone()).expect("object");
            writer.apply_watcher_event(&watcher::Event::Apply(object));
        }
        writer.as_reader()
    }

    fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> serde_json::Value {
        json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true}])
    }

    fn finder() -> Finder {
        // A client nobody calls: every controller here is in the caches.
        let client = Client::new(
            tower::service_fn(|_: axum::http::Request<kube::client::Body>| async {
                Err::<axum::http::Response<kube::client::Body>, std::io::Error>(
                    std::io::Error::other("no API server in unit tests"),
                )
            }),
            "default",
        );
        Finder {
            client,
            controllers: store(&[
                json!({"metadata": {"name": "rc", "namespace": "ns", "uid": "rc-1"},
                "spec": {"replicas": 2}}),
            ]),
            replica_sets: store(&[
                json!({"metadata": {"name": "web-1", "namespace": "ns", "uid": "rs-1",
                    "ownerReferences": owner("apps/v1", "Deployment", "web", "d-1")},
                    "spec": {"replicas": 1, "selector": {}}}),
                json!({"metadata": {"name": "web-2", "namespace": "ns", "uid": "rs-2",
                    "ownerReferences": owner("apps/v1", "Deployment", "web", "d-1")},
                    "spec": {"replicas": 3, "selector": {}}}),
                json!({"metadata": {"name": "lone", "namespace": "ns", "uid": "rs-3"},
                    "spec": {"replicas": 4, "selector": {}}}),
            ]),
            deployments: store(&[
                json!({"metadata": {"name": "web", "namespace": "ns", "uid": "d-1"},
                "spec": {"replicas": 5, "selector": {}, "template": {}}}),
            ]),
            stateful_sets: store(&[
                json!({"metadata": {"name": "db", "namespace": "ns", "uid": "ss-1"},
                "spec": {"replicas": 3, "selector": {}, "template": {}, "serviceName": "db"}}),
            ]),
        }
    }

    fn pod(name: &str, owners: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns",
            "ownerReferences": owners}}))
        .expect("pod")
    }

    #[tokio::test]
    async fn each_controller_counts_once_with_its_replicas() {
        let pods = [
            pod("a", owner("apps/v1", "ReplicaSet", "web-1", "rs-1")),
            pod("b", owner("apps/v1", "ReplicaSet", "web-2", "rs-2")),
            pod("c", owner("apps/v1", "ReplicaSet", "lone", "rs-3")),
            pod("d", owner("apps/v1", "StatefulSet", "db", "ss-1")),
            pod("e", owner("v1", "ReplicationController", "rc", "rc-1")),
            pod("f", owner("v1", "ReplicationController", "rc", "rc-1")),
            pod("bare", json!([])),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let scale = finder().expected_scale(&refs).await.expect("scale");
        // The Deployment (5, through both of its ReplicaSets) + the lone ReplicaSet (4) + the
        // StatefulSet (3) + the ReplicationController (2).
        assert_eq!(scale.total, 14);
        assert_eq!(scale.unmanaged, ["bare"]);
    }

    #[tokio::test]
    async fn a_reference_to_another_object_of_the_same_name_is_not_found() {
        let reference: OwnerReference = serde_json::from_value(json!(
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "ss-old"}))
        .expect("reference");
        assert_eq!(finder().cached_scale(&reference, "ns").ok().flatten(), None);
        let garbled: OwnerReference = serde_json::from_value(json!(
            {"apiVersion": "a/b/c", "kind": "StatefulSet", "name": "db", "uid": "ss-1"}))
        .expect("reference");
        assert!(matches!(
            finder().cached_scale(&garbled, "ns"),
            Err(ScaleError::ApiVersion { .. })
        ));
    }
}
