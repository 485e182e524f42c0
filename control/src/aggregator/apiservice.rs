//! The view of one APIService the aggregator routes by: which group-version, whether a
//! Service serves it (else it is local), how to reach and trust that Service, and whether
//! the availability controller last found it available.

use base64::Engine as _;
use serde_json::Value;

/// The Service an APIService proxies to, and how its certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Service port (443 unless set).
    pub port: i32,
    /// PEM bundle the serving certificate must chain to (empty: system roots).
    pub ca_bundle: Vec<u8>,
    /// `insecureSkipTLSVerify`: no certificate check at all.
    pub insecure: bool,
}

impl Backend {
    /// The DNS name the serving certificate is checked for (`<service>.<namespace>.svc`).
    pub fn server_name(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }
}

/// One registered group-version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServiceView {
    /// `metadata.name` (`v1beta1.metrics.k8s.io`).
    pub name: String,
    /// API group ("" for the core group).
    pub group: String,
    /// Version.
    pub version: String,
    /// Orders groups in discovery (higher first).
    pub group_priority: i32,
    /// Orders the versions of a group (higher first).
    pub version_priority: i32,
    /// Where requests go; `None` for a local APIService.
    pub backend: Option<Backend>,
    /// The Available condition is True.
    pub available: bool,
}

impl ApiServiceView {
    /// Read an APIService object; `None` when it lacks a spec.
    pub fn from_object(object: &Value) -> Option<Self> {
        let spec = object.get("spec")?;
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let number = |key: &str| {
            spec.get(key)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0)
        };
        let backend = spec
            .get("service")
            .filter(|s| s.is_object())
            .map(|service| Backend {
                namespace: text(service, "namespace").unwrap_or_default(),
                name: text(service, "name").unwrap_or_default(),
                port: service
                    .get("port")
                    .and_then(Value::as_i64)
                    .and_then(|p| i32::try_from(p).ok())
                    .unwrap_or(443),
                ca_bundle: text(spec, "caBundle")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .unwrap_or_default(),
                insecure: spec
                    .get("insecureSkipTLSVerify")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        let available = object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Available")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            });
        Some(Self {
            name: text(object.get("metadata")?, "name").unwrap_or_default(),
            group: text(spec, "group").unwrap_or_default(),
            version: text(spec, "version").unwrap_or_default(),
            group_priority: number("groupPriorityMinimum"),
            version_priority: number("versionPriority"),
            backend,
            available,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn remote_and_local_apiservices_are_read() {
        let remote = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                     "versionPriority": 100, "caBundle": "UEVN",
                     "service": {"name": "adapter", "namespace": "monitoring"}},
            "status": {"conditions": [{"type": "Available", "status": "True"}]}});
        let view = ApiServiceView::from_object(&remote).expect("a view");
        let backend = view.backend.clone().expect("a backend");
        assert_eq!(
            (backend.port, backend.ca_bundle.as_slice(), view.available),
            (443, b"PEM".as_slice(), true)
        );
        assert_eq!(backend.server_name(), "adapter.monitoring.svc");
        let local = json!({"metadata": {"name": "v1.apps"},
            "spec": {"group": "apps", "version": "v1", "groupPriorityMinimum": 17800,
                     "versionPriority": 15}});
        let view = ApiServiceView::from_object(&local).expect("a view");
        assert!(view.backend.is_none() && !view.available);
    }
}
