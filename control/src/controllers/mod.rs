//! Controllers inside skiff-control. They talk to the API server like any client (a kube-rs
//! client with their own certificate), and only the replica holding the leader Lease runs
//! them, so several replicas never act twice.

mod cron;
mod cronjob;
mod daemonset;
mod deployment;
mod gc;
mod job;
mod leader;
mod namespace;
mod replicaset;
mod statefulset;
pub mod workload;

use std::time::Duration;

use kube::Client;
use tracing::{info, warn};

pub use leader::LeaderElection;

/// Run the controllers whenever this replica leads; returns when `client` is unusable.
pub async fn run(client: Client, identity: String) {
    let election = LeaderElection::new(
        client.clone(),
        "kube-system",
        "skiff-controller-manager",
        identity,
    );
    loop {
        election.acquire().await;
        info!("became the leader: starting controllers");
        let mut controllers = tokio::task::JoinSet::new();
        controllers.spawn(namespace::run(client.clone()));
        controllers.spawn(crate::scheduler::run(client.clone()));
        controllers.spawn(replicaset::run(client.clone()));
        controllers.spawn(deployment::run(client.clone()));
        controllers.spawn(gc::run(client.clone()));
        controllers.spawn(job::run(client.clone()));
        controllers.spawn(daemonset::run(client.clone()));
        controllers.spawn(statefulset::run(client.clone()));
        controllers.spawn(cronjob::run(client.clone()));
        election.hold().await;
        warn!("lost the leader lease: stopping controllers");
        controllers.abort_all();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
