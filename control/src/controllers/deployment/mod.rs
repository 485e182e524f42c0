//! The Deployment controller, with kube-controller-manager's semantics: one ReplicaSet per
//! pod template (named `<deployment>-<pod-template-hash>`), rolling updates bounded by
//! maxSurge/maxUnavailable or Recreate, revisions in `deployment.kubernetes.io/revision`
//! (a rollback re-uses the old set and gives it the next revision), pause, history limits,
//! and the Available/Progressing conditions `kubectl rollout status` reads.

use super::drive::{Context, Error};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    api::apps::v1::{Deployment, ReplicaSet},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::{Value, json};

mod progress;

use progress::{Rollout, TIMED_OUT, progressed, progressing};

use super::workload::{controller_ref, controller_uid, selector_query, status_differs};
use skiff_events::reference;

/// Annotation carrying a ReplicaSet's revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const HASH_LABEL: &str = "pod-template-hash";

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let sets: Api<ReplicaSet> = Api::all(client.clone());
    let ctx = Context::new(client, "deployment-controller");
    let controller = Controller::new(deployments, watcher::Config::default())
        .owns(sets, watcher::Config::default());
    super::drive::drive(
        controller,
        "deployment",
        Duration::from_secs(2),
        reconcile,
        ctx,
    )
    .await;
}

/// kube's SafeEncodeString alphabet (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The pod-template-hash of a template: FNV-1a over its JSON, safe-encoded.
pub fn template_hash(template: &Value, collisions: i32) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(template.to_string().as_bytes());
    if collisions > 0 {
        feed(&collisions.to_le_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// A set's template without the hash label, for comparison with the deployment's.
fn bare_template(set: &ReplicaSet) -> Value {
    let mut template = serde_json::to_value(set.spec.as_ref().and_then(|s| s.template.clone()))
        .unwrap_or_default();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    without_defaults(&template)
}

/// A value with zero values dropped (false, 0, "", null, empty lists and maps), so templates
/// compare as decoded Go structs do: an explicit default equals an absent field.
pub fn without_defaults(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_defaults(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_defaults).collect()),
        other => other.clone(),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn revision(set: &ReplicaSet) -> i64 {
    set.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(set: &ReplicaSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(set: &ReplicaSet) -> (i32, i32, i32) {
    let s = set.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

/// Resolve an int-or-percent against `total` (percent rounded up for surge, down otherwise).
fn resolve(value: Option<&IntOrString>, total: i32, default: &str, round_up: bool) -> i32 {
    let value = value
        .cloned()
        .unwrap_or_else(|| IntOrString::String(default.to_owned()));
    match value {
        IntOrString::Int(n) => n.max(0),
        IntOrString::String(s) => {
            let percent: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = f64::from(total) * percent / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

/// maxSurge and maxUnavailable as numbers (both 0 is not allowed: unavailable becomes 1).
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rolling = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .unwrap_or_default();
    let surge = resolve(rolling.max_surge.as_ref(), replicas, "25%", true);
    let mut unavailable = resolve(rolling.max_unavailable.as_ref(), replicas, "25%", false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let spec = d.spec.clone().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let listed = api
        .list(&ListParams::default().labels(&selector_query(&spec.selector)))
        .await?;
    let mut sets: Vec<ReplicaSet> = listed
        .items
        .into_iter()
        .filter(|s| controller_uid(&s.metadata) == Some(uid.as_str()))
        .collect();
    sets.sort_by_key(|s| (revision(s), s.creation_timestamp().map(|t| t.0.as_second())));
    let template = without_defaults(&serde_json::to_value(&spec.template).unwrap_or_default());
    let d_ref = reference("apps/v1", "Deployment", &d.metadata);
    let replicas = spec.replicas.unwrap_or(1);
    let paused = spec.paused.unwrap_or(false);
    // The set of the current template: the oldest one if several match (as kube picks).
    let mut new_set = sets
        .iter()
        .filter(|s| bare_template(s) == template)
        .min_by_key(|s| s.creation_timestamp().map(|t| t.0.as_second()))
        .cloned();
    let new_uid = new_set.as_ref().and_then(|s| s.metadata.uid.clone());
    let max_old_revision = sets
        .iter()
        .filter(|s| s.metadata.uid != new_uid)
        .map(revision)
        .max()
        .unwrap_or(0);
    let (surge, max_unavailable) = surge_and_unavailable(&d);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    // Whether this sync starts a new rollout (its set is created here).
    let mut created = false;

    // The set for the current template: create it, or bring its revision to the front.
    if new_set.is_none() && !paused {
        let collisions = d
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let hash = template_hash(&template, collisions);
        let mut set_template = spec.template.clone();
        set_template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(HASH_LABEL.to_owned(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(HASH_LABEL.to_owned(), hash.clone());
        let mut labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(HASH_LABEL.to_owned(), hash.clone());
        let mut annotations: BTreeMap<String, String> = BTreeMap::from([
            (REVISION.to_owned(), (max_old_revision + 1).to_string()),
            (DESIRED.to_owned(), replicas.to_string()),
            (MAX_REPLICAS.to_owned(), (replicas + surge).to_string()),
        ]);
        if let Some(cause) = d.annotations().get(CHANGE_CAUSE) {
            annotations.insert(CHANGE_CAUSE.to_owned(), cause.clone());
        }
        // A first rollout starts at full size; a later one grows under the surge rules.
        let initial = if !recreate && sets.iter().all(|s| spec_replicas(s) == 0) {
            replicas
        } else {
            0
        };
        let set: ReplicaSet = serde_json::from_value(json!({
            "metadata": {
                "name": format!("{name}-{hash}"),
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [controller_ref("apps/v1", "Deployment", &d.metadata)],
            },
            "spec": {
                "replicas": initial,
                "minReadySeconds": spec.min_ready_seconds.unwrap_or(0),
                "selector": selector,
                "template": set_template,
            },
        }))
        .unwrap_or_default();
        match api.create(&PostParams::default(), &set).await {
            Ok(made) => {
                ctx.recorder
                    .record(
                        &d_ref,
                        "Normal",
                        "ScalingReplicaSet",
                        &format!(
                            "Scaled up replica set {} from 0 to {initial}",
                            made.name_any()
                        ),
                    )
                    .await;
                created = true;
                new_set = Some(made.clone());
                sets.push(made);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Same name, different template: a hash collision. Count it and retry.
                let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
                let status = json!({"status": {"collisionCount": collisions + 1}});
                deployments
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await?;
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            Err(e) => return Err(e.into()),
        }
    } else if let Some(set) = &new_set
        && (revision(set) <= max_old_revision
            || set.annotations().get(CHANGE_CAUSE) != d.annotations().get(CHANGE_CAUSE))
        && !paused
    {
        let mut annotations =
            json!({REVISION: (revision(set).max(max_old_revision + 1)).to_string()});
        if let Some(cause) = d.annotations().get(CHANGE_CAUSE) {
            annotations[CHANGE_CAUSE] = json!(cause);
        }
        let patched = api
            .patch(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": annotations}})),
            )
            .await?;
        new_set = Some(patched);
    }
    // The Deployment carries its current revision too (kubectl rollout undo patches it).
    if let Some(set) = &new_set {
        let current = revision(set).to_string();
        if d.annotations().get(REVISION) != Some(&current) {
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"metadata": {"annotations": {REVISION: current}}});
            deployments
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    let new_name = new_set.as_ref().map(ResourceExt::name_any);
    let olds: Vec<ReplicaSet> = sets
        .iter()
        .filter(|s| Some(s.name_any()) != new_name)
        .cloned()
        .collect();

    let scale = |set: &ReplicaSet, to: i32| {
        let api = api.clone();
        let recorder = ctx.recorder.clone();
        let d_ref = d_ref.clone();
        let set_name = set.name_any();
        let from = spec_replicas(set);
        async move {
            if from == to {
                return Ok::<(), kube::Error>(());
            }
            let patch = json!({
                "metadata": {"annotations": {DESIRED: replicas.to_string(), MAX_REPLICAS: (replicas + surge).to_string()}},
                "spec": {"replicas": to},
            });
            api.patch(&set_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let verb = if to > from { "up" } else { "down" };
            recorder
                .record(
                    &d_ref,
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled {verb} replica set {set_name} from {from} to {to}"),
                )
                .await;
            Ok(())
        }
    };

    if paused {
        // Paused: only follow replica changes of a single active set.
        let active: Vec<&ReplicaSet> = sets.iter().filter(|s| spec_replicas(s) > 0).collect();
        if let [only] = active.as_slice() {
            scale(only, replicas).await?;
        }
    } else if let Some(new) = &new_set {
        if recreate {
            for old in &olds {
                scale(old, 0).await?;
            }
            let old_pods: i32 = olds.iter().map(|s| status_of(s).0).sum();
            if old_pods == 0 {
                scale(new, replicas).await?;
            }
        } else {
            // Scale up the new set within maxSurge.
            let total: i32 = sets.iter().map(spec_replicas).sum();
            let new_replicas = spec_replicas(new);
            if new_replicas < replicas {
                let room = (replicas + surge - total).max(0);
                let up = room.min(replicas - new_replicas);
                if up > 0 {
                    scale(new, new_replicas + up).await?;
                }
            } else if new_replicas > replicas {
                scale(new, replicas).await?;
            }
            // Scale old sets down without going below replicas - maxUnavailable available.
            let all_pods: i32 = sets.iter().map(spec_replicas).sum::<i32>().max(total);
            let min_available = replicas - max_unavailable;
            let (_, _, new_available) = status_of(new);
            let new_unavailable = (spec_replicas(new) - new_available).max(0);
            let mut budget = all_pods - min_available - new_unavailable;
            // First unhealthy old pods (they do not count toward availability anyway).
            for old in olds.iter().filter(|s| spec_replicas(s) > 0) {
                if budget <= 0 {
                    break;
                }
                let (_, _, available) = status_of(old);
                let unhealthy = (spec_replicas(old) - available).max(0).min(budget);
                if unhealthy > 0 {
                    scale(old, spec_replicas(old) - unhealthy).await?;
                    budget -= unhealthy;
                }
            }
            let total_available: i32 = sets.iter().map(|s| status_of(s).2).sum();
            let mut can_remove = (total_available - min_available).min(budget).max(0);
            for old in olds.iter().filter(|s| spec_replicas(s) > 0) {
                if can_remove <= 0 {
                    break;
                }
                let (_, _, available) = status_of(old);
                let current = spec_replicas(old).min(available.max(0)).max(0);
                let down = current.min(can_remove);
                if down > 0 {
                    scale(old, spec_replicas(old) - down).await?;
                    can_remove -= down;
                }
            }
        }
    }

    // Old sets past the history limit go (oldest first), once empty.
    let limit = usize::try_from(spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(10);
    let empty_olds: Vec<&ReplicaSet> = olds
        .iter()
        .filter(|s| spec_replicas(s) == 0 && status_of(s).0 == 0)
        .collect();
    if empty_olds.len() > limit {
        for old in empty_olds.iter().take(empty_olds.len() - limit) {
            let _ = api
                .delete(&old.name_any(), &DeleteParams::background())
                .await;
        }
    }

    update_status(
        &ctx,
        &d,
        &api,
        new_name.as_deref(),
        max_unavailable,
        created,
    )
    .await
}

/// Recompute status and conditions from the (re-read) sets; `created`: this sync created
/// the new set (a new rollout starts).
async fn update_status(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    new_name: Option<&str>,
    max_unavailable: i32,
    created: bool,
) -> Result<Action, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let sets: Vec<ReplicaSet> = api
        .list(&ListParams::default().labels(&selector_query(&spec.selector)))
        .await?
        .items
        .into_iter()
        .filter(|s| controller_uid(&s.metadata) == Some(uid.as_str()))
        .collect();
    let replicas = spec.replicas.unwrap_or(1);
    let sum = |f: fn(&ReplicaSet) -> i32| sets.iter().map(f).sum::<i32>();
    let total = sum(|s| status_of(s).0);
    let ready = sum(|s| status_of(s).1);
    let available = sum(|s| status_of(s).2);
    let new = sets
        .iter()
        .find(|s| Some(s.name_any().as_str()) == new_name);
    let updated = new.map_or(0, |s| status_of(s).0);
    let new_available = new.map_or(0, |s| status_of(s).2);
    let complete = updated == replicas
        && total == replicas
        && new_available == replicas
        && new.is_some_and(|s| {
            s.status.as_ref().and_then(|st| st.observed_generation) >= s.metadata.generation
        });
    let now = now_text();
    let old_conditions = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let previous = |kind: &str| old_conditions.iter().find(|c| c.type_ == kind).cloned();
    let condition = |kind: &str, status: bool, reason: &str, message: String, keep_update: bool| {
        let before = previous(kind);
        let status_text = if status { "True" } else { "False" };
        let transition = before
            .as_ref()
            .filter(|b| b.status == status_text)
            .and_then(|b| {
                b.last_transition_time
                    .as_ref()
                    .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            })
            .unwrap_or_else(|| now.clone());
        let update = before
            .as_ref()
            .filter(|b| keep_update && b.reason.as_deref() == Some(reason))
            .and_then(|b| {
                b.last_update_time
                    .as_ref()
                    .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            })
            .unwrap_or_else(|| now.clone());
        json!({"type": kind, "status": status_text, "reason": reason, "message": message,
               "lastTransitionTime": transition, "lastUpdateTime": update})
    };
    let available_ok = available >= replicas - max_unavailable;
    let available_condition = condition(
        "Available",
        available_ok,
        if available_ok {
            "MinimumReplicasAvailable"
        } else {
            "MinimumReplicasUnavailable"
        },
        if available_ok {
            "Deployment has minimum availability.".to_owned()
        } else {
            "Deployment does not have minimum availability.".to_owned()
        },
        true,
    );
    let old_counts = d.status.as_ref().map_or((0, 0, 0, 0), |s| {
        (
            s.replicas.unwrap_or(0),
            s.updated_replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    });
    let progressing_condition = progressing(
        previous("Progressing").as_ref(),
        &Rollout {
            deployment: &d.name_any(),
            new_set: new_name,
            created,
            paused: spec.paused.unwrap_or(false),
            complete,
            all_updated: total == updated,
            progressed: progressed(old_counts, (total, updated, ready, available)),
            deadline_seconds: spec.progress_deadline_seconds.unwrap_or(600),
            now: jiff::Timestamp::now(),
        },
    );
    let exceeded = progressing_condition
        .as_ref()
        .is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT));
    let mut conditions = vec![available_condition];
    conditions.extend(
        progressing_condition
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok()),
    );
    let status = json!({
        "observedGeneration": d.metadata.generation,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (replicas - available).max(0),
        "conditions": conditions,
    });
    let current = serde_json::to_value(&d.status).unwrap_or_default();
    let mut comparable = status.clone();
    let mut current_comparable = current.clone();
    for v in [&mut comparable, &mut current_comparable] {
        if let Some(conditions) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in conditions {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastUpdateTime");
                    o.remove("lastTransitionTime");
                }
            }
        }
    }
    if status_differs(&current_comparable, &comparable) {
        let deployments: Api<Deployment> =
            Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
        deployments
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await?;
    }
    if !complete && !exceeded {
        // Look again for the progress deadline even without events.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_defaults_equal_absent_fields() {
        let a = json!({"spec": {"containers": [{"name": "a", "tty": false, "stdin": false}], "hostPID": false}, "metadata": {"generation": 0}});
        let b = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(without_defaults(&a), without_defaults(&b));
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let t = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let h = template_hash(&t, 0);
        assert_eq!(h, template_hash(&t, 0));
        assert_ne!(h, template_hash(&t, 1));
        assert!(h.bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn surge_rounds_up_and_unavailable_down() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": 6, "selector": {}, "template": {},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}},
        }))
        .expect("deployment");
        assert_eq!(surge_and_unavailable(&d), (2, 1));
        let zero: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": 3, "selector": {}, "template": {},
                     "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}},
        }))
        .expect("deployment");
        assert_eq!(surge_and_unavailable(&zero), (0, 1));
    }
}
