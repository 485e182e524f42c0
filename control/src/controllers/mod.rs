//! Controllers inside skiff-control. They talk to the API server like any client (a kube-rs
//! client with their own certificate), and only the replica holding the leader Lease runs
//! them, so several replicas never act twice.

pub(crate) mod cron;
mod cronjob;
mod daemonset;
mod deployment;
mod drive;
mod endpoints;
mod gc;
mod job;
mod leader;
pub mod metrics;
mod namespace;
mod node_lifecycle;
mod replicaset;
pub mod service_lb;
mod statefulset;
pub mod workload;

use std::time::Duration;

use kube::Client;
use tracing::{info, warn};

pub use leader::LeaderElection;

/// Settings of the controllers.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How long a node's Lease may go unrenewed before the node is marked unreachable
    /// (kube-controller-manager's --node-monitor-grace-period).
    pub node_monitor_grace: Duration,
    /// Addresses for LoadBalancer Services (none: they stay pending).
    pub load_balancer_pool: Option<service_lb::AddressPool>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            node_monitor_grace: Duration::from_secs(40),
            load_balancer_pool: None,
        }
    }
}

/// Run the controllers whenever this replica leads, until `stop` turns true; then stop
/// them and hand the leader Lease back, so a restarted or other replica takes over at
/// once. Returns early only if `client` is unusable.
pub async fn run(
    client: Client,
    identity: String,
    config: ControllerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let election = LeaderElection::new(
        client.clone(),
        "kube-system",
        "skiff-controller-manager",
        identity,
    );
    tokio::select! {
        () = lead(&election, &client, &config) => {}
        _ = stop.wait_for(|stop| *stop) => {
            info!("stopping controllers");
        }
    }
    // The controllers' JoinSet went with `lead`'s future: every controller is aborted.
    election.release().await;
}

/// Lead whenever the lease is ours: start the controllers, and stop them when it is lost.
async fn lead(election: &LeaderElection, client: &Client, config: &ControllerConfig) {
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
        controllers.spawn(endpoints::run(client.clone()));
        controllers.spawn(service_lb::run(client.clone(), config.load_balancer_pool));
        controllers.spawn(node_lifecycle::run(
            client.clone(),
            config.node_monitor_grace,
        ));
        election.hold().await;
        warn!("lost the leader lease: stopping controllers");
        controllers.abort_all();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
