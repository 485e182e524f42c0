//! The LoadBalancer controller: every Service of type LoadBalancer (without a
//! loadBalancerClass) gets an address from the configured pool in
//! `status.loadBalancer.ingress`, as MetalLB's allocator does — `spec.loadBalancerIP` is
//! honoured when it is in the pool and free, addresses are never shared between Services,
//! and a Service that stops being a LoadBalancer gives its address back. The node agents
//! answer for the addresses on the underlay.

use super::drive::Error;
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use skiff_events::{Recorder, reference};

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    /// First address.
    pub first: Ipv4Addr,
    /// Last address.
    pub last: Ipv4Addr,
}

impl AddressPool {
    /// Parse `172.30.0.200-172.30.0.250` (or a single address).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (first, last) = text.split_once('-').unwrap_or((text, text));
        let parse = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|e| format!("load balancer pool {text:?}: {e}"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if u32::from(first) > u32::from(last) {
            return Err(format!(
                "load balancer pool {text:?}: the first address is after the last"
            ));
        }
        Ok(Self { first, last })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }

    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    pool: AddressPool,
    services: Store<Service>,
    /// Addresses handed out by this controller, ahead of the cache showing them.
    assigned: Mutex<BTreeMap<Ipv4Addr, ObjectRef<Service>>>,
}

fn is_managed_load_balancer(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

fn ingress_ips(service: &Service) -> Vec<Ipv4Addr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// Run the controller until aborted (nothing to do without a pool).
pub async fn run(client: Client, pool: Option<AddressPool>) {
    let Some(pool) = pool else {
        tracing::info!("no load balancer pool configured: LoadBalancer services stay pending");
        return;
    };
    let services: Api<Service> = Api::all(client.clone());
    let controller = Controller::new(services, watcher::Config::default());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "service-lb-controller"),
        client,
        pool,
        services: controller.store(),
        assigned: Mutex::new(BTreeMap::new()),
    });
    super::drive::drive(
        controller,
        "service-lb",
        Duration::from_secs(2),
        reconcile,
        ctx,
    )
    .await;
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let me = ObjectRef::from_obj(service.as_ref());
    let namespace = service.namespace().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = ingress_ips(&service);
    if !is_managed_load_balancer(&service) || service.metadata.deletion_timestamp.is_some() {
        release(&ctx, &me);
        let ours = current.iter().any(|ip| ctx.pool.contains(*ip));
        if ours
            && service
                .spec
                .as_ref()
                .and_then(|s| s.load_balancer_class.as_ref())
                .is_none()
        {
            let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
            api.patch_status(
                &service.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
        return Ok(Action::await_change());
    }
    let choice = {
        let mut assigned = ctx.assigned.lock().unwrap_or_else(|e| e.into_inner());
        // Services that are gone give their addresses back.
        assigned.retain(|_, owner| ctx.services.get(owner).is_some());
        // What the cache shows as taken by other Services, plus this controller's own
        // recent assignments.
        let mut taken: BTreeMap<Ipv4Addr, ObjectRef<Service>> = ctx
            .services
            .state()
            .iter()
            .filter(|s| is_managed_load_balancer(s))
            .flat_map(|s| {
                let owner = ObjectRef::from_obj(s.as_ref());
                ingress_ips(s)
                    .into_iter()
                    .map(move |ip| (ip, owner.clone()))
            })
            .collect();
        taken.extend(assigned.iter().map(|(ip, o)| (*ip, o.clone())));
        let free = |ip: &Ipv4Addr| taken.get(ip).is_none_or(|owner| *owner == me);
        let requested: Option<Ipv4Addr> = service
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|ip| !ip.is_empty())
            .and_then(|ip| ip.parse().ok());
        let keep = current
            .iter()
            .copied()
            .find(|ip| ctx.pool.contains(*ip) && free(ip) && requested.is_none_or(|r| r == *ip));
        let choice = match (keep, requested) {
            (Some(ip), _) => Ok(ip),
            (None, Some(ip)) if ctx.pool.contains(ip) && free(&ip) => Ok(ip),
            (None, Some(ip)) => Err(format!(
                "requested loadBalancerIP {ip} is not in the pool {}-{} or is in use",
                ctx.pool.first, ctx.pool.last
            )),
            (None, None) => ctx.pool.addresses().find(|ip| free(ip)).ok_or_else(|| {
                format!(
                    "no available IPs in the pool {}-{}",
                    ctx.pool.first, ctx.pool.last
                )
            }),
        };
        if let Ok(ip) = choice {
            assigned.retain(|_, owner| *owner != me);
            assigned.insert(ip, me.clone());
        }
        choice
    };
    let object = reference("v1", "Service", &service.metadata);
    match choice {
        Ok(ip) if current == [ip] => Ok(Action::await_change()),
        Ok(ip) => {
            let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}});
            api.patch_status(
                &service.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            ctx.recorder
                .record(
                    &object,
                    "Normal",
                    "IPAllocated",
                    &format!("Assigned IP [\"{ip}\"]"),
                )
                .await;
            Ok(Action::await_change())
        }
        Err(message) => {
            ctx.recorder
                .record(
                    &object,
                    "Warning",
                    "AllocationFailed",
                    &format!(
                        "Failed to allocate IP for \"{namespace}/{}\": {message}",
                        service.name_any()
                    ),
                )
                .await;
            Ok(Action::requeue(Duration::from_secs(30)))
        }
    }
}

fn release(ctx: &Ctx, service: &ObjectRef<Service>) {
    ctx.assigned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, owner| owner != service);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse_and_bound() {
        let pool = AddressPool::parse("172.30.0.200-172.30.0.250").expect("pool");
        assert!(pool.contains(Ipv4Addr::new(172, 30, 0, 200)));
        assert!(pool.contains(Ipv4Addr::new(172, 30, 0, 250)));
        assert!(!pool.contains(Ipv4Addr::new(172, 30, 0, 251)));
        assert_eq!(pool.addresses().count(), 51);
        assert!(AddressPool::parse("172.30.0.9-172.30.0.1").is_err());
        assert_eq!(
            AddressPool::parse("10.0.0.1")
                .expect("single")
                .addresses()
                .count(),
            1
        );
    }
}
