//! Controllers inside skiff-control. They talk to the API server like any client (a kube-rs
//! client with their own certificate), and only the replica holding the leader Lease runs
//! them, so several replicas never act twice.

pub mod certificates;
pub mod clusterrole_aggregation;
pub mod crd;
pub(crate) mod cron;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod drive;
mod endpoints;
mod gc;
mod history;
mod job;
mod leader;
pub mod metrics;
mod namespace;
pub mod namespace_defaults;
mod node_lifecycle;
pub mod persistent_volume;
pub mod pvc_protection;
mod replicaset;
pub mod resource_quota;
pub mod service_lb;
mod statefulset;
pub mod supervise;
pub mod workload;

use std::{collections::BTreeMap, future::Future, time::Duration};

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
    /// The cluster CA certificate (PEM) the root-CA publisher puts in every namespace
    /// (none: the publisher does not run).
    pub root_ca: Option<String>,
    /// The cluster CA with its key, the built-in CSR signers sign with (none: they do not
    /// run).
    pub signing_ca: Option<crate::pki::Pem>,
    /// This replica's aggregator (none: the APIService controller does not run).
    pub aggregator: Option<std::sync::Arc<crate::aggregator::Aggregator>>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            node_monitor_grace: Duration::from_secs(40),
            load_balancer_pool: None,
            root_ca: None,
            signing_ca: None,
            aggregator: None,
        }
    }
}

/// The API clients the leader's tasks act with: each controller as its own
/// ServiceAccount identity (kube's names: `replicaset-controller`…), the scheduler as
/// `system:kube-scheduler`, leader election as `system:kube-controller-manager`.
#[derive(Clone)]
pub struct Clients {
    /// Leader election (and any controller without an identity of its own).
    pub manager: Client,
    /// The scheduler.
    pub scheduler: Client,
    /// Controllers by ServiceAccount name.
    pub controllers: BTreeMap<String, Client>,
}

impl Clients {
    /// Every task with the same client (tests; clusters without authorization).
    pub fn single(client: Client) -> Self {
        Self {
            manager: client.clone(),
            scheduler: client,
            controllers: BTreeMap::new(),
        }
    }

    /// The client of the controller running as ServiceAccount `account`.
    fn controller(&self, account: &str) -> Client {
        self.controllers
            .get(account)
            .cloned()
            .unwrap_or_else(|| self.manager.clone())
    }
}

/// Run the controllers whenever this replica leads, until `stop` turns true; then stop
/// them and hand the leader Lease back, so a restarted or other replica takes over at
/// once. Returns early only if `client` is unusable.
pub async fn run(
    clients: Clients,
    identity: String,
    config: ControllerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let election = LeaderElection::new(
        clients.manager.clone(),
        "kube-system",
        "skiff-controller-manager",
        identity,
    );
    tokio::select! {
        () = lead(&election, &clients, &config) => {}
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

/// The leader's tasks: every controller and the scheduler, each with its identity.
fn tasks(clients: &Clients, config: &ControllerConfig) -> Vec<Task> {
    let pool = config.load_balancer_pool;
    let grace = config.node_monitor_grace;
    let lb_client = clients.controller("service-controller");
    let lifecycle_client = clients.controller("node-controller");
    let mut tasks = vec![
        task(
            "namespace",
            &clients.controller("namespace-controller"),
            namespace::run,
        ),
        task("scheduler", &clients.scheduler, crate::scheduler::run),
        task(
            "replicaset",
            &clients.controller("replicaset-controller"),
            replicaset::run,
        ),
        task(
            "deployment",
            &clients.controller("deployment-controller"),
            deployment::run,
        ),
        task(
            "garbage-collector",
            &clients.controller("generic-garbage-collector"),
            gc::run,
        ),
        task("job", &clients.controller("job-controller"), job::run),
        task(
            "daemonset",
            &clients.controller("daemon-set-controller"),
            daemonset::run,
        ),
        task(
            "statefulset",
            &clients.controller("statefulset-controller"),
            statefulset::run,
        ),
        task(
            "cronjob",
            &clients.controller("cronjob-controller"),
            cronjob::run,
        ),
        task(
            "disruption",
            &clients.controller("disruption-controller"),
            disruption::run,
        ),
        task(
            "endpointslice",
            &clients.controller("endpointslice-controller"),
            endpoints::run,
        ),
        task(
            "serviceaccount",
            &clients.controller("service-account-controller"),
            namespace_defaults::run_service_accounts,
        ),
        task(
            "clusterrole-aggregation",
            &clients.controller("clusterrole-aggregation-controller"),
            clusterrole_aggregation::run,
        ),
        task(
            "resourcequota",
            &clients.controller("resourcequota-controller"),
            resource_quota::run,
        ),
        task(
            "persistentvolume-binder",
            &clients.controller("persistent-volume-binder"),
            persistent_volume::run,
        ),
        task(
            "pvc-protection",
            &clients.controller("pvc-protection-controller"),
            pvc_protection::run,
        ),
        task(
            "customresourcedefinition",
            &clients.controller("customresourcedefinition-controller"),
            crd::run,
        ),
        Task::new("service-lb", move || {
            service_lb::run(lb_client.clone(), pool)
        }),
        Task::new("node-lifecycle", move || {
            node_lifecycle::run(lifecycle_client.clone(), grace)
        }),
    ];
    if let Some(ca) = &config.signing_ca {
        let client = clients.controller("certificate-controller");
        let ca = ca.clone();
        tasks.push(Task::new("csrsigning", move || {
            certificates::run(client.clone(), ca.clone())
        }));
    }
    if let Some(aggregator) = &config.aggregator {
        let client = clients.controller("apiservice-controller");
        let aggregator = std::sync::Arc::clone(aggregator);
        tasks.push(Task::new("apiservice", move || {
            crate::aggregator::availability::run(client.clone(), std::sync::Arc::clone(&aggregator))
        }));
    }
    if let Some(ca) = &config.root_ca {
        let client = clients.controller("root-ca-cert-publisher");
        let ca = ca.clone();
        tasks.push(Task::new("root-ca-cert-publisher", move || {
            namespace_defaults::run_root_ca_publisher(client.clone(), ca.clone())
        }));
    }
    tasks
}

/// Lead whenever the lease is ours: start the controllers under a [`Supervisor`] (a task
/// that fails is restarted with back-off, never left dead while the Lease is renewed), and
/// stop them all when the lease is lost.
async fn lead(election: &LeaderElection, clients: &Clients, config: &ControllerConfig) {
    loop {
        election.acquire().await;
        info!("became the leader: starting controllers");
        let supervisor = Supervisor::new(tasks(clients, config), Backoff::default());
        tokio::select! {
            () = supervisor.run() => {}
            () = election.hold() => {}
        }
        // The supervisor's future is dropped here: every task is aborted.
        warn!("lost the leader lease: stopping controllers");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
