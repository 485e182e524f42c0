//! The watch streams into the node's consumers: each Service and EndpointSlice event goes
//! to the DNS zone and the datapath's [`ServiceView`]; after a re-list, what it lacks is
//! removed and what it holds is re-announced (it may have been created or changed while
//! the watch was down).

use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::runtime::watcher::{self, Event};
use skiff_dns::Zone;

use super::{
    relist::{Relist, key_of},
    view::ServiceView,
};

/// Keep the zone's Services equal to the API's (the watch re-lists after errors: what the
/// re-list lacks is removed).
pub(super) async fn services(
    events: impl Stream<Item = Result<Event<Service>, watcher::Error>>,
    zone: Arc<RwLock<Zone>>,
    view: Arc<ServiceView>,
) {
    let mut events = std::pin::pin!(events);
    let mut relist = Relist::default();
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        let Ok(mut zone) = zone.write() else { return };
        match event {
            Event::Init => relist.begin(),
            // The reflector swaps a re-list into the store only at InitDone: the view (which
            // reads the store) hears of re-listed Services then, not before.
            Event::InitApply(svc) => {
                relist.listed(key_of(&svc));
                zone.apply_service(&svc);
            }
            Event::Apply(svc) => {
                relist.applied(key_of(&svc));
                zone.apply_service(&svc);
                view.service_changed(&svc);
            }
            Event::Delete(svc) => {
                let (ns, name) = key_of(&svc);
                relist.deleted(&(ns.clone(), name.clone()));
                zone.remove_service(&ns, &name);
                view.service_changed(&svc);
            }
            Event::InitDone => {
                let listed = relist.done();
                for (ns, name) in &listed.gone {
                    zone.remove_service(ns, name);
                    view.service_ref_changed(ns, name);
                }
                // Created or changed while the watch was down: only the re-list tells.
                for (ns, name) in &listed.present {
                    view.service_ref_changed(ns, name);
                }
                view.services_listed();
            }
        }
    }
}

/// Keep the zone's and the view's EndpointSlices equal to the API's.
pub(super) async fn slices(
    events: impl Stream<Item = Result<Event<EndpointSlice>, watcher::Error>>,
    zone: Arc<RwLock<Zone>>,
    view: Arc<ServiceView>,
) {
    let mut events = std::pin::pin!(events);
    let mut relist = Relist::default();
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        match event {
            Event::Init => relist.begin(),
            Event::InitApply(slice) => {
                relist.listed(key_of(&slice));
                apply_slice(&zone, &view, &slice);
            }
            Event::Apply(slice) => {
                relist.applied(key_of(&slice));
                apply_slice(&zone, &view, &slice);
            }
            Event::Delete(slice) => {
                let key = key_of(&slice);
                relist.deleted(&key);
                if let Ok(mut zone) = zone.write() {
                    zone.remove_slice(&key.0, &key.1);
                }
                view.apply_slice(&key.0, &key.1, None);
            }
            Event::InitDone => {
                let listed = relist.done();
                if let Ok(mut zone) = zone.write() {
                    for (ns, name) in &listed.gone {
                        zone.remove_slice(ns, name);
                    }
                }
                view.retain_slices(&listed.present.into_iter().collect());
                view.slices_listed();
            }
        }
    }
}

fn apply_slice(zone: &RwLock<Zone>, view: &ServiceView, slice: &EndpointSlice) {
    if let Ok(mut zone) = zone.write() {
        zone.apply_slice(slice);
    }
    let (ns, name) = key_of(slice);
    view.apply_slice(&ns, &name, Some(slice));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::stream;
    use kube::runtime::{WatchStreamExt, reflector};
    use serde_json::json;

    use super::*;
    use crate::discovery::view::ServiceRef;

    fn service(name: &str, port: i32) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": port}]},
        }))
        .expect("service")
    }

    fn named(name: &str) -> ServiceRef {
        ServiceRef {
            namespace: "ns".to_owned(),
            name: name.to_owned(),
        }
    }

    /// A Service created while the watch was down arrives in a re-list; the datapath must
    /// hear of it once the store holds it, not before (it would program nothing).
    #[tokio::test]
    async fn a_service_first_seen_in_a_relist_reaches_the_view_after_the_store() {
        let (store, writer) = reflector::store();
        let view = ServiceView::new(store);
        view.slices_listed();
        let (tx, rx) =
            futures::channel::mpsc::unbounded::<Result<Event<Service>, watcher::Error>>();
        let zone = Arc::new(RwLock::new(Zone::new("cluster.local")));
        let feed = tokio::spawn(services(rx.reflect(writer), zone, view.clone()));
        for event in [
            Event::Init,
            Event::InitApply(service("old", 80)),
            Event::InitDone,
        ] {
            tx.unbounded_send(Ok(event)).expect("send");
        }
        assert!(view.take_changes().await.ready);
        // The watch broke; the re-list has a Service the first list had not.
        for event in [
            Event::Init,
            Event::InitApply(service("old", 80)),
            Event::InitApply(service("new", 81)),
        ] {
            tx.unbounded_send(Ok(event)).expect("send");
        }
        let early = tokio::time::timeout(Duration::from_millis(100), view.take_changes()).await;
        if let Ok(changes) = early {
            for service in &changes.services {
                assert!(
                    view.service(service).is_some(),
                    "{service:?} announced before the store has it"
                );
            }
        }
        tx.unbounded_send(Ok(Event::InitDone)).expect("send");
        let changes = view.take_changes().await;
        assert!(changes.services.contains(&named("new")), "{changes:?}");
        assert!(view.service(&named("new")).is_some());
        drop(tx);
        feed.await.expect("feed");
    }

    /// A Service gone from a re-list is announced as changed (and the store lacks it).
    #[tokio::test]
    async fn a_service_missing_from_a_relist_is_announced_gone() {
        let (store, writer) = reflector::store();
        let view = ServiceView::new(store);
        view.slices_listed();
        let first: Vec<Result<Event<Service>, watcher::Error>> = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(service("gone", 80))),
            Ok(Event::InitDone),
            Ok(Event::Init),
            Ok(Event::InitDone),
        ];
        let zone = Arc::new(RwLock::new(Zone::new("cluster.local")));
        services(stream::iter(first).reflect(writer), zone, view.clone()).await;
        let changes = view.take_changes().await;
        assert!(changes.services.contains(&named("gone")));
        assert!(view.service(&named("gone")).is_none());
    }
}
