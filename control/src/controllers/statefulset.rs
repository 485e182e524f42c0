//! The StatefulSet controller: pods `<set>-0 … <set>-(n-1)` with stable names and hostnames
//! (`subdomain` = serviceName); OrderedReady creates each only once every lower ordinal is
//! Running and Ready and removes from the highest down, Parallel does all at once; rolling
//! updates replace pods whose revision (kept as ControllerRevisions, [`super::history`]) is
//! not the update revision, from the highest ordinal down to the partition, one at a time;
//! volumeClaimTemplates become per-pod PersistentVolumeClaims `<claim>-<set>-<ordinal>`.
//! A set without `serviceName` (optional since 1.33) works the same, its pods without a
//! subdomain; a Warning event says so once per generation.

use super::drive::Error;
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::{ControllerRevision, StatefulSet},
    core::v1::{PersistentVolumeClaim, Pod},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::{
    history::{self, POD_REVISION_LABEL, Style},
    workload::{
        controller_ref, create_pod, is_ready, owned_pods, pod_from_template, status_differs,
    },
};
use skiff_events::{Recorder, reference};

const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Event reason for a set without `serviceName`.
const MISSING_SERVICE_NAME: &str = "MissingServiceName";

struct Ctx {
    client: Client,
    recorder: Recorder,
    /// Set uid → the generation last warned about a missing `serviceName` (the informer
    /// cache can lag behind our own status write, so observedGeneration alone would repeat).
    warned: Mutex<HashMap<String, i64>>,
}

impl Ctx {
    /// Note a warning for `uid` at `generation`; false if it was already given.
    fn first_warning(&self, uid: &str, generation: i64) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned.insert(uid.to_owned(), generation) != Some(generation)
    }

    /// Forget a set that is going away.
    fn forget(&self, uid: &str) {
        self.warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }
}

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let sets: Api<StatefulSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "statefulset-controller"),
        client,
        warned: Mutex::new(HashMap::new()),
    });
    let controller = Controller::new(sets, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .owns(
            Api::<ControllerRevision>::all(ctx.client.clone()),
            watcher::Config::default(),
        );
    super::drive::drive(
        controller,
        "statefulset",
        Duration::from_secs(2),
        reconcile,
        ctx,
    )
    .await;
}

fn ordinal(set: &str, pod: &Pod) -> Option<i32> {
    pod.name_any()
        .strip_prefix(&format!("{set}-"))?
        .parse()
        .ok()
}

fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_ready(pod)
}

/// The Warning to give about a set without `serviceName`, on the first sync of each
/// generation (status not yet caught up with it); None otherwise.
fn missing_service_warning(set: &StatefulSet) -> Option<String> {
    let spec = set.spec.as_ref()?;
    if spec.service_name.as_deref().is_some_and(|s| !s.is_empty()) {
        return None;
    }
    let observed = set.status.as_ref().and_then(|s| s.observed_generation);
    if observed.is_some() && observed == set.metadata.generation {
        return None;
    }
    Some(format!(
        "StatefulSet {} has no spec.serviceName: its pods get no stable DNS names \
         (<pod>.<service>.<namespace>.svc) without a governing headless Service; \
         create one and set spec.serviceName to its name",
        set.name_any()
    ))
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let uid = set.metadata.uid.clone().unwrap_or_default();
    if set.metadata.deletion_timestamp.is_some() {
        ctx.forget(&uid);
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let owner = controller_ref("apps/v1", "StatefulSet", &set.metadata);
    let set_ref = reference("apps/v1", "StatefulSet", &set.metadata);
    if let Some(message) = missing_service_warning(&set)
        && ctx.first_warning(&uid, set.metadata.generation.unwrap_or(0))
    {
        ctx.recorder
            .record(&set_ref, "Warning", MISSING_SERVICE_NAME, &message)
            .await;
    }
    let replicas = spec.replicas.unwrap_or(1);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let pods = owned_pods(&ctx.client, &namespace, &spec.selector, &owner, true).await?;
    // The history first: the update revision names the pods to create.
    let status = set.status.clone().unwrap_or_default();
    let live: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.labels().get(POD_REVISION_LABEL).cloned())
        .collect();
    let kept: BTreeSet<String> = status.current_revision.iter().cloned().collect();
    let synced = history::sync(
        &ctx.client,
        &history::Owner {
            meta: &set.metadata,
            reference: owner.clone(),
            selector: &spec.selector,
            template: &spec.template,
            history_limit: spec.revision_history_limit.unwrap_or(10),
            collision_count: status.collision_count.unwrap_or(0),
            style: Style::StatefulSet,
        },
        &kept,
        &live,
    )
    .await?;
    let revision = Style::StatefulSet.pod_label(&synced.update);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut by_ordinal: Vec<Option<&Pod>> =
        vec![None; usize::try_from(replicas.max(0)).unwrap_or(0)];
    let mut extra: Vec<(i32, &Pod)> = Vec::new();
    for pod in &pods {
        match ordinal(&name, pod) {
            Some(i) if i >= 0 && i < replicas => {
                by_ordinal[usize::try_from(i).unwrap_or(0)] = Some(pod)
            }
            Some(i) => extra.push((i, pod)),
            None => {}
        }
    }
    let mut busy = false;
    // Failed pods are replaced (same name, after the old one is gone).
    for pod in by_ordinal.iter().flatten() {
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
            && pod.metadata.deletion_timestamp.is_none()
        {
            let _ = api.delete(&pod.name_any(), &DeleteParams::default()).await;
            busy = true;
        }
    }
    // Scale up.
    for (i, slot) in by_ordinal.iter().enumerate() {
        if let Some(pod) = slot {
            if !parallel && (!running_and_ready(pod) || pod.metadata.deletion_timestamp.is_some()) {
                busy = true;
                break;
            }
            continue;
        }
        let pod_name = format!("{name}-{i}");
        for claim in spec.volume_claim_templates.iter().flatten() {
            let claim_name = format!(
                "{}-{pod_name}",
                claim.metadata.name.clone().unwrap_or_default()
            );
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
            if pvcs.get_opt(&claim_name).await?.is_none() {
                let mut pvc = claim.clone();
                pvc.metadata.name = Some(claim_name);
                pvc.metadata.namespace = Some(namespace.clone());
                pvc.metadata
                    .labels
                    .get_or_insert_default()
                    .extend(spec.selector.match_labels.clone().unwrap_or_default());
                pvc.status = None;
                let _ = pvcs.create(&PostParams::default(), &pvc).await;
            }
        }
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_default();
        let labels = meta.labels.get_or_insert_default();
        labels.insert(POD_REVISION_LABEL.to_owned(), revision.clone());
        labels.insert(POD_NAME_LABEL.to_owned(), pod_name.clone());
        labels.insert(INDEX_LABEL.to_owned(), i.to_string());
        let mut pod = pod_from_template(
            &template,
            owner.clone(),
            &namespace,
            &format!("{name}-"),
            Some(pod_name.clone()),
        );
        if let Some(pod_spec) = pod.spec.as_mut() {
            pod_spec.hostname = Some(pod_name.clone());
            if !spec.service_name.clone().unwrap_or_default().is_empty() {
                pod_spec.subdomain = spec.service_name.clone();
            }
            for claim in spec.volume_claim_templates.iter().flatten() {
                let claim_template = claim.metadata.name.clone().unwrap_or_default();
                let volumes = pod_spec.volumes.get_or_insert_default();
                volumes.retain(|v| v.name != claim_template);
                volumes.push(serde_json::from_value(json!({
                    "name": claim_template,
                    "persistentVolumeClaim": {"claimName": format!("{claim_template}-{pod_name}")},
                })).unwrap_or_default());
            }
        }
        match create_pod(&ctx.client, &pod).await {
            Ok(_) => {
                ctx.recorder
                    .record(
                        &set_ref,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("create Pod {pod_name} in StatefulSet {name} successful"),
                    )
                    .await
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                ctx.recorder
                    .record(
                        &set_ref,
                        "Warning",
                        "FailedCreate",
                        &format!("create Pod {pod_name} in StatefulSet {name} failed error: {e}"),
                    )
                    .await
            }
        }
        busy = true;
        if !parallel {
            break;
        }
    }
    // Scale down from the highest ordinal.
    extra.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    for (_, pod) in &extra {
        if pod.metadata.deletion_timestamp.is_none() {
            let _ = api.delete(&pod.name_any(), &DeleteParams::default()).await;
            ctx.recorder
                .record(
                    &set_ref,
                    "Normal",
                    "SuccessfulDelete",
                    &format!(
                        "delete Pod {} in StatefulSet {name} successful",
                        pod.name_any()
                    ),
                )
                .await;
        }
        busy = true;
        if !parallel {
            break;
        }
    }
    // Rolling update: highest ordinal first, down to the partition, one at a time.
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        != Some("OnDelete");
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    if rolling && !busy && by_ordinal.iter().all(|p| p.is_some_and(running_and_ready)) {
        for (i, pod) in by_ordinal.iter().enumerate().rev() {
            let Some(pod) = pod else { continue };
            if i32::try_from(i).unwrap_or(0) < partition {
                break;
            }
            if pod.labels().get(POD_REVISION_LABEL) != Some(&revision) {
                let _ = api.delete(&pod.name_any(), &DeleteParams::default()).await;
                busy = true;
                break;
            }
        }
    }
    // Status.
    let present: Vec<&Pod> = by_ordinal.iter().flatten().copied().collect();
    let updated = present
        .iter()
        .filter(|p| p.labels().get(POD_REVISION_LABEL) == Some(&revision))
        .count();
    let ready = present.iter().filter(|p| is_ready(p)).count();
    // The current revision stays until every pod runs the update revision (kube's
    // completeRollingUpdate); one no longer in the history falls back to the update.
    let current_revision = if updated == present.len() && present.len() == by_ordinal.len() {
        revision.clone()
    } else {
        status
            .current_revision
            .clone()
            .filter(|c| synced.revisions.iter().any(|r| &r.name_any() == c))
            .unwrap_or_else(|| revision.clone())
    };
    let status = json!({
        "replicas": present.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": present.iter().filter(|p| p.labels().get(POD_REVISION_LABEL) == Some(&current_revision)).count(),
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": revision,
        "observedGeneration": set.metadata.generation,
        "collisionCount": (synced.collision_count > 0).then_some(synced.collision_count),
    });
    let current = serde_json::to_value(&set.status).unwrap_or_default();
    if status_differs(&current, &status) {
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(if busy {
        1
    } else {
        60
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(service_name: Option<&str>, generation: i64, observed: Option<i64>) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": generation},
            "spec": {"serviceName": service_name, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}}},
            "status": {"replicas": 0, "observedGeneration": observed},
        }))
        .expect("statefulset")
    }

    #[test]
    fn a_set_without_service_name_is_warned_about_once_per_generation() {
        let message = missing_service_warning(&set(None, 1, None)).expect("warning");
        assert!(message.contains("no stable DNS names"), "{message}");
        assert!(missing_service_warning(&set(Some(""), 2, Some(1))).is_some());
        // Synced already at this generation, or named: nothing to say.
        assert!(missing_service_warning(&set(None, 2, Some(2))).is_none());
        assert!(missing_service_warning(&set(Some("web"), 1, None)).is_none());
    }
}
