//! Baseline checks on what a pod shares with its host: namespaces, hostPath volumes, host
//! ports, Windows host processes (check_hostNamespaces.go, check_hostPathVolumes.go,
//! check_hostPorts.go, check_windowsHostProcess.go).

use std::collections::BTreeSet;

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::{CheckResult, containers, named, pluralize};

/// `hostNamespaces`: hostNetwork, hostPID and hostIPC must not be true.
pub(super) fn host_namespaces_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let shared: Vec<&str> = [
        (spec.host_network, "hostNetwork=true"),
        (spec.host_pid, "hostPID=true"),
        (spec.host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(set, _)| *set == Some(true))
    .map(|(_, what)| what)
    .collect();
    if shared.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid("host namespaces", shared.join(", "))
}

/// `hostPathVolumes`: no hostPath volumes.
pub(super) fn host_path_volumes_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let host_volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if host_volumes.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid(
        "hostPath volumes",
        named("volume", "volumes", &host_volumes),
    )
}

/// `hostPorts`: no container port with a hostPort.
pub(super) fn host_ports_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let mut bad_containers = Vec::new();
    // kube sorts the ports as strings.
    let mut host_ports = BTreeSet::new();
    for container in containers(spec) {
        let mut valid = true;
        for port in container.ports {
            let host_port = port.host_port.unwrap_or(0);
            if host_port != 0 {
                valid = false;
                host_ports.insert(host_port.to_string());
            }
        }
        if !valid {
            bad_containers.push(container.name);
        }
    }
    if bad_containers.is_empty() {
        return CheckResult::allow();
    }
    let ports: Vec<String> = host_ports.into_iter().collect();
    CheckResult::forbid(
        "hostPort",
        format!(
            "{} {} {} {}",
            named("container", "containers", &bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", "),
        ),
    )
}

/// `windowsHostProcess`: neither the pod nor a container sets windowsOptions.hostProcess.
pub(super) fn windows_host_process_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let bad_containers: Vec<&str> = containers(spec)
        .filter(|c| {
            c.security_context
                .and_then(|sc| sc.windows_options.as_ref())
                .and_then(|w| w.host_process)
                == Some(true)
        })
        .map(|c| c.name)
        .collect();
    let pod_forbidden = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true);
    let mut setters = Vec::new();
    if pod_forbidden {
        setters.push("pod".to_owned());
    }
    if !bad_containers.is_empty() {
        setters.push(named("container", "containers", &bad_containers));
    }
    if setters.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{forbidden, spec};
    use super::*;
    use serde_json::json;

    fn meta() -> ObjectMeta {
        ObjectMeta::default()
    }

    #[test]
    fn host_namespaces() {
        assert!(
            host_namespaces_1_0(
                &meta(),
                &spec(json!({"containers": [], "hostNetwork": false}))
            )
            .allowed
        );
        assert_eq!(
            forbidden(host_namespaces_1_0(
                &meta(),
                &spec(json!({"containers": [], "hostNetwork": true}))
            )),
            ("host namespaces".into(), "hostNetwork=true".into())
        );
        assert_eq!(
            forbidden(host_namespaces_1_0(
                &meta(),
                &spec(
                    json!({"containers": [], "hostNetwork": true, "hostPID": true, "hostIPC": true})
                )
            ))
            .1,
            "hostNetwork=true, hostPID=true, hostIPC=true"
        );
    }

    #[test]
    fn host_path_volumes() {
        let ok = spec(json!({"containers": [], "volumes": [{"name": "e", "emptyDir": {}}]}));
        assert!(host_path_volumes_1_0(&meta(), &ok).allowed);
        let one =
            spec(json!({"containers": [], "volumes": [{"name": "x", "hostPath": {"path": "/"}}]}));
        assert_eq!(
            forbidden(host_path_volumes_1_0(&meta(), &one)),
            ("hostPath volumes".into(), "volume \"x\"".into())
        );
        let two = spec(json!({"containers": [], "volumes": [
            {"name": "a", "hostPath": {"path": "/a"}},
            {"name": "e", "emptyDir": {}},
            {"name": "b", "hostPath": {"path": "/b"}},
        ]}));
        assert_eq!(
            forbidden(host_path_volumes_1_0(&meta(), &two)).1,
            "volumes \"a\", \"b\""
        );
    }

    #[test]
    fn host_ports() {
        let ok = spec(
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 0}]}]}),
        );
        assert!(host_ports_1_0(&meta(), &ok).allowed);
        let one = spec(
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        assert_eq!(
            forbidden(host_ports_1_0(&meta(), &one)),
            (
                "hostPort".into(),
                "container \"a\" uses hostPort 8080".into()
            )
        );
        // Upstream's case: ports sorted as strings, containers in visiting order.
        let many = spec(json!({
            "containers": [
                {"name": "a", "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 2, "hostPort": 20}]},
                {"name": "b", "ports": [{"containerPort": 3, "hostPort": 30}]},
            ],
            "initContainers": [{"name": "c", "ports": [{"containerPort": 4, "hostPort": 100}]}],
        }));
        assert_eq!(
            forbidden(host_ports_1_0(&meta(), &many)).1,
            "containers \"c\", \"a\", \"b\" use hostPorts 10, 100, 20, 30"
        );
    }

    #[test]
    fn windows_host_process() {
        let ok = spec(
            json!({"containers": [{"name": "a", "securityContext": {"windowsOptions": {"hostProcess": false}}}]}),
        );
        assert!(windows_host_process_1_0(&meta(), &ok).allowed);
        let both = spec(json!({
            "securityContext": {"windowsOptions": {"hostProcess": true}},
            "containers": [
                {"name": "a", "securityContext": {"windowsOptions": {"hostProcess": true}}},
                {"name": "b", "securityContext": {"windowsOptions": {"hostProcess": true}}},
            ],
        }));
        assert_eq!(
            forbidden(windows_host_process_1_0(&meta(), &both)),
            (
                "hostProcess".into(),
                "pod and containers \"a\", \"b\" must not set securityContext.windowsOptions.hostProcess=true".into()
            )
        );
    }
}
