//! Recording core/v1 Events about objects, as controllers, the scheduler and the kubelet
//! report what they decided (`kubectl describe` shows them).

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::{Api, Client, api::PostParams};
use serde_json::json;

/// Who reports (`default-scheduler`, `replicaset-controller`, `kubelet`…).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    host: Option<String>,
}

impl Recorder {
    /// A recorder for `component`.
    pub fn new(client: Client, component: &'static str) -> Self {
        Self {
            client,
            component,
            host: None,
        }
    }

    /// A recorder for `component` on node `host` (the kubelet's events name their node).
    pub fn on_host(client: Client, component: &'static str, host: &str) -> Self {
        Self {
            client,
            component,
            host: Some(host.to_owned()),
        }
    }

    /// Record an event about `object` (`Normal` or `Warning`). Failures are logged, never
    /// returned: an event is a report, not part of the work.
    pub async fn record(&self, object: &ObjectReference, kind: &str, reason: &str, message: &str) {
        let namespace = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let now = jiff::Timestamp::now();
        let stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let micro = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
        let name = format!(
            "{}.{:x}",
            object.name.clone().unwrap_or_default(),
            now.as_nanosecond().unsigned_abs()
        );
        let event: Result<Event, _> = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": object,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": micro,
            "action": reason,
            "count": 1,
        }));
        let Ok(event) = event else { return };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = events.create(&PostParams::default(), &event).await {
            tracing::debug!(reason, error = %e, "could not record an event");
        }
    }
}

/// A reference to an object for `involvedObject`.
pub fn reference(
    api_version: &str,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    }
}
