//! Container security contexts as kube-apiserver validates them (`ValidateSecurityContext`
//! in pkg/apis/core/validation): `procMount` must be `Default` or `Unmasked`, and
//! `Unmasked` only in a pod with its own user namespace (`spec.hostUsers: false`); an
//! unmasked /proc in the host's user namespace would give the container a writable
//! /proc/sys as the host's root. Field paths and messages are kube's.

use k8s_openapi::api::core::v1::{PodSpec, SecurityContext};

use crate::model::validation::{ErrorList, FieldError};

/// kube's `ProcMountType` values.
const PROC_MOUNT_TYPES: &[&str] = &["Default", "Unmasked"];

/// Whether the pod runs in the host's user namespace (kube's default: `hostUsers` absent
/// or true).
pub(crate) fn host_users(spec: &PodSpec) -> bool {
    spec.host_users != Some(false)
}

/// Validate the container's `securityContext` at `path` (`spec.containers[0]`).
pub(crate) fn container_context(
    context: Option<&SecurityContext>,
    host_users: bool,
    path: &str,
    errors: &mut ErrorList,
) {
    let Some(proc_mount) = context.and_then(|c| c.proc_mount.as_deref()) else {
        return;
    };
    let field = format!("{path}.securityContext.procMount");
    if !PROC_MOUNT_TYPES.contains(&proc_mount) {
        errors.push(FieldError::not_supported(
            &field,
            proc_mount,
            PROC_MOUNT_TYPES,
        ));
    }
    if host_users && proc_mount == "Unmasked" {
        errors.push(FieldError::invalid(
            &field,
            proc_mount,
            "`hostUsers` must be false to use `Unmasked`",
        ));
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use crate::resources::strategy::{Strategy, Typed};

    fn errors(spec: serde_json::Value) -> Vec<String> {
        let body = json!({"metadata": {"name": "p"}, "spec": spec});
        Typed::<Pod>::new()
            .prepare(&body, None)
            .expect("prepare")
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn unmasked_proc_needs_the_pods_own_user_namespace() {
        let unmasked =
            json!({"name": "c", "image": "x", "securityContext": {"procMount": "Unmasked"}});
        let refused = [
            "spec.containers[0].securityContext.procMount: Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`",
        ];
        assert_eq!(errors(json!({"containers": [unmasked]})), refused);
        assert_eq!(
            errors(json!({"hostUsers": true, "containers": [unmasked]})),
            refused
        );
        assert!(errors(json!({"hostUsers": false, "containers": [unmasked]})).is_empty());
        assert_eq!(
            errors(json!({
                "containers": [{"name": "c", "image": "x"}],
                "initContainers": [{"name": "i", "image": "x", "securityContext": {"procMount": "Unmasked"}}],
            })),
            [
                "spec.initContainers[0].securityContext.procMount: Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`"
            ]
        );
        assert!(
            errors(json!({"containers": [
                {"name": "c", "image": "x", "securityContext": {"procMount": "Default"}}
            ]}))
            .is_empty()
        );
    }

    #[test]
    fn an_unknown_proc_mount_type_is_unsupported() {
        assert_eq!(
            errors(json!({"hostUsers": false, "containers": [
                {"name": "c", "image": "x", "securityContext": {"procMount": "Host"}}
            ]})),
            [
                "spec.containers[0].securityContext.procMount: Unsupported value: \"Host\": supported values: \"Default\", \"Unmasked\""
            ]
        );
    }
}
