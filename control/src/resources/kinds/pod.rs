//! Pods: kube's pod defaults (incl. the ServiceAccount and DefaultTolerationSeconds
//! admission defaults) and pod validation, shared with every pod template.

mod resources;
mod security;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus, PodTemplateSpec};

use super::{port_name, port_number};
use crate::{
    model::validation::{self, ErrorList, FieldError},
    resources::strategy::Kind,
};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

/// Defaults of a pod spec (also applied inside every workload's pod template).
pub(crate) fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy
        .get_or_insert_with(|| "Always".to_owned());
    spec.dns_policy
        .get_or_insert_with(|| "ClusterFirst".to_owned());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".to_owned());
    spec.security_context.get_or_insert_with(Default::default);
    let host_network = spec.host_network.unwrap_or(false);
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(container, host_network);
    }
}

fn default_container(container: &mut Container, host_network: bool) {
    container
        .termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".to_owned());
    container
        .termination_message_policy
        .get_or_insert_with(|| "File".to_owned());
    if container.image_pull_policy.is_none() {
        let image = container.image.as_deref().unwrap_or_default();
        let name = image.rsplit('/').next().unwrap_or(image);
        let tag = if name.contains('@') {
            Some("digest")
        } else {
            name.split_once(':').map(|(_, t)| t)
        };
        let policy = if matches!(tag, None | Some("latest")) {
            "Always"
        } else {
            "IfNotPresent"
        };
        container.image_pull_policy = Some(policy.to_owned());
    }
    for port in container.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".to_owned());
        if host_network && port.host_port.is_none() {
            port.host_port = Some(port.container_port);
        }
    }
    let resources = container.resources.get_or_insert_with(Default::default);
    // Limits without requests: requests default to the limits.
    if let Some(limits) = resources.limits.clone() {
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        for (name, quantity) in limits {
            requests.entry(name).or_insert(quantity);
        }
    }
}

/// kube's QoS class from the containers' requests and limits.
fn qos_class(spec: &PodSpec) -> &'static str {
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let resources = c.resources.as_ref();
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        for name in ["cpu", "memory"] {
            let request = requests.and_then(|r| r.get(name));
            let limit = limits.and_then(|l| l.get(name));
            any |= request.is_some() || limit.is_some();
            if limit.is_none() || request.is_some_and(|r| Some(r) != limit) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Validate a pod spec at `path` (`spec`, `spec.template.spec`).
pub(crate) fn validate_pod_spec(spec: &PodSpec, path: &str, errors: &mut ErrorList) {
    if spec.containers.is_empty() {
        errors.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = BTreeSet::new();
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let groups = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    let host_users = security::host_users(spec);
    for (group, containers) in groups {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let container_path = format!("{path}.{group}[{i}]");
            validate_container(c, &container_path, &volumes, &mut names, errors);
            security::container_context(
                c.security_context.as_ref(),
                host_users,
                &container_path,
                errors,
            );
        }
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        security::container_context(
            c.security_context.as_ref(),
            host_users,
            &format!("{path}.ephemeralContainers[{i}]"),
            errors,
        );
    }
    let mut volume_names = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        volumes::volume_source(v, &format!("{path}.volumes[{i}]"), errors);
        let field = format!("{path}.volumes[{i}].name");
        if let Some(why) = validation::dns1123_label(&v.name) {
            errors.push(FieldError::invalid(&field, &v.name, why));
        } else if !volume_names.insert(v.name.as_str()) {
            errors.push(FieldError::duplicate(&field, &v.name));
        }
    }
    if let Some(policy) = &spec.restart_policy
        && !RESTART_POLICIES.contains(&policy.as_str())
    {
        errors.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            RESTART_POLICIES,
        ));
    }
    if let Some(policy) = &spec.dns_policy
        && !DNS_POLICIES.contains(&policy.as_str())
    {
        errors.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            policy,
            DNS_POLICIES,
        ));
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&seconds)
    {
        errors.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            seconds,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(overhead) = &spec.overhead {
        // kube validates the overhead as the limits of a resource requirement.
        resources::requirements(None, Some(overhead), &format!("{path}.overhead"), errors);
    }
    if let Some(selector) = &spec.node_selector {
        validation::labels(selector, &format!("{path}.nodeSelector"), errors);
    }
    if let Some(hostname) = &spec.hostname
        && let Some(why) = validation::dns1123_label(hostname)
    {
        errors.push(FieldError::invalid(
            format!("{path}.hostname"),
            hostname,
            why,
        ));
    }
}

fn validate_container(
    c: &Container,
    path: &str,
    volumes: &BTreeSet<&str>,
    names: &mut BTreeSet<String>,
    errors: &mut ErrorList,
) {
    if c.name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    } else if let Some(why) = validation::dns1123_label(&c.name) {
        errors.push(FieldError::invalid(format!("{path}.name"), &c.name, why));
    } else if !names.insert(c.name.clone()) {
        errors.push(FieldError::duplicate(format!("{path}.name"), &c.name));
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        errors.push(FieldError::required(format!("{path}.image"), ""));
    }
    if let Some(policy) = &c.image_pull_policy
        && !PULL_POLICIES.contains(&policy.as_str())
    {
        errors.push(FieldError::not_supported(
            format!("{path}.imagePullPolicy"),
            policy,
            PULL_POLICIES,
        ));
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let field = format!("{path}.ports[{i}]");
        port_number(p.container_port, &format!("{field}.containerPort"), errors);
        if let Some(host_port) = p.host_port.filter(|p| *p != 0) {
            port_number(host_port, &format!("{field}.hostPort"), errors);
        }
        if let Some(name) = &p.name {
            port_name(name, &format!("{field}.name"), errors);
            if !port_names.insert(name.clone()) {
                errors.push(FieldError::duplicate(format!("{field}.name"), name));
            }
        }
        if let Some(protocol) = &p.protocol
            && !PROTOCOLS.contains(&protocol.as_str())
        {
            errors.push(FieldError::not_supported(
                format!("{field}.protocol"),
                protocol,
                PROTOCOLS,
            ));
        }
    }
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        if !volumes.contains(m.name.as_str()) {
            errors.push(FieldError {
                field: format!("{path}.volumeMounts[{i}].name"),
                kind: validation::ErrorKind::NotSupported(m.name.clone(), Vec::new()),
                detail: String::new(),
            });
        }
        if m.mount_path.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.volumeMounts[{i}].mountPath"),
                "",
            ));
        }
    }
    volumes::mount_paths(c.volume_mounts.as_deref().unwrap_or_default(), path, errors);
    if let Some(r) = &c.resources {
        resources::requirements(
            r.requests.as_ref(),
            r.limits.as_ref(),
            &format!("{path}.resources"),
            errors,
        );
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.name.is_empty() || e.name.contains('=') {
            errors.push(FieldError::invalid(
                format!("{path}.env[{i}].name"),
                &e.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
}

/// Validate a pod template (workloads): its labels and its spec.
pub(crate) fn validate_template(template: &PodTemplateSpec, path: &str, errors: &mut ErrorList) {
    if let Some(labels) = template.metadata.as_ref().and_then(|m| m.labels.as_ref()) {
        validation::labels(labels, &format!("{path}.metadata.labels"), errors);
    }
    match &template.spec {
        Some(spec) => validate_pod_spec(spec, &format!("{path}.spec"), errors),
        None => errors.push(FieldError::required(format!("{path}.spec"), "")),
    }
}

/// Apply pod spec defaults inside a template.
pub(crate) fn default_template(template: &mut PodTemplateSpec) {
    if let Some(spec) = template.spec.as_mut() {
        default_pod_spec(spec);
    }
}

/// Fields of a pod spec an update may change; everything else is immutable.
fn mutable_view(spec: &PodSpec) -> PodSpec {
    let mut view = spec.clone();
    for c in view
        .containers
        .iter_mut()
        .chain(view.init_containers.iter_mut().flatten())
    {
        c.image = None;
    }
    view.active_deadline_seconds = None;
    view.tolerations = None;
    view.termination_grace_period_seconds = None;
    view
}

impl Kind for Pod {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        default_pod_spec(spec);
        spec.enable_service_links.get_or_insert(true);
        spec.priority.get_or_insert(0);
        // The ServiceAccount (`default` unless named) is settled by ServiceAccount admission,
        // which leaves mirror pods without one.
        if spec.service_account.is_none() {
            spec.service_account = spec.service_account_name.clone();
        }
        let qos = qos_class(spec).to_owned();
        let status = self.status.get_or_insert_with(PodStatus::default);
        status.phase.get_or_insert_with(|| "Pending".to_owned());
        status.qos_class.get_or_insert(qos);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        match &self.spec {
            Some(spec) => validate_pod_spec(spec, "spec", errors),
            None => errors.push(FieldError::required("spec", "")),
        }
        if let (Some(old_spec), Some(new_spec)) =
            (old.and_then(|o| o.spec.as_ref()), self.spec.as_ref())
            && mutable_view(old_spec) != mutable_view(new_spec)
        {
            errors.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,\
                 `spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),\
                 `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::resources::strategy::{Strategy, Typed};

    use super::*;

    #[test]
    fn pods_get_kube_defaults() {
        let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
                     "resources": {"limits": {"memory": "64Mi"}}}]}});
        let p = Typed::<Pod>::new().prepare(&body, None).expect("prepare");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let spec = &p.object["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            spec["containers"][0]["resources"]["requests"]["memory"],
            "64Mi"
        );
        assert_eq!(p.object["status"]["phase"], "Pending");
        assert_eq!(p.object["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn invalid_pods_name_the_field() {
        let body = json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Sometimes", "containers": [
            {"name": "Bad_Name", "image": "x", "ports": [{"containerPort": 70000}]},
            {"name": "ok"}, {"name": "ok", "image": "y"}]}});
        let p = Typed::<Pod>::new().prepare(&body, None).expect("prepare");
        let fields: Vec<&str> = p.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.containers[0].name",
                "spec.containers[0].ports[0].containerPort",
                "spec.containers[1].image",
                "spec.containers[2].name",
                "spec.restartPolicy"
            ]
        );
    }

    #[test]
    fn numbers_are_range_checked_not_truncated() {
        let errors = |deadline: i64| {
            let body = json!({"metadata": {"name": "p"}, "spec": {"activeDeadlineSeconds": deadline,
                "containers": [{"name": "c", "image": "x"}]}});
            Typed::<Pod>::new()
                .prepare(&body, None)
                .expect("prepare")
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        // 2^32 + 5 used to be cast to 5 and accepted; 0 is refused by kube too.
        for refused in [0, -1, (1 << 32) + 5, i64::MAX] {
            assert_eq!(
                errors(refused),
                [format!(
                    "spec.activeDeadlineSeconds: Invalid value: {refused}: must be between 1 and 2147483647, inclusive"
                )]
            );
        }
        assert!(errors(600).is_empty());
    }

    #[test]
    fn a_huge_but_valid_request_is_accepted_as_kube_does() {
        let body = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "x", "resources": {"requests": {"cpu": "1e30"}}}],
            "overhead": {"cpu": "-1"}}});
        let p = Typed::<Pod>::new().prepare(&body, None).expect("prepare");
        let fields: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            fields,
            ["spec.overhead.limits[cpu]: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            p.object["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1e30"
        );
    }

    #[test]
    fn pod_spec_is_immutable_except_images() {
        let old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}]}});
        let old = Typed::<Pod>::new().prepare(&old, None).expect("old").object;
        let mut image = old.clone();
        image["spec"]["containers"][0]["image"] = json!("b");
        assert!(
            Typed::<Pod>::new()
                .prepare(&image, Some(&old))
                .expect("p")
                .errors
                .is_empty()
        );
        let mut restart = old.clone();
        restart["spec"]["restartPolicy"] = json!("Never");
        let errors = Typed::<Pod>::new()
            .prepare(&restart, Some(&old))
            .expect("p")
            .errors;
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("spec: Forbidden: pod updates may not change")
        );
    }
}
