//! Namespaces, nodes, configuration and the other kinds with few rules.

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{
        ConfigMap, Event, Namespace, NamespaceSpec, NamespaceStatus, Node, PersistentVolume,
        PersistentVolumeClaim, Secret, ServiceAccount,
    },
    events::v1::Event as EventsV1Event,
    node::v1::RuntimeClass,
};

use crate::{
    model::validation::{self, ErrorList, FieldError},
    resources::strategy::Kind,
};

/// Keys of ConfigMaps and Secrets: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn config_key(key: &str, field: &str, errors: &mut ErrorList) {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && key != "."
        && key != ".."
        && !key.starts_with("..");
    if !ok {
        errors.push(FieldError::invalid(
            field,
            key,
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or \
             'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ));
    }
}

impl Kind for Namespace {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(NamespaceSpec::default);
        spec.finalizers
            .get_or_insert_with(|| vec!["kubernetes".to_owned()]);
        self.status
            .get_or_insert_with(NamespaceStatus::default)
            .phase
            .get_or_insert_with(|| "Active".to_owned());
        let name = self.metadata.name.clone().unwrap_or_default();
        self.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/metadata.name".to_owned(), name);
    }

    fn hold_deletion(&mut self) -> bool {
        let finalizers = self
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            self.status
                .get_or_insert_with(NamespaceStatus::default)
                .phase = Some("Terminating".to_owned());
        }
        finalizers
    }
}

impl Kind for ConfigMap {
    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        let mut size = 0;
        for (key, value) in self.data.iter().flatten() {
            config_key(key, &format!("data[{key}]"), errors);
            size += value.len();
        }
        for (key, value) in self.binary_data.iter().flatten() {
            config_key(key, &format!("binaryData[{key}]"), errors);
            size += value.0.len();
        }
        if size > 1024 * 1024 {
            errors.push(FieldError::too_long("", 1024 * 1024));
        }
    }
}

impl Kind for Secret {
    fn default_fields(&mut self) {
        self.type_.get_or_insert_with(|| "Opaque".to_owned());
        // stringData is write-only: merged into data, as kube-apiserver does.
        if let Some(strings) = self.string_data.take() {
            let data = self.data.get_or_insert_with(Default::default);
            for (key, value) in strings {
                data.insert(key, k8s_openapi::ByteString(value.into_bytes()));
            }
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        for key in self
            .data
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .chain(self.string_data.iter().flatten().map(|(k, _)| k))
        {
            config_key(key, &format!("data[{key}]"), errors);
        }
    }
}

impl Kind for Node {
    /// As kube's ValidateNodeUpdate: a node's pod CIDRs, once set, never change (every
    /// node routes a CIDR to its owner; a node must not take another's).
    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let (Some(old), Some(spec)) = (old.and_then(|o| o.spec.as_ref()), self.spec.as_ref())
        else {
            return;
        };
        if let Some(before) = old.pod_cidr.as_deref().filter(|c| !c.is_empty())
            && spec.pod_cidr.as_deref() != Some(before)
        {
            errors.push(FieldError::forbidden(
                "spec.podCIDR",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        if let Some(before) = old.pod_cidrs.as_ref().filter(|c| !c.is_empty())
            && spec.pod_cidrs.as_ref() != Some(before)
        {
            errors.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may only change podCIDRs from empty to valid",
            ));
        }
    }
}
impl Kind for ServiceAccount {}
impl Kind for Event {}
impl Kind for EventsV1Event {}
impl Kind for Lease {}
/// PersistentVolume: kube's defaults (reclaim policy Retain, volume mode Filesystem, phase
/// Pending until the PV controller looks at it).
impl Kind for PersistentVolume {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.persistent_volume_reclaim_policy
            .get_or_insert_with(|| "Retain".to_owned());
        spec.volume_mode
            .get_or_insert_with(|| "Filesystem".to_owned());
        self.status
            .get_or_insert_with(Default::default)
            .phase
            .get_or_insert_with(|| "Pending".to_owned());
    }
}

impl Kind for PersistentVolumeClaim {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.volume_mode
            .get_or_insert_with(|| "Filesystem".to_owned());
        self.status
            .get_or_insert_with(Default::default)
            .phase
            .get_or_insert_with(|| "Pending".to_owned());
    }
}

/// RuntimeClass (node.k8s.io/v1): the handler names an OCI runtime the nodes know; it is an
/// RFC 1123 label and never changes (kube's ValidateRuntimeClass and its update rule).
impl Kind for RuntimeClass {
    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        if self.handler.is_empty() {
            errors.push(FieldError::required("handler", ""));
        } else if let Some(why) = validation::dns1123_label(&self.handler) {
            errors.push(FieldError::invalid("handler", &self.handler, why));
        }
        if let Some(old) = old
            && old.handler != self.handler
        {
            errors.push(FieldError::invalid(
                "handler",
                &self.handler,
                "field is immutable",
            ));
        }
    }
}
