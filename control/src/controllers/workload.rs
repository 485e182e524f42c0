//! What the workload controllers share: pods from templates with controller owner
//! references, pod liveness/readiness/availability as kube-controller-manager judges them,
//! listing by selector (any kind), and adoption of orphans that match.

use std::{collections::BTreeMap, fmt::Debug};

use k8s_openapi::{
    api::core::v1::{Pod, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client, Resource,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::scheduler::predicates::selector_matches;

/// The controller owner reference that points at `owner`.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The UID of an object's controller, if it has one.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// A pod built from `template`, owned by `owner`, named `<prefix>` + a random suffix (or
/// exactly `name` when given).
pub fn pod_from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    namespace: &str,
    generate_name: &str,
    name: Option<String>,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name: Some(generate_name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Counts toward replicas: not finished, not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        condition
            .last_transition_time
            .as_ref()
            .map_or_else(jiff::Timestamp::now, |t| t.0),
    )
}

/// Ready condition True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        min_ready_seconds <= 0
            || since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now
    })
}

/// The label-selector query string of a selector.
pub fn selector_query(selector: &LabelSelector) -> String {
    crate::model::selector::render(&serde_json::to_value(selector).unwrap_or_default())
}

/// Pods of `namespace` matching `selector` that `owner` controls, adopting matching
/// orphans (as kube's ControllerRefManager does).
pub async fn owned_pods(
    client: &Client,
    namespace: &str,
    selector: &LabelSelector,
    owner: &OwnerReference,
    adopt: bool,
) -> Result<Vec<Pod>, kube::Error> {
    owned(
        &Api::namespaced(client.clone(), namespace),
        selector,
        owner,
        adopt,
    )
    .await
}

/// Objects of `api` matching `selector` that `owner` controls, adopting matching orphans
/// that are not being deleted when `adopt` (as kube's ControllerRefManager does).
pub async fn owned<K>(
    api: &Api<K>,
    selector: &LabelSelector,
    owner: &OwnerReference,
    adopt: bool,
) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let query = selector_query(selector);
    let listed = api.list(&ListParams::default().labels(&query)).await?;
    let mut owned = Vec::new();
    for object in listed.items {
        let meta = object.meta();
        let labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
        if !selector_matches(selector, &labels) {
            continue;
        }
        match controller_uid(meta) {
            Some(uid) if uid == owner.uid => owned.push(object),
            Some(_) => {}
            None if adopt && meta.deletion_timestamp.is_none() => {
                let name = meta.name.clone().unwrap_or_default();
                let mut refs = meta.owner_references.clone().unwrap_or_default();
                refs.push(owner.clone());
                let patch = json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}});
                if let Ok(adopted) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    owned.push(adopted);
                }
            }
            None => {}
        }
    }
    Ok(owned)
}

/// Whether `desired` status fields differ from `current` (absent and 0 / null are equal,
/// fields `desired` does not mention are ignored).
pub fn status_differs(current: &serde_json::Value, desired: &serde_json::Value) -> bool {
    let normal = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => json!(0),
        Some(v) => v.clone(),
    };
    desired
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| normal(current.get(k)) != normal(Some(v)))
}

/// Create a pod; returns its name.
pub async fn create_pod(client: &Client, pod: &Pod) -> Result<String, kube::Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let created = pods.create(&PostParams::default(), pod).await?;
    Ok(created.metadata.name.unwrap_or_default())
}

/// The order in which surplus pods are deleted (kube's ActivePods ordering): unassigned
/// before assigned, pending before running, not ready before ready, newest first.
pub fn deletion_rank(pod: &Pod) -> (u8, u8, u8, std::cmp::Reverse<i64>) {
    let assigned = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (
        u8::from(assigned),
        u8::from(phase == "Running"),
        u8::from(is_ready(pod)),
        std::cmp::Reverse(created),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unassigned_pods_go_first() {
        let pod = |node: Option<&str>, phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": phase},
            }))
            .expect("pod")
        };
        let mut pods = [
            pod(Some("n"), "Running"),
            pod(None, "Pending"),
            pod(Some("n"), "Pending"),
        ];
        pods.sort_by_key(deletion_rank);
        assert!(pods[0].spec.as_ref().is_some_and(|s| s.node_name.is_none()));
        assert_eq!(
            pods[2].status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running")
        );
    }
}
