//! The garbage collector: objects whose owners are gone are deleted (background cascade);
//! an owner deleted with `propagationPolicy=Orphan` (finalizer `orphan`) first has its
//! dependents' owner references removed; one deleted with `Foreground` (finalizer
//! `foregroundDeletion`) has its dependents deleted and waits until those whose reference
//! blocks it (`blockOwnerDeletion: true`) are gone. Owners are confirmed with a live read
//! before anything is deleted, so watch ordering never causes a wrong deletion.
//!
//! As kube's collector, it follows every served kind that can be listed, watched and
//! deleted — built-in kinds and custom resources alike, so an operator's Deployments,
//! Services and ConfigMaps go with the custom resource that owns them — and starts over
//! with the new set whenever the served kinds change (a CRD established or removed).
//! Events are left out: nothing owns through them, and they are the busiest kind.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use serde_json::json;

/// A kind the collector follows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tracked {
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
}

impl Tracked {
    fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, &self.version, &self.kind),
            &self.plural,
        )
    }

    /// The API of objects of this kind in `namespace` (cluster-scoped kinds: all).
    fn api(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        if self.namespaced {
            Api::namespaced_with(client.clone(), namespace, &self.resource())
        } else {
            Api::all_with(client.clone(), &self.resource())
        }
    }

    /// Whether an owner reference's `apiVersion` and `kind` name this kind (any version of
    /// its group: the object is the same).
    fn owns_as(&self, api_version: &str, kind: &str) -> bool {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.group == group && self.kind == kind
    }
}

/// Every served kind that can be listed, watched and deleted, but Events.
fn tracked_kinds() -> Vec<Tracked> {
    crate::resources::served()
        .iter()
        .filter(|r| {
            ["list", "watch", "delete"]
                .iter()
                .all(|verb| r.verbs.contains(verb))
                && r.kind != "Event"
        })
        .map(|r| Tracked {
            group: r.group.to_owned(),
            version: r.version.to_owned(),
            kind: r.kind.to_owned(),
            plural: r.plural.to_owned(),
            namespaced: r.namespaced,
        })
        .collect()
}

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

#[derive(Debug, Clone)]
struct Node {
    kind: usize,
    namespace: String,
    name: String,
    owners: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

/// Run until aborted.
pub async fn run(client: Client) {
    loop {
        let generation = crate::resources::custom::generation();
        let kinds = tracked_kinds();
        follow(&client, &kinds, generation).await;
        tracing::info!("the served kinds changed: the garbage collector follows the new set");
    }
}

/// Follow `kinds` and collect, until the served kinds are no longer those of `generation`.
async fn follow(client: &Client, kinds: &[Tracked], generation: u64) {
    let streams = (0..kinds.len()).map(|i| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kinds[i].resource());
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |e| (i, e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut graph: HashMap<String, Node> = HashMap::new();
    let mut synced: Vec<bool> = vec![false; kinds.len()];
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    let mut dirty = false;
    loop {
        tokio::select! {
            Some((kind, event)) = events.next() => {
                match event {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => {
                        let uid = o.uid().unwrap_or_default();
                        graph.insert(uid, Node {
                            kind,
                            namespace: o.namespace().unwrap_or_default(),
                            name: o.name_any(),
                            owners: o.owner_references().to_vec(),
                            finalizers: o.finalizers().to_vec(),
                            deleting: o.metadata.deletion_timestamp.is_some(),
                        });
                    }
                    Ok(Event::Delete(o)) => {
                        graph.remove(&o.uid().unwrap_or_default());
                    }
                    Ok(Event::InitDone) => synced[kind] = true,
                    Ok(Event::Init) => {}
                    Err(e) => tracing::debug!(error = %e, "gc watch interrupted"),
                }
                dirty = true;
            }
            _ = tick.tick() => {
                if crate::resources::custom::generation() != generation {
                    return;
                }
                if dirty && synced.iter().all(|s| *s) {
                    dirty = false;
                    collect(client, kinds, &graph).await;
                }
            }
        }
    }
}

/// One pass over the graph.
async fn collect(client: &Client, kinds: &[Tracked], graph: &HashMap<String, Node>) {
    let mut dependents: BTreeMap<&str, Vec<(&String, &Node)>> = BTreeMap::new();
    for (uid, node) in graph {
        for owner in &node.owners {
            dependents
                .entry(owner.uid.as_str())
                .or_default()
                .push((uid, node));
        }
    }
    for (uid, owner) in graph.iter().filter(|(_, n)| n.deleting) {
        let children = dependents.get(uid.as_str()).cloned().unwrap_or_default();
        if owner.finalizers.iter().any(|f| f == ORPHAN) {
            for (_, child) in &children {
                let refs: Vec<_> = child
                    .owners
                    .iter()
                    .filter(|r| &r.uid != uid)
                    .cloned()
                    .collect();
                let patch = json!({"metadata": {"ownerReferences": refs}});
                let _ = kinds[child.kind]
                    .api(client, &child.namespace)
                    .patch(&child.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
            remove_finalizer(client, kinds, owner, ORPHAN).await;
        } else if owner.finalizers.iter().any(|f| f == FOREGROUND) {
            let step = foreground_step(uid, &children, |child| dependents.contains_key(child));
            for (child, foreground) in step.delete {
                let params = if foreground {
                    DeleteParams::foreground()
                } else {
                    DeleteParams::background()
                };
                let _ = kinds[child.kind]
                    .api(client, &child.namespace)
                    .delete(&child.name, &params)
                    .await;
            }
            if step.release {
                remove_finalizer(client, kinds, owner, FOREGROUND).await;
            }
        }
    }
    // Dependents whose owners are all gone.
    for node in graph
        .values()
        .filter(|n| !n.owners.is_empty() && !n.deleting)
    {
        let all_gone = node.owners.iter().all(|o| !graph.contains_key(&o.uid));
        if !all_gone || !owners_confirmed_gone(client, kinds, node).await {
            continue;
        }
        let kind = &kinds[node.kind];
        tracing::info!(kind = %kind.kind, name = %node.name, namespace = %node.namespace, "deleting an object whose owner is gone");
        let _ = kind
            .api(client, &node.namespace)
            .delete(&node.name, &DeleteParams::background())
            .await;
    }
}

/// What one pass does for an owner in foreground deletion.
#[derive(Debug)]
struct ForegroundStep<'a> {
    /// Dependents to delete now, each with whether in the foreground.
    delete: Vec<(&'a Node, bool)>,
    /// Whether the owner's `foregroundDeletion` finalizer can go.
    release: bool,
}

/// kube's collector for an owner (`owner_uid`) in foreground deletion: every dependent not
/// yet deleting is deleted — in the foreground if it has dependents of its own (per
/// `has_dependents`, by uid), so the wait covers the whole chain, else in the background —
/// and the owner is released once no dependent whose reference to it has
/// `blockOwnerDeletion: true` is left. The others never hold it up.
fn foreground_step<'a>(
    owner_uid: &str,
    children: &[(&'a String, &'a Node)],
    has_dependents: impl Fn(&str) -> bool,
) -> ForegroundStep<'a> {
    let blocks = |child: &Node| {
        child
            .owners
            .iter()
            .any(|r| r.uid == owner_uid && r.block_owner_deletion == Some(true))
    };
    ForegroundStep {
        delete: children
            .iter()
            .filter(|(_, child)| !child.deleting)
            .map(|&(uid, child)| (child, has_dependents(uid.as_str())))
            .collect(),
        release: !children.iter().any(|&(_, child)| blocks(child)),
    }
}

/// A live read of each owner: gone, or replaced by another object with the same name. An
/// owner of a kind not served (yet) is never taken for gone.
async fn owners_confirmed_gone(client: &Client, kinds: &[Tracked], node: &Node) -> bool {
    for owner in &node.owners {
        let Some(kind) = kinds
            .iter()
            .find(|k| k.owns_as(&owner.api_version, &owner.kind))
        else {
            return false;
        };
        match kind.api(client, &node.namespace).get_opt(&owner.name).await {
            Ok(Some(o)) if o.uid().as_deref() == Some(owner.uid.as_str()) => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

async fn remove_finalizer(client: &Client, kinds: &[Tracked], node: &Node, finalizer: &str) {
    let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {"finalizers": rest}});
    if let Err(e) = kinds[node.kind]
        .api(client, &node.namespace)
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(name = %node.name, error = %e, "cannot remove finalizer {finalizer}");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn pod(name: &str, owner: &str, blocks: Option<bool>, deleting: bool) -> Node {
        Node {
            kind: 0,
            namespace: "default".to_owned(),
            name: name.to_owned(),
            owners: vec![OwnerReference {
                api_version: "apps/v1".to_owned(),
                kind: "ReplicaSet".to_owned(),
                name: "rs".to_owned(),
                uid: owner.to_owned(),
                controller: Some(true),
                block_owner_deletion: blocks,
            }],
            finalizers: Vec::new(),
            deleting,
        }
    }

    fn names<'a>(step: &ForegroundStep<'a>) -> Vec<(&'a str, bool)> {
        step.delete
            .iter()
            .map(|(n, foreground)| (n.name.as_str(), *foreground))
            .collect()
    }

    #[test]
    fn every_listable_deletable_kind_but_events_is_tracked_and_owners_resolve_by_group() {
        let kinds = tracked_kinds();
        let has =
            |group: &str, kind: &str| kinds.iter().any(|k| k.group == group && k.kind == kind);
        for (group, kind) in [
            ("", "Pod"),
            ("", "ConfigMap"),
            ("", "Service"),
            ("", "Secret"),
            ("apps", "Deployment"),
            ("coordination.k8s.io", "Lease"),
            ("", "Node"),
        ] {
            assert!(has(group, kind), "{group}/{kind}");
        }
        assert!(!has("", "Event") && !has("events.k8s.io", "Event"));
        assert!(
            !has("authorization.k8s.io", "SubjectAccessReview"),
            "create-only kinds"
        );
        let deployment = kinds
            .iter()
            .find(|k| k.kind == "Deployment")
            .expect("deployments");
        assert!(deployment.owns_as("apps/v1", "Deployment"));
        assert!(!deployment.owns_as("extensions/v1beta1", "Deployment"));
        let node = kinds.iter().find(|k| k.kind == "Node").expect("nodes");
        assert!(node.owns_as("v1", "Node") && !node.namespaced);
    }

    #[test]
    fn only_blocking_dependents_hold_a_foreground_deletion() {
        let uids = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let blocking = pod("blocking", "rs", Some(true), false);
        let free = pod("free", "rs", Some(false), false);
        let unset = pod("unset", "rs", None, false);
        let children = [(&uids[0], &blocking), (&uids[1], &free), (&uids[2], &unset)];
        // Every dependent is deleted; "a" has dependents of its own, so in the foreground.
        let step = foreground_step("rs", &children, |uid| uid == "a");
        assert_eq!(
            names(&step),
            [("blocking", true), ("free", false), ("unset", false)]
        );
        assert!(!step.release);
        // Non-blocking dependents, even still present, do not hold the owner.
        let step = foreground_step("rs", &children[1..], |_| false);
        assert!(step.release);
        assert_eq!(names(&step), [("free", false), ("unset", false)]);
        // A blocking dependent on its way out still holds it, and is not deleted again.
        let going = pod("going", "rs", Some(true), true);
        let step = foreground_step("rs", &[(&uids[0], &going)], |_| false);
        assert!(!step.release && step.delete.is_empty());
        // A blocking reference to another owner does not count.
        let other = pod("other", "someone-else", Some(true), false);
        assert!(foreground_step("rs", &[(&uids[0], &other)], |_| false).release);
        assert!(foreground_step("rs", &[], |_| false).release);
    }
}
