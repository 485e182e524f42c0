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
pub mod supervise;
pub mod workload;

use std::{future::Future, time::Duration};

use kube::Client;
use tracing::{info, warn};

pub use leader::LeaderElection;
pub(crate) use supervise::panic_message;
use supervise::{Backoff, Supervisor, Task};

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

/// A supervised task that runs `run` with its own client handle.
fn task<Fut>(name: &'static str, client: &Client, run: fn(Client) -> Fut) -> Task
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = client.clone();
    Task::new(name, move || run(client.clone()))
}

/// The leader's tasks: every controller and the scheduler.
fn tasks(client: &Client, config: &ControllerConfig) -> Vec<Task> {
    let pool = config.load_balancer_pool;
    let grace = config.node_monitor_grace;
    let (lb_client, lifecycle_client) = (client.clone(), client.clone());
    vec![
        task("namespace", client, namespace::run),
        task("scheduler", client, crate::scheduler::run),
        task("replicaset", client, replicaset::run),
        task("deployment", client, deployment::run),
        task("garbage-collector", client, gc::run),
        task("job", client, job::run),
        task("daemonset", client, daemonset::run),
        task("statefulset", client, statefulset::run),
        task("cronjob", client, cronjob::run),
        task("endpointslice", client, endpoints::run),
        Task::new("service-lb", move || {
            service_lb::run(lb_client.clone(), pool)
        }),
        Task::new("node-lifecycle", move || {
            node_lifecycle::run(lifecycle_client.clone(), grace)
        }),
    ]
}

/// Lead whenever the lease is ours: start the controllers under a [`Supervisor`] (a task
/// that fails is restarted with back-off, never left dead while the Lease is renewed), and
/// stop them all when the lease is lost.
async fn lead(election: &LeaderElection, client: &Client, config: &ControllerConfig) {
    loop {
        election.acquire().await;
        info!("became the leader: starting controllers");
        let supervisor = Supervisor::new(tasks(client, config), Backoff::default());
        tokio::select! {
            () = supervisor.run() => {}
            () = election.hold() => {}
        }
        // The supervisor's future is dropped here: every task is aborted.
        warn!("lost the leader lease: stopping controllers");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
