//! The garbage collector: objects whose owners are gone are deleted (background cascade);
//! an owner deleted with `propagationPolicy=Orphan` (finalizer `orphan`) first has its
//! dependents' owner references removed; one deleted with `Foreground` (finalizer
//! `foregroundDeletion`) waits until its dependents are gone. Owners are confirmed with a
//! live read before anything is deleted, so watch ordering never causes a wrong deletion.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::watcher::{self, Event},
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
    crate::resources::REGISTRY
        .iter()
        .any(|r| r.group == group && r.version == version && r.kind == kind_name)
}

/// Run until aborted.
pub async fn run(client: Client) {
    let watched: Vec<usize> = (0..KINDS.len()).filter(|k| served(*k)).collect();
    let streams = watched.iter().copied().map(|i| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(i));
        watcher::watcher(api, watcher::Config::default())
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
            if children.is_empty() {
                remove_finalizer(client, owner, FOREGROUND).await;
            } else {
                for (_, child) in children.iter().filter(|(_, c)| !c.deleting) {
                    let _ = api(client, child.kind, &child.namespace)
                        .delete(&child.name, &DeleteParams::foreground())
                        .await;
                }
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
