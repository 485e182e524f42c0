//! Which objects Pod Security looks at and where their pod is: pods themselves and the pod
//! templates of workload objects (admission/admission.go `DefaultPodSpecExtractor`), which
//! subresource writes it skips, and which pod updates it does not re-check
//! (`isSignificantPodUpdate`).

use k8s_openapi::{
    api::core::v1::{Container, PodSpec},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Pod subresources whose writes cannot change the pod spec; every other pod subresource
/// (`ephemeralcontainers`, `resize`, …) is checked like the pod.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// A kind that is, or embeds, a pod spec. Writes to pods are enforced, warned and
/// audited; writes to the others only warned and audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PodSpecKind {
    /// core/v1 Pod: `spec`.
    Pod,
    /// core/v1 ReplicationController: `spec.template` (optional).
    ReplicationController,
    /// core/v1 PodTemplate: `template`.
    PodTemplate,
    /// apps/v1 ReplicaSet: `spec.template`.
    ReplicaSet,
    /// apps/v1 Deployment: `spec.template`.
    Deployment,
    /// apps/v1 StatefulSet: `spec.template`.
    StatefulSet,
    /// apps/v1 DaemonSet: `spec.template`.
    DaemonSet,
    /// batch/v1 Job: `spec.template`.
    Job,
    /// batch/v1 CronJob: `spec.jobTemplate.spec.template`.
    CronJob,
}

/// (kind, group, resource, kind name) for every [`PodSpecKind`].
const KINDS: &[(PodSpecKind, &str, &str, &str)] = &[
    (PodSpecKind::Pod, "", "pods", "Pod"),
    (
        PodSpecKind::ReplicationController,
        "",
        "replicationcontrollers",
        "ReplicationController",
    ),
    (PodSpecKind::PodTemplate, "", "podtemplates", "PodTemplate"),
    (PodSpecKind::ReplicaSet, "apps", "replicasets", "ReplicaSet"),
    (PodSpecKind::Deployment, "apps", "deployments", "Deployment"),
    (
        PodSpecKind::StatefulSet,
        "apps",
        "statefulsets",
        "StatefulSet",
    ),
    (PodSpecKind::DaemonSet, "apps", "daemonsets", "DaemonSet"),
    (PodSpecKind::Job, "batch", "jobs", "Job"),
    (PodSpecKind::CronJob, "batch", "cronjobs", "CronJob"),
];

impl PodSpecKind {
    /// The kind served as `resource` in API `group` ("" for core), if it holds a pod spec.
    pub fn from_group_resource(group: &str, resource: &str) -> Option<Self> {
        KINDS
            .iter()
            .find(|(_, g, r, _)| *g == group && *r == resource)
            .map(|(kind, ..)| *kind)
    }

    /// The kind named `kind` in API `group` ("" for core), if it holds a pod spec.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        KINDS
            .iter()
            .find(|(_, g, _, k)| *g == group && *k == kind)
            .map(|(kind, ..)| *kind)
    }

    /// True for pods, the only kind whose writes are enforced.
    pub fn is_pod(self) -> bool {
        self == Self::Pod
    }

    /// Whether a write to `subresource` ("" for the object itself) is checked: for pods,
    /// everything but exec, attach, binding, eviction, log, portforward, proxy and status;
    /// for the workload kinds, the object itself only.
    pub fn checks_subresource(self, subresource: &str) -> bool {
        match self {
            Self::Pod => !IGNORED_POD_SUBRESOURCES.contains(&subresource),
            _ => subresource.is_empty(),
        }
    }

    /// JSON pointer to the pod template (for a pod, to the pod itself).
    fn template_pointer(self) -> &'static str {
        match self {
            Self::Pod => "",
            Self::PodTemplate => "/template",
            Self::CronJob => "/spec/jobTemplate/spec/template",
            Self::ReplicationController
            | Self::ReplicaSet
            | Self::Deployment
            | Self::StatefulSet
            | Self::DaemonSet
            | Self::Job => "/spec/template",
        }
    }
}

/// The pod or template could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The pod's (or template's) metadata or spec is not what the API defines.
    #[error("failed to decode the pod {part} of a {kind:?}: {source}")]
    Decode {
        /// The kind read.
        kind: PodSpecKind,
        /// `metadata` or `spec`.
        part: &'static str,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// The pod metadata and spec Pod Security checks in `object` (JSON of kind `kind`): a pod's
/// own, or the workload's pod template. `None` when a workload has no template (kube
/// skips those). A pod without metadata or spec is checked as empty ones, as kube's zero
/// values. An error means the pod could not be read: kube refuses such a pod write
/// ("failed to decode object") and lets a workload write through.
pub fn pod_template_of(
    kind: PodSpecKind,
    object: &Value,
) -> Result<Option<(ObjectMeta, PodSpec)>, TemplateError> {
    let template = match object.pointer(kind.template_pointer()) {
        Some(Value::Null) | None if !kind.is_pod() => return Ok(None),
        Some(template) => template,
        None => &Value::Null,
    };
    let meta = part(kind, template, "metadata")?;
    let spec = part(kind, template, "spec")?;
    Ok(Some((meta, spec)))
}

/// A template's `metadata` or `spec`, the default when absent.
fn part<T: DeserializeOwned + Default>(
    kind: PodSpecKind,
    template: &Value,
    name: &'static str,
) -> Result<T, TemplateError> {
    match template.get(name) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => T::deserialize(value).map_err(|source| TemplateError::Decode {
            kind,
            part: name,
            source,
        }),
    }
}

/// Whether a pod update changes something Pod Security checks, as kube's
/// `isSignificantPodUpdate`: the number of containers or init containers, a container's or
/// init container's image, an added ephemeral container or an ephemeral container's image.
/// An update that changes none of these (labels, annotations, status, tolerations…) is
/// allowed without evaluation.
pub fn is_significant_pod_update(new: &PodSpec, old: &PodSpec) -> bool {
    if new.containers.len() != old.containers.len() {
        return true;
    }
    let new_init = new.init_containers.as_deref().unwrap_or_default();
    let old_init = old.init_containers.as_deref().unwrap_or_default();
    if new_init.len() != old_init.len() {
        return true;
    }
    let image_changed = |a: &Container, b: &Container| a.image != b.image;
    if new
        .containers
        .iter()
        .zip(&old.containers)
        .any(|(a, b)| image_changed(a, b))
        || new_init
            .iter()
            .zip(old_init)
            .any(|(a, b)| image_changed(a, b))
    {
        return true;
    }
    let old_ephemeral = old.ephemeral_containers.as_deref().unwrap_or_default();
    new.ephemeral_containers.iter().flatten().any(|c| {
        match old_ephemeral.iter().find(|o| o.name == c.name) {
            None => true,
            Some(o) => o.image != c.image,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(json: Value) -> PodSpec {
        serde_json::from_value(json).expect("test pod spec is valid")
    }

    fn privileged_template() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "securityContext": {"privileged": true}}]},
        })
    }

    #[test]
    fn kinds_are_known_by_group_and_resource_or_kind() {
        assert_eq!(
            PodSpecKind::from_group_resource("", "pods"),
            Some(PodSpecKind::Pod)
        );
        assert_eq!(
            PodSpecKind::from_group_resource("apps", "deployments"),
            Some(PodSpecKind::Deployment)
        );
        assert_eq!(PodSpecKind::from_group_resource("", "deployments"), None);
        assert_eq!(PodSpecKind::from_group_resource("", "services"), None);
        assert_eq!(
            PodSpecKind::from_group_kind("batch", "CronJob"),
            Some(PodSpecKind::CronJob)
        );
        assert_eq!(
            PodSpecKind::from_group_kind("example.com", "Deployment"),
            None
        );
        assert!(PodSpecKind::Pod.is_pod());
        assert!(!PodSpecKind::Job.is_pod());
    }

    #[test]
    fn subresources() {
        assert!(PodSpecKind::Pod.checks_subresource(""));
        assert!(PodSpecKind::Pod.checks_subresource("ephemeralcontainers"));
        assert!(PodSpecKind::Pod.checks_subresource("resize"));
        for ignored in IGNORED_POD_SUBRESOURCES {
            assert!(!PodSpecKind::Pod.checks_subresource(ignored), "{ignored}");
        }
        assert!(PodSpecKind::Deployment.checks_subresource(""));
        assert!(!PodSpecKind::Deployment.checks_subresource("scale"));
        assert!(!PodSpecKind::Job.checks_subresource("status"));
    }

    #[test]
    fn templates_are_found_in_each_kind() {
        let template = privileged_template();
        let objects = [
            (PodSpecKind::Pod, template.clone()),
            (PodSpecKind::PodTemplate, json!({"template": template})),
            (
                PodSpecKind::ReplicationController,
                json!({"spec": {"template": template}}),
            ),
            (
                PodSpecKind::ReplicaSet,
                json!({"spec": {"template": template}}),
            ),
            (
                PodSpecKind::Deployment,
                json!({"spec": {"template": template}}),
            ),
            (
                PodSpecKind::StatefulSet,
                json!({"spec": {"template": template}}),
            ),
            (
                PodSpecKind::DaemonSet,
                json!({"spec": {"template": template}}),
            ),
            (PodSpecKind::Job, json!({"spec": {"template": template}})),
            (
                PodSpecKind::CronJob,
                json!({"spec": {"jobTemplate": {"spec": {"template": template}}}}),
            ),
        ];
        for (kind, object) in objects {
            let (meta, spec) = pod_template_of(kind, &object)
                .expect("decodes")
                .unwrap_or_else(|| panic!("{kind:?} has a template"));
            assert_eq!(meta.labels.expect("labels")["app"], "web", "{kind:?}");
            assert_eq!(spec.containers[0].name, "c", "{kind:?}");
        }
    }

    #[test]
    fn missing_templates_and_pods() {
        assert!(
            pod_template_of(PodSpecKind::ReplicationController, &json!({"spec": {}}))
                .expect("decodes")
                .is_none()
        );
        assert!(
            pod_template_of(
                PodSpecKind::Deployment,
                &json!({"spec": {"template": null}})
            )
            .expect("decodes")
            .is_none()
        );
        // A pod is always checked, as an empty one if need be.
        let (meta, spec) = pod_template_of(PodSpecKind::Pod, &json!({"kind": "Pod"}))
            .expect("decodes")
            .expect("a pod is its own template");
        assert_eq!(meta, ObjectMeta::default());
        assert!(spec.containers.is_empty());
    }

    #[test]
    fn undecodable_specs_are_errors() {
        let bad = json!({"spec": {"containers": "nope"}});
        let error = pod_template_of(PodSpecKind::Pod, &bad).expect_err("containers is a list");
        assert!(
            error
                .to_string()
                .starts_with("failed to decode the pod spec of a Pod: ")
        );
    }

    #[test]
    fn significant_pod_updates() {
        let old = spec(json!({
            "containers": [{"name": "a", "image": "nginx:1"}],
            "initContainers": [{"name": "i", "image": "busybox"}],
        }));
        // Changing something other than images is not significant, even security settings.
        let mut same = old.clone();
        same.active_deadline_seconds = Some(5);
        same.containers[0].security_context = Some(Default::default());
        assert!(!is_significant_pod_update(&same, &old));

        let mut image = old.clone();
        image.containers[0].image = Some("nginx:2".into());
        assert!(is_significant_pod_update(&image, &old));

        let mut init_image = old.clone();
        if let Some(init) = init_image.init_containers.as_mut() {
            init[0].image = Some("alpine".into());
        }
        assert!(is_significant_pod_update(&init_image, &old));

        let mut more = old.clone();
        more.containers.push(Container {
            name: "b".into(),
            ..Default::default()
        });
        assert!(is_significant_pod_update(&more, &old));

        let mut no_init = old.clone();
        no_init.init_containers = None;
        assert!(is_significant_pod_update(&no_init, &old));

        let with_debug = spec(json!({
            "containers": [{"name": "a", "image": "nginx:1"}],
            "initContainers": [{"name": "i", "image": "busybox"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
        }));
        assert!(is_significant_pod_update(&with_debug, &old));
        assert!(!is_significant_pod_update(&with_debug, &with_debug.clone()));
        let mut debug_image = with_debug.clone();
        if let Some(ephemeral) = debug_image.ephemeral_containers.as_mut() {
            ephemeral[0].image = Some("alpine".into());
        }
        assert!(is_significant_pod_update(&debug_image, &with_debug));
    }
}
