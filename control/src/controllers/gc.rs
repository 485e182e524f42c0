//! The garbage collector: objects whose owners are gone are deleted (background cascade);
//! an owner deleted with `propagationPolicy=Orphan` (finalizer `orphan`) first has its
//! dependents' owner references removed; one deleted with `Foreground` (finalizer
//! `foregroundDeletion`) has its dependents deleted and waits until those whose reference
//! blocks it (`blockOwnerDeletion: true`) are gone. Owners are confirmed with a live read
//! before anything is deleted, so watch ordering never causes a wrong deletion.

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

/// The kinds the collector tracks (owners and dependents of the built-in controllers).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "ReplicaSet", "replicasets"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("apps", "v1", "ControllerRevision", "controllerrevisions"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
    ("", "v1", "ReplicationController", "replicationcontrollers"),
    ("", "v1", "Pod", "pods"),
];

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

fn resource(kind: usize) -> ApiResource {
    let (group, version, kind_name, plural) = KINDS[kind];
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind_name), plural)
}

fn api(client: &Client, kind: usize, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource(kind))
}

/// Whether this server serves the kind (a watch on an unserved kind would never sync).
fn served(kind: usize) -> bool {
    let (group, version, kind_name, _) = KINDS[kind];
    crate::resources::served()
        .iter()
        .any(|r| r.group == group && r.version == version && r.kind == kind_name)
}

/// Run until aborted.
pub async fn run(client: Client) {
    let watched: Vec<usize> = (0..KINDS.len()).filter(|k| served(*k)).collect();
    let streams = watched.iter().copied().map(|i| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(i));
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |e| (i, e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut graph: HashMap<String, Node> = HashMap::new();
    let mut synced: Vec<bool> = (0..KINDS.len()).map(|k| !served(k)).collect();
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
                if dirty && synced.iter().all(|s| *s) {
                    dirty = false;
                    collect(&client, &graph).await;
                }
            }
        }
    }
}

/// One pass over the graph.
async fn collect(client: &Client, graph: &HashMap<String, Node>) {
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
                let _ = api(client, child.kind, &child.namespace)
                    .patch(&child.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
            remove_finalizer(client, owner, ORPHAN).await;
        } else if owner.finalizers.iter().any(|f| f == FOREGROUND) {
            let step = foreground_step(uid, &children, |child| dependents.contains_key(child));
            for (child, foreground) in step.delete {
                let params = if foreground {
                    DeleteParams::foreground()
                } else {
                    DeleteParams::background()
                };
                let _ = api(client, child.kind, &child.namespace)
                    .delete(&child.name, &params)
                    .await;
            }
            if step.release {
                remove_finalizer(client, owner, FOREGROUND).await;
            }
        }
    }
    // Dependents whose owners are all gone.
    for node in graph
        .values()
        .filter(|n| !n.owners.is_empty() && !n.deleting)
    {
        let all_gone = node.owners.iter().all(|o| !graph.contains_key(&o.uid));
        if !all_gone || !owners_confirmed_gone(client, node).await {
            continue;
        }
        tracing::info!(kind = KINDS[node.kind].2, name = %node.name, namespace = %node.namespace, "deleting an object whose owner is gone");
        let _ = api(client, node.kind, &node.namespace)
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

/// A live read of each owner: gone, or replaced by another object with the same name.
async fn owners_confirmed_gone(client: &Client, node: &Node) -> bool {
    for owner in &node.owners {
        let Some(kind) = KINDS.iter().position(|k| k.2 == owner.kind) else {
            return false;
        };
        match api(client, kind, &node.namespace)
            .get_opt(&owner.name)
            .await
        {
            Ok(Some(o)) if o.uid().as_deref() == Some(owner.uid.as_str()) => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

async fn remove_finalizer(client: &Client, node: &Node, finalizer: &str) {
    let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {"finalizers": rest}});
    if let Err(e) = api(client, node.kind, &node.namespace)
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
            kind: KINDS.len() - 1,
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
