//! Service discovery on the node: the cluster's Services and EndpointSlices, watched once
//! and used three times — for the Service environment variables of starting containers
//! ([`env`]), for the node-local DNS resolver (a [`skiff_dns::Zone`] served on the cluster
//! DNS address inside the node namespace), and for the datapath through the [`view`]
//! (slices indexed by Service, with change notifications). [`announce`] puts this node's
//! share of LoadBalancer addresses on the underlay.

pub mod announce;
pub mod env;
mod feed;
mod relist;
pub mod view;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, RwLock},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Node, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use skiff_dns::{ServerConfig, Zone};
use tracing::{error, info, warn};

use crate::metrics::Metrics;

/// How long a starting container waits for the Service cache before using what it has.
const CACHE_WAIT: Duration = Duration::from_secs(10);

/// Settings of the node's discovery.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Cluster domain (`cluster.local`).
    pub domain: String,
    /// The cluster DNS address the resolver answers on (`10.96.0.10`), put on the node
    /// namespace's `lo`.
    pub dns_ip: Ipv4Addr,
    /// Where names outside the cluster domain are forwarded (none: REFUSED).
    pub upstream: Option<SocketAddr>,
    /// Announcing LoadBalancer addresses on the underlay (none: this node never does).
    pub announce: Option<announce::Announcer>,
}

/// The node's view of Services, shared by the pod workers, the resolver and the datapath.
pub struct Discovery {
    services: Store<Service>,
    view: Arc<view::ServiceView>,
}

impl Discovery {
    /// Start the watches and the resolver (the DNS address is added to `lo` through
    /// `netlink`).
    pub fn start(
        client: Client,
        config: DiscoveryConfig,
        netlink: rtnetlink::Handle,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let zone = Arc::new(RwLock::new(Zone::new(&config.domain)));
        let (services, services_writer) = reflector::store();
        let service_events = watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(services_writer);
        let view = view::ServiceView::new(services.clone());
        tokio::spawn(feed::services(service_events, zone.clone(), view.clone()));
        if let Some(announcer) = config.announce.clone() {
            let (nodes, nodes_writer) = reflector::store();
            let node_events =
                watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
                    .default_backoff()
                    .reflect(nodes_writer)
                    .for_each(|_| async {});
            tokio::spawn(node_events);
            tokio::spawn(announce::run(
                services.clone(),
                nodes,
                view.clone(),
                announcer,
                netlink.clone(),
            ));
        }
        let slice_events = watcher::watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        )
        .default_backoff();
        tokio::spawn(feed::slices(slice_events, zone.clone(), view.clone()));
        tokio::spawn(resolve(config, zone, netlink, metrics));
        Arc::new(Self { services, view })
    }

    /// Services and their EndpointSlices, with change notifications (for the datapath).
    pub fn view(&self) -> Arc<view::ServiceView> {
        self.view.clone()
    }

    /// The Service environment variables of a container of a pod in `namespace`.
    pub async fn service_env(
        &self,
        namespace: &str,
        enable_service_links: bool,
    ) -> BTreeMap<String, String> {
        if tokio::time::timeout(CACHE_WAIT, self.services.wait_until_ready())
            .await
            .is_err()
        {
            warn!("the Service cache is not ready; starting the container with what it has");
        }
        let services = self.services.state();
        env::service_env(
            services.iter().map(AsRef::as_ref),
            namespace,
            enable_service_links,
        )
    }
}

/// Put the DNS address on `lo` and serve the zone there, retrying if the address or port
/// cannot be taken yet.
async fn resolve(
    config: DiscoveryConfig,
    zone: Arc<RwLock<Zone>>,
    netlink: rtnetlink::Handle,
    metrics: Arc<Metrics>,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        if let Err(e) = crate::network::sandbox::add_local_address(&netlink, config.dns_ip).await {
            warn!(error = %e, ip = %config.dns_ip, "cannot add the cluster DNS address to lo");
        }
        let server = ServerConfig {
            listen: vec![SocketAddr::from((config.dns_ip, 53))],
            upstream: config.upstream,
        };
        info!(listen = %config.dns_ip, domain = %config.domain, "cluster DNS serving");
        match skiff_dns::serve(server, zone.clone(), metrics.dns.clone()).await {
            Ok(()) => return,
            Err(e) => error!(error = %e, "the cluster DNS resolver stopped; restarting"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
