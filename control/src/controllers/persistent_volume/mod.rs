//! The PersistentVolume controller (kube's `persistent-volume-binder`) with Skiff's built-in
//! local-path provisioner: binds Pending claims to matching volumes, provisions a node-local
//! hostPath volume for a WaitForFirstConsumer claim of a `skiff.dev/local-path` class once
//! the scheduler has picked its node, keeps volume and claim phases true, and reclaims the
//! volumes of deleted claims (Delete: the volume is deleted, and its node's agent removes
//! the directory before clearing the volume's cleanup finalizer).
//!
//! Watch caches hold claims, volumes, classes and nodes; any change wakes one pass that
//! [`plan`]s from the caches and writes only what differs (a settled cluster writes
//! nothing), and a pass runs every [`RESYNC`] regardless. Writes carry the cached
//! resourceVersion, so a stale decision fails with a conflict and is made again from fresher
//! caches.

pub mod plan;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, PostParams},
    runtime::reflector::{self, Store},
};
use serde::{Serialize, de::DeserializeOwned};
use skiff_events::{Recorder, reference};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use self::plan::{Action, World};
use super::drive::cache_waking;

/// A full pass runs at least this often (kube's `--pvclaimbinder-sync-period`).
pub const RESYNC: Duration = Duration::from_secs(15);
/// How long a pass waits for more changes after the first wakes it.
const SETTLE: Duration = Duration::from_millis(50);
/// The controller's name in metrics, logs and events.
const NAME: &str = "persistentvolume-binder";

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let (claims, claims_w) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volumes_w) = reflector::store::<PersistentVolume>();
    let (classes, classes_w) = reflector::store::<StorageClass>();
    let (nodes, nodes_w) = reflector::store::<Node>();
    let wake = Arc::new(Notify::new());
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(cache_waking(
        NAME,
        Api::all(client.clone()),
        claims_w,
        Arc::clone(&wake),
    ));
    watches.spawn(cache_waking(
        NAME,
        Api::all(client.clone()),
        volumes_w,
        Arc::clone(&wake),
    ));
    watches.spawn(cache_waking(
        NAME,
        Api::all(client.clone()),
        classes_w,
        Arc::clone(&wake),
    ));
    watches.spawn(cache_waking(
        NAME,
        Api::all(client.clone()),
        nodes_w,
        Arc::clone(&wake),
    ));
    for ready in [
        claims.wait_until_ready().await,
        volumes.wait_until_ready().await,
        classes.wait_until_ready().await,
        nodes.wait_until_ready().await,
    ] {
        if ready.is_err() {
            warn!("persistent volume controller: a watch ended before its cache was ready");
            return;
        }
    }
    let recorder = Recorder::new(client.clone(), "persistentvolume-controller");
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            () = wake.notified() => tokio::time::sleep(SETTLE).await,
            _ = tick.tick() => {}
        }
        let world = World {
            claims: all(&claims),
            volumes: all(&volumes),
            classes: by_name(&classes),
            nodes: by_name(&nodes),
        };
        let actions = plan::plan(&world);
        let _ = super::metrics::instrumented(NAME, async {
            for action in actions {
                execute(&client, &recorder, action).await;
            }
            Ok::<(), ()>(())
        })
        .await;
    }
    // `watches` goes with this future.
}

fn all<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|o| (**o).clone()).collect()
}

fn by_name<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> BTreeMap<String, K> {
    store
        .state()
        .iter()
        .map(|o| (o.name_any(), (**o).clone()))
        .collect()
}

/// Make one planned write; failures are logged (the next pass decides again).
async fn execute(client: &Client, recorder: &Recorder, action: Action) {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims = |claim: &PersistentVolumeClaim| -> Api<PersistentVolumeClaim> {
        Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default())
    };
    let params = PostParams::default();
    let result = match &action {
        Action::UpdateVolume(volume) => volumes
            .replace(&volume.name_any(), &params, volume)
            .await
            .map(drop),
        Action::VolumePhase {
            volume,
            phase,
            message,
        } => {
            let mut updated = (**volume).clone();
            let status = updated.status.get_or_insert_with(Default::default);
            status.phase = Some((*phase).to_owned());
            status.message.clone_from(message);
            status.last_phase_transition_time = Some(now());
            replace_status(&volumes, &updated).await
        }
        Action::UpdateClaim(claim) => claims(claim)
            .replace(&claim.name_any(), &params, claim)
            .await
            .map(drop),
        Action::ClaimStatus {
            claim,
            phase,
            volume,
        } => {
            let mut updated = (**claim).clone();
            let status = updated.status.get_or_insert_with(Default::default);
            status.phase = Some((*phase).to_owned());
            let spec = volume.as_ref().and_then(|v| v.spec.clone());
            status.capacity = spec.clone().and_then(|s| s.capacity);
            status.access_modes = spec.and_then(|s| s.access_modes);
            let result = replace_status(&claims(claim), &updated).await;
            if result.is_ok() && *phase == "Lost" {
                let message =
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
                recorder
                    .record(
                        &reference("v1", "PersistentVolumeClaim", &claim.metadata),
                        "Warning",
                        "ClaimLost",
                        message,
                    )
                    .await;
            }
            result
        }
        Action::Provision(volume) => {
            let name = volume.name_any();
            let claim = volume.spec.as_ref().and_then(|s| s.claim_ref.clone());
            match volumes.create(&params, volume).await {
                Ok(_) => {
                    info!(volume = %name, "provisioned a local-path volume");
                    if let Some(claim) = claim {
                        let message = format!(
                            "Successfully provisioned volume {name} using {}",
                            crate::model::storage::PROVISIONER
                        );
                        recorder
                            .record(&claim, "Normal", "ProvisioningSucceeded", &message)
                            .await;
                    }
                    Ok(())
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::DeleteVolume(name) => {
            info!(volume = %name, "deleting a released volume (reclaim policy Delete)");
            match volumes.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
    };
    if let Err(error) = result {
        match &error {
            kube::Error::Api(e) if e.code == 409 => {
                debug!(?action, "stale cache; the next pass decides again");
            }
            _ => warn!(%error, "persistent volume controller write failed"),
        }
    }
}

/// PUT the object's `/status` with its resourceVersion.
async fn replace_status<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.replace_status(
        &object.meta().name.clone().unwrap_or_default(),
        &PostParams::default(),
        object,
    )
    .await
    .map(drop)
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}
