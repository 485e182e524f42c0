//! The Services every cluster has, written by the API server itself:
//!
//! - `kubernetes` (namespace default) at the first address of the service CIDR, whose
//!   Endpoints and EndpointSlice list the live API servers. Each server keeps a
//!   `/registry/masterleases/<ip>` key alive with an etcd lease (kube-apiserver's `lease`
//!   endpoint reconciler), so a server that dies drops out of the endpoints within the TTL.
//! - `kube-dns` (namespace kube-system) at the cluster DNS address, answered on every node
//!   by the agent's resolver; labelled like a cluster add-on so `kubectl cluster-info`
//!   names it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tracing::{info, warn};

use crate::{
    resources::{self, ResourceInfo, service_alloc},
    store::{ClaimChange, Store, StoreError, object_key},
};

/// Where the API servers' presence records live.
const MASTER_LEASES: &str = "/registry/masterleases/";
/// How long a presence record outlives its last renewal.
const MASTER_LEASE_TTL: i64 = 15;
/// How often a server renews its record and reconciles the endpoints.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

fn resource(plural: &str, group: &str, version: &str) -> Result<&'static ResourceInfo, StoreError> {
    resources::find(group, version, plural).ok_or_else(|| StoreError::Corrupt {
        key: plural.to_owned(),
        reason: "resource not served".to_owned(),
    })
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Default, validate and allocate a new system object, then create it with its claims
/// (nothing happens if it exists).
async fn create(store: &Store, info: &ResourceInfo, mut object: Value) -> Result<(), StoreError> {
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = object_key(info.group, info.plural, &namespace, &name);
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["creationTimestamp"] = json!(now());
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let prepared = info.strategy.prepare(&object, None).map_err(corrupt)?;
    if !prepared.errors.is_empty() {
        return Err(corrupt(format!("{:?}", prepared.errors)));
    }
    let mut object = prepared.object;
    info.strategy
        .allocate(&mut object, &|_| false)
        .map_err(|errors| corrupt(format!("{errors:?}")))?;
    let claims: Vec<String> = info
        .strategy
        .claims(&object)
        .into_iter()
        .map(|c| c.name)
        .collect();
    let change = ClaimChange {
        take: claims,
        release: Vec::new(),
    };
    match store.create_claiming(&key, &object, &change).await {
        Ok(_) => {
            info!(%namespace, %name, kind = info.kind, "created system object");
            Ok(())
        }
        Err(StoreError::AlreadyExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create `kubernetes` and `kube-dns` if they do not exist (safe with racing replicas).
pub async fn ensure_services(store: &Store, api_port: u16, dns_ip: &str) -> Result<(), StoreError> {
    let services = resource("services", "", "v1")?;
    let first = service_alloc::service_ranges().ip_at(1).to_string();
    create(
        store,
        services,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": first,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}],
                "sessionAffinity": "None",
            },
        }),
    )
    .await?;
    create(
        store,
        services,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {
                    "k8s-app": "kube-dns",
                    "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "SkiffDNS",
                },
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": dns_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        }),
    )
    .await
}

/// Keep this server's presence record alive and the `kubernetes` endpoints equal to the
/// live servers, forever.
pub async fn reconcile_api_endpoints(store: Arc<Store>, advertise: SocketAddr) {
    loop {
        if let Err(e) = reconcile_once(&store, advertise).await {
            warn!(error = %e, "could not reconcile the kubernetes service endpoints");
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}

async fn reconcile_once(store: &Store, advertise: SocketAddr) -> Result<(), StoreError> {
    let ip = advertise.ip().to_string();
    store
        .put_expiring(&format!("{MASTER_LEASES}{ip}"), &ip, MASTER_LEASE_TTL)
        .await?;
    let mut live: Vec<String> = store
        .raw_entries(MASTER_LEASES)
        .await?
        .into_iter()
        .map(|(key, _)| key.trim_start_matches(MASTER_LEASES).to_owned())
        .collect();
    live.sort();
    let port = advertise.port();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": live.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    upsert(
        store,
        resource("endpointslices", "discovery.k8s.io", "v1")?,
        slice,
        &["endpoints", "ports"],
    )
    .await?;
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{
            "addresses": live.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    });
    upsert(
        store,
        resource("endpoints", "", "v1")?,
        endpoints,
        &["subsets"],
    )
    .await
}

/// Create `desired`, or update the stored object when any of `fields` differs.
async fn upsert(
    store: &Store,
    info: &ResourceInfo,
    mut desired: Value,
    fields: &[&str],
) -> Result<(), StoreError> {
    let namespace = desired["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = desired["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = object_key(info.group, info.plural, &namespace, &name);
    let current = match store.get(&key).await {
        Ok(current) => current,
        Err(StoreError::NotFound) => return create(store, info, desired).await,
        Err(e) => return Err(e),
    };
    if fields.iter().all(|f| current.get(*f) == desired.get(*f)) {
        return Ok(());
    }
    desired["metadata"] = current["metadata"].clone();
    let revision: i64 = current["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    if let Some(metadata) = desired["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
    }
    match store.update(&key, &desired, revision).await {
        Ok(_) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}
