//! storage.k8s.io/v1: StorageClass, CSIDriver, CSINode and VolumeAttachment, with kube's
//! defaults and validation (a class's provisioner and parameters are immutable).

use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass, VolumeAttachment};

use super::immutable;
use crate::{
    model::validation::{self, ErrorList, FieldError},
    resources::strategy::Kind,
};

const RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];

impl Kind for StorageClass {
    fn default_fields(&mut self) {
        self.reclaim_policy
            .get_or_insert_with(|| "Delete".to_owned());
        self.volume_binding_mode
            .get_or_insert_with(|| "Immediate".to_owned());
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        if self.provisioner.is_empty() {
            errors.push(FieldError::required("provisioner", ""));
        } else if let Some(why) = validation::qualified_name(&self.provisioner.to_lowercase()) {
            errors.push(FieldError::invalid("provisioner", &self.provisioner, why));
        }
        if let Some(policy) = &self.reclaim_policy
            && !RECLAIM_POLICIES.contains(&policy.as_str())
        {
            errors.push(FieldError::not_supported(
                "reclaimPolicy",
                policy,
                RECLAIM_POLICIES,
            ));
        }
        if let Some(mode) = &self.volume_binding_mode
            && !BINDING_MODES.contains(&mode.as_str())
        {
            errors.push(FieldError::not_supported(
                "volumeBindingMode",
                mode,
                BINDING_MODES,
            ));
        }
        if let Some(old) = old {
            immutable(&self.provisioner, &old.provisioner, "provisioner", errors);
            immutable(&self.parameters, &old.parameters, "parameters", errors);
            immutable(
                &self.reclaim_policy,
                &old.reclaim_policy,
                "reclaimPolicy",
                errors,
            );
            immutable(
                &self.volume_binding_mode,
                &old.volume_binding_mode,
                "volumeBindingMode",
                errors,
            );
        }
    }
}

impl Kind for CSIDriver {
    fn default_fields(&mut self) {
        let spec = &mut self.spec;
        spec.attach_required.get_or_insert(true);
        spec.pod_info_on_mount.get_or_insert(false);
        spec.requires_republish.get_or_insert(false);
        spec.storage_capacity.get_or_insert(false);
        spec.se_linux_mount.get_or_insert(false);
        spec.fs_group_policy
            .get_or_insert_with(|| "ReadWriteOnceWithFSType".to_owned());
        spec.volume_lifecycle_modes
            .get_or_insert_with(|| vec!["Persistent".to_owned()]);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        if let Some(old) = old {
            immutable(
                &self.spec.attach_required,
                &old.spec.attach_required,
                "spec.attachRequired",
                errors,
            );
            immutable(
                &self.spec.pod_info_on_mount,
                &old.spec.pod_info_on_mount,
                "spec.podInfoOnMount",
                errors,
            );
        }
    }
}

impl Kind for CSINode {}

impl Kind for VolumeAttachment {
    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        if self.spec.attacher.is_empty() {
            errors.push(FieldError::required("spec.attacher", ""));
        }
        if self.spec.node_name.is_empty() {
            errors.push(FieldError::required("spec.nodeName", ""));
        }
        let source = &self.spec.source;
        if source.persistent_volume_name.is_some() == source.inline_volume_spec.is_some() {
            errors.push(FieldError::invalid(
                "spec.source",
                "",
                "must specify exactly one of persistentVolumeName and inlineVolumeSpec",
            ));
        }
        if let Some(old) = old {
            immutable(&self.spec, &old.spec, "spec", errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_class_gets_kube_defaults_and_keeps_its_provisioner() {
        let mut class: StorageClass = serde_json::from_value(
            json!({"metadata": {"name": "fast"}, "provisioner": "skiff.io/local-path"}),
        )
        .expect("a StorageClass");
        class.default_fields();
        assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(class.volume_binding_mode.as_deref(), Some("Immediate"));
        let mut errors = ErrorList::new();
        class.validate(None, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let mut changed = class.clone();
        changed.provisioner = "other.io/x".to_owned();
        changed.validate(Some(&class), &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "provisioner");
    }
}
