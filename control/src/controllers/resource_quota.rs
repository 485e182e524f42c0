//! The resource quota controller (kube's `pkg/controller/resourcequota`): keeps each
//! ResourceQuota's `status.hard` equal to its `spec.hard` and its `status.used` equal to what
//! the namespace's objects actually use (`model::quota` computes both the same way the
//! admission plugin charges), so deleted pods, finished pods and charges of writes that
//! failed after admission give their room back.
//!
//! Caches hold the quotas and the objects quotas count (pods, services, configmaps,
//! secrets, claims, replication controllers, quotas). A quota is synced when it appears, when
//! its `spec.hard` differs from `status.hard`, when an object of its namespace is deleted or
//! a pod finishes, and every [`RESYNC`] — not on every charge admission writes, which would
//! race with pods its caches have not seen yet (kube does the same). A status is written only
//! when it differs from the stored one, so a quiet cluster writes nothing. `count/*`
//! resources of other built-in kinds (`count/deployments.apps`) are listed when a quota is
//! synced (their deletions are seen at the next resync); those of custom resources keep
//! the usage admission charged.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::core::v1::{
        ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
        ResourceQuotaStatus, Secret, Service,
    },
    apimachinery::pkg::api::resource::Quantity as ApiQuantity,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::PostParams,
    runtime::{
        WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::warn;

use super::drive::{self, feed};
use crate::model::quota::{self, ResourceList, add, charges, count_name, covers, parse_list};

/// How often every quota is recomputed even when nothing asked for it (kube's
/// `--resource-quota-sync-period`).
pub const RESYNC: Duration = Duration::from_secs(300);

/// The object caches a quota's usage is computed from.
#[derive(Clone)]
struct Caches {
    pods: Store<Pod>,
    services: Store<Service>,
    config_maps: Store<ConfigMap>,
    secrets: Store<Secret>,
    claims: Store<PersistentVolumeClaim>,
    controllers: Store<ReplicationController>,
    quotas: Store<ResourceQuota>,
}

impl Caches {
    /// The objects of `namespace` per counted kind, as JSON: (group, plural, objects).
    fn objects(&self, namespace: &str) -> Vec<(&'static str, Vec<Value>)> {
        vec![
            ("pods", in_namespace(&self.pods, namespace)),
            ("services", in_namespace(&self.services, namespace)),
            ("configmaps", in_namespace(&self.config_maps, namespace)),
            ("secrets", in_namespace(&self.secrets, namespace)),
            (
                "persistentvolumeclaims",
                in_namespace(&self.claims, namespace),
            ),
            (
                "replicationcontrollers",
                in_namespace(&self.controllers, namespace),
            ),
            ("resourcequotas", in_namespace(&self.quotas, namespace)),
        ]
    }
}

/// The cached objects of `namespace`, as JSON.
fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<Value>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
        .collect()
}

/// What `objects` (core kinds by plural) use of the resources `hard` names, given the
/// quota's scopes: every named resource present (zero when nothing uses it), except
/// `count/*` of kinds not among `objects`, which keep their `previous` value.
pub fn compute_used(
    quota_object: &Value,
    hard: &ResourceList,
    objects: &[(&str, Vec<Value>)],
    previous: &ResourceList,
) -> ResourceList {
    let mut total = ResourceList::new();
    for (plural, items) in objects {
        if !hard.keys().any(|r| charges("", plural, r)) {
            continue;
        }
        for item in items {
            if covers(quota_object, "", plural, item) {
                total = add(&total, &quota::usage("", plural, item));
            }
        }
    }
    let counted: BTreeSet<String> = objects.iter().map(|(p, _)| count_name("", p)).collect();
    hard.iter()
        .map(|(name, limit)| {
            let untracked = name.starts_with("count/") && !counted.contains(name);
            let value = if untracked {
                previous.get(name).cloned()
            } else {
                total.get(name).cloned()
            };
            (name.clone(), value.unwrap_or_else(|| limit.zero_like()))
        })
        .collect()
}

/// Kube quantities as a list of parsed ones (unparseable entries dropped).
fn parsed(list: Option<&std::collections::BTreeMap<String, ApiQuantity>>) -> ResourceList {
    let value = list.and_then(|l| serde_json::to_value(l).ok());
    parse_list(value.as_ref())
}

/// True if two lists hold the same names with equal values.
fn same(a: &ResourceList, b: &ResourceList) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((n, x), (m, y))| n == m && x == y)
}

/// What every reconcile shares.
struct Shared {
    client: Client,
    caches: Caches,
}

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let (quotas, quotas_w) = reflector::store::<ResourceQuota>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let (services, services_w) = reflector::store::<Service>();
    let (config_maps, config_maps_w) = reflector::store::<ConfigMap>();
    let (secrets, secrets_w) = reflector::store::<Secret>();
    let (claims, claims_w) = reflector::store::<PersistentVolumeClaim>();
    let (controllers, controllers_w) = reflector::store::<ReplicationController>();
    let (enqueue, queued) = mpsc::unbounded_channel::<ObjectRef<ResourceQuota>>();
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(releases(
        client.clone(),
        pods_w,
        quotas.clone(),
        enqueue.clone(),
        finished_pod,
    ));
    watches.spawn(releases(
        client.clone(),
        services_w,
        quotas.clone(),
        enqueue.clone(),
        never,
    ));
    watches.spawn(releases(
        client.clone(),
        config_maps_w,
        quotas.clone(),
        enqueue.clone(),
        never,
    ));
    watches.spawn(releases(
        client.clone(),
        secrets_w,
        quotas.clone(),
        enqueue.clone(),
        never,
    ));
    watches.spawn(releases(
        client.clone(),
        claims_w,
        quotas.clone(),
        enqueue.clone(),
        never,
    ));
    watches.spawn(releases(
        client.clone(),
        controllers_w,
        quotas.clone(),
        enqueue.clone(),
        never,
    ));
    for ready in [
        pods.wait_until_ready().await,
        services.wait_until_ready().await,
        config_maps.wait_until_ready().await,
        secrets.wait_until_ready().await,
        claims.wait_until_ready().await,
        controllers.wait_until_ready().await,
    ] {
        if ready.is_err() {
            warn!("resource quota controller: a watch ended before its cache was ready");
            return;
        }
    }
    // A quota is queued when it is listed, when its spec.hard is not yet its status.hard,
    // and when it is deleted (a quota counts in `resourcequotas` of its namespace).
    let quota_changes = {
        let quotas = quotas.clone();
        let enqueue = enqueue.clone();
        watcher(
            Api::<ResourceQuota>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(quotas_w)
        .try_filter_map(move |event| {
            let wanted = match event {
                watcher::Event::InitApply(quota) => Some(quota),
                watcher::Event::Apply(quota) if needs_sync(&quota) => Some(quota),
                watcher::Event::Delete(quota) => {
                    enqueue_namespace(&quotas, &quota, &enqueue);
                    None
                }
                _ => None,
            };
            futures::future::ready(Ok(wanted.map(|q| ObjectRef::from_obj(&q))))
        })
    };
    // Every quota, every RESYNC.
    let resync = {
        let quotas = quotas.clone();
        futures::stream::unfold(tokio::time::interval(RESYNC), |mut ticks| async move {
            ticks.tick().await;
            Some(((), ticks))
        })
        .flat_map(move |()| {
            futures::stream::iter(
                quotas
                    .state()
                    .iter()
                    .map(|q| Ok(ObjectRef::from_obj(q.as_ref())))
                    .collect::<Vec<_>>(),
            )
        })
    };
    let released = UnboundedReceiverStream::new(queued).map(Ok::<_, watcher::Error>);
    let queue = futures::stream::select(quota_changes, futures::stream::select(released, resync));
    let shared = Arc::new(Shared {
        client,
        caches: Caches {
            pods,
            services,
            config_maps,
            secrets,
            claims,
            controllers,
            quotas: quotas.clone(),
        },
    });
    drive::drive_queue(
        quotas,
        queue,
        "resourcequota",
        Duration::from_secs(1),
        reconcile,
        shared,
    )
    .await;
    // `watches` goes with this future.
}

/// True if the quota's status does not yet reflect its spec.
fn needs_sync(quota: &ResourceQuota) -> bool {
    let spec = parsed(quota.spec.as_ref().and_then(|s| s.hard.as_ref()));
    let status = quota.status.as_ref();
    let hard = parsed(status.and_then(|s| s.hard.as_ref()));
    let used = parsed(status.and_then(|s| s.used.as_ref()));
    !same(&spec, &hard) || spec.keys().any(|r| !used.contains_key(r))
}

/// Queue every quota of `object`'s namespace.
fn enqueue_namespace<K: Resource>(
    quotas: &Store<ResourceQuota>,
    object: &K,
    enqueue: &mpsc::UnboundedSender<ObjectRef<ResourceQuota>>,
) {
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    for quota in quotas.state() {
        if quota.namespace().as_deref() == Some(namespace.as_str()) {
            let _ = enqueue.send(ObjectRef::from_obj(quota.as_ref()));
        }
    }
}

/// Keep `writer`'s cache of every `K`, queueing the quotas of the namespace whenever an
/// object goes away or a pod finishes (the events that give room back).
async fn releases<K>(
    client: Client,
    writer: reflector::store::Writer<K>,
    quotas: Store<ResourceQuota>,
    enqueue: mpsc::UnboundedSender<ObjectRef<ResourceQuota>>,
    finished: fn(&K) -> bool,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    feed("resourcequota", stream, move |event: watcher::Event<K>| {
        let released = match &event {
            watcher::Event::Delete(object) => Some(object),
            watcher::Event::Apply(object) if finished(object) => Some(object),
            _ => None,
        };
        if let Some(object) = released {
            enqueue_namespace(&quotas, object, &enqueue);
        }
    })
    .await;
}

/// True for a pod that has finished (its compute resources are no longer charged).
fn finished_pod(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Objects of other kinds release only when deleted.
fn never<K>(_: &K) -> bool {
    false
}

/// The built-in kind a `count/<plural>[.<group>]` resource names, if served.
fn counted_kind(resource: &str) -> Option<&'static crate::resources::ResourceInfo> {
    let name = resource.strip_prefix("count/")?;
    let (plural, group) = name.split_once('.').unwrap_or((name, ""));
    crate::resources::REGISTRY
        .iter()
        .find(|r| r.group == group && r.plural == plural && r.namespaced)
}

/// Live object counts of the built-in kinds `hard` counts (`count/deployments.apps`) that
/// are not among the cached `objects`: listed (metadata only) when the quota is synced.
/// Kinds Skiff does not serve as built-ins (custom resources) are left out.
async fn count_others(
    client: &Client,
    namespace: &str,
    hard: &ResourceList,
    objects: &[(&str, Vec<Value>)],
) -> Result<ResourceList, kube::Error> {
    let cached: BTreeSet<String> = objects.iter().map(|(p, _)| count_name("", p)).collect();
    let mut counts = ResourceList::new();
    for resource in hard.keys().filter(|r| !cached.contains(*r)) {
        let Some(info) = counted_kind(resource) else {
            continue;
        };
        let api_resource = kube::api::ApiResource {
            group: info.group.to_owned(),
            version: info.version.to_owned(),
            api_version: info.api_version(),
            kind: info.kind.to_owned(),
            plural: info.plural.to_owned(),
        };
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource);
        let listed = api.list_metadata(&kube::api::ListParams::default()).await?;
        let count = i64::try_from(listed.items.len()).unwrap_or(i64::MAX);
        counts.insert(resource.clone(), skiff_quantity::Quantity::from_i64(count));
    }
    Ok(counts)
}

async fn reconcile(quota: Arc<ResourceQuota>, shared: Arc<Shared>) -> Result<Action, drive::Error> {
    let namespace = quota.namespace().unwrap_or_default();
    let quota_object = serde_json::to_value(quota.as_ref()).unwrap_or(Value::Null);
    let hard = parsed(quota.spec.as_ref().and_then(|s| s.hard.as_ref()));
    let status = quota.status.as_ref();
    let stored_hard = parsed(status.and_then(|s| s.hard.as_ref()));
    let stored_used = parsed(status.and_then(|s| s.used.as_ref()));
    let objects = shared.caches.objects(&namespace);
    let mut previous = stored_used.clone();
    previous.extend(count_others(&shared.client, &namespace, &hard, &objects).await?);
    let used = compute_used(&quota_object, &hard, &objects, &previous);
    if same(&hard, &stored_hard) && same(&used, &stored_used) {
        return Ok(Action::await_change());
    }
    let to_api = |list: &ResourceList| {
        list.iter()
            .map(|(n, q)| (n.clone(), ApiQuantity(q.to_string())))
            .collect()
    };
    let mut updated = quota.as_ref().clone();
    updated.status = Some(ResourceQuotaStatus {
        hard: Some(to_api(&hard)),
        used: Some(to_api(&used)),
    });
    // The cached resourceVersion: a charge admission wrote meanwhile makes this a 409,
    // and the quota is synced again from fresher caches.
    let api: Api<ResourceQuota> = Api::namespaced(shared.client.clone(), &namespace);
    api.replace_status(&quota.name_any(), &PostParams::default(), &updated)
        .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use skiff_quantity::Quantity;

    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(n, q)| ((*n).to_owned(), Quantity::parse(q).expect("quantity")))
            .collect()
    }

    #[test]
    fn usage_is_recomputed_from_the_objects() {
        let quota = json!({"metadata": {"name": "q"}, "spec": {}});
        let hard = list(&[
            ("pods", "2"),
            ("requests.cpu", "500m"),
            ("configmaps", "5"),
            ("count/deployments.apps", "3"),
        ]);
        let pod = |cpu: &str, phase: &str| {
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
                   "status": {"phase": phase}})
        };
        let objects = vec![
            (
                "pods",
                vec![
                    pod("100m", "Running"),
                    pod("200m", "Pending"),
                    pod("1", "Succeeded"),
                ],
            ),
            ("configmaps", vec![]),
        ];
        let previous = list(&[("count/deployments.apps", "2"), ("pods", "7")]);
        let used = compute_used(&quota, &hard, &objects, &previous);
        assert_eq!(
            used,
            list(&[
                ("pods", "2"),
                ("requests.cpu", "300m"),
                ("configmaps", "0"),
                ("count/deployments.apps", "2"),
            ])
        );
        let best_effort = json!({"spec": {"scopes": ["BestEffort"]}});
        let used = compute_used(
            &best_effort,
            &list(&[("pods", "5")]),
            &objects,
            &ResourceList::new(),
        );
        assert_eq!(used, list(&[("pods", "0")]));
    }

    #[test]
    fn object_counts_name_served_kinds() {
        assert_eq!(
            counted_kind("count/deployments.apps").map(|r| r.kind),
            Some("Deployment")
        );
        assert_eq!(counted_kind("count/pods").map(|r| r.kind), Some("Pod"));
        assert!(counted_kind("count/widgets.example.com").is_none());
        assert!(counted_kind("count/nodes").is_none(), "cluster-scoped");
    }

    #[test]
    fn quotas_whose_status_lags_their_spec_are_synced() {
        let quota = |status: Value| -> ResourceQuota {
            serde_json::from_value(json!({"metadata": {"name": "q"},
                "spec": {"hard": {"pods": "2"}}, "status": status}))
            .expect("quota")
        };
        assert!(needs_sync(&quota(json!({}))));
        assert!(needs_sync(&quota(json!({"hard": {"pods": "2"}}))));
        assert!(needs_sync(&quota(
            json!({"hard": {"pods": "3"}, "used": {"pods": "0"}})
        )));
        assert!(!needs_sync(&quota(
            json!({"hard": {"pods": "2"}, "used": {"pods": "1"}})
        )));
    }
}
