//! From a pod's container spec and its image to the runtime's container config: argv, env,
//! user, working dir, mounts, limits, capabilities.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{Kubelet, env, volumes};
use crate::runtime::{
    images::ReadyImage,
    spec::{BindMount, ContainerConfig, DEFAULT_CAPABILITIES},
};
use skiff_quantity as quantity;

/// Why a container could not be configured (kubelet's CreateContainerConfigError).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// argv from command/args and the image's ENTRYPOINT/CMD, as Kubernetes defines it.
pub fn argv(
    container: &Container,
    image: &ReadyImage,
    vars: &BTreeMap<String, String>,
) -> Vec<String> {
    let entrypoint = image.config.entrypoint.clone().unwrap_or_default();
    let cmd = image.config.cmd.clone().unwrap_or_default();
    let args: Vec<String> = match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => command
            .iter()
            .chain(args.iter().flatten())
            .cloned()
            .collect(),
        (_, Some(args)) if !args.is_empty() => {
            entrypoint.into_iter().chain(args.iter().cloned()).collect()
        }
        _ => entrypoint.into_iter().chain(cmd).collect(),
    };
    args.iter().map(|a| env::expand(a, vars)).collect()
}

/// Build the runtime config of `container` (the pod's sandbox already exists).
pub async fn build(
    kubelet: &Kubelet,
    pod: &Pod,
    container: &Container,
    image: &ReadyImage,
    prepared: &volumes::Prepared,
    pod_files: &[BindMount],
    cgroups_path: String,
) -> Result<ContainerConfig, ConfigError> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| ConfigError("pod has no spec".into()))?;
    let image_env = image.config.env.clone().unwrap_or_default();
    let service_env = match &kubelet.discovery {
        Some(discovery) => {
            discovery
                .service_env(
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    spec.enable_service_links.unwrap_or(true),
                )
                .await
        }
        None => BTreeMap::new(),
    };
    let mut environment = env::build(&kubelet.client, pod, container, &image_env, &service_env)
        .await
        .map_err(|e| ConfigError(e.0))?;
    // containerd's CRI plugin sets HOSTNAME first; the image and the pod may override it.
    if !environment.iter().any(|(name, _)| name == "HOSTNAME") {
        environment.insert(0, ("HOSTNAME".to_owned(), super::pod_dns::hostname(pod)));
    }
    let vars: BTreeMap<String, String> = environment.iter().cloned().collect();
    let args = argv(container, image, &vars);
    if args.is_empty() {
        return Err(ConfigError(format!(
            "container {} has no command: the image defines no ENTRYPOINT or CMD and the pod gives none",
            container.name
        )));
    }
    let pod_security = spec.security_context.as_ref();
    let security = container.security_context.as_ref();
    let privileged = security.and_then(|s| s.privileged).unwrap_or(false);
    if privileged && !kubelet.config.allow_privileged {
        return Err(ConfigError(format!(
            "container {} is privileged, which this node does not allow (skiff-agent --allow-privileged)",
            container.name
        )));
    }
    let uid = security
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_security.and_then(|s| s.run_as_user))
        .or_else(|| {
            image
                .config
                .user
                .as_deref()
                .and_then(|u| u.split(':').next()?.parse().ok())
        })
        .unwrap_or(0);
    let gid = security
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_security.and_then(|s| s.run_as_group))
        .unwrap_or(0);
    if security
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_security.and_then(|s| s.run_as_non_root))
        == Some(true)
        && uid == 0
    {
        return Err(ConfigError(
            "container has runAsNonRoot and image will run as root".to_owned(),
        ));
    }
    let (uid, gid) = (
        u32::try_from(uid).map_err(|_| ConfigError(format!("runAsUser {uid} is out of range")))?,
        u32::try_from(gid).map_err(|_| ConfigError(format!("runAsGroup {gid} is out of range")))?,
    );
    let capabilities = capabilities(container);
    let mut mounts = pod_files.to_vec();
    mounts.extend(volumes::mounts_for(container, prepared).map_err(|e| ConfigError(e.0))?);
    let resources = container.resources.as_ref();
    let limit =
        |name: &str| resources.and_then(|r| r.limits.as_ref()?.get(name).map(|q| q.0.clone()));
    let request =
        |name: &str| resources.and_then(|r| r.requests.as_ref()?.get(name).map(|q| q.0.clone()));
    let memory_limit = limit("memory").and_then(|q| quantity::bytes(&q));
    let cpu_quota = limit("cpu")
        .and_then(|q| quantity::millicores(&q))
        .map(|m| (m * 100).max(1000));
    let cpu_shares = request("cpu")
        .or_else(|| limit("cpu"))
        .and_then(|q| quantity::millicores(&q))
        .map(|m| u64::try_from((m * 1024 / 1000).max(2)).unwrap_or(2));
    Ok(ContainerConfig {
        args,
        env: environment
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        cwd: container
            .working_dir
            .clone()
            .or_else(|| image.config.working_dir.clone())
            .unwrap_or_default(),
        user: (uid, gid),
        hostname: super::pod_dns::hostname(pod),
        netns: PathBuf::new(),
        cgroups_path,
        mounts,
        memory_limit,
        cpu_quota,
        cpu_shares,
        read_only_root: security
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        capabilities,
        privileged,
        shim_group: pod.metadata.uid.clone().unwrap_or_default(),
    })
}

use std::path::PathBuf;

/// Docker's default set with the container's add/drop applied (`ALL` allowed in both).
fn capabilities(container: &Container) -> Vec<String> {
    let caps = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref());
    let normalize = |c: &String| {
        let upper = c.to_ascii_uppercase();
        if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    let add: Vec<String> = caps
        .and_then(|c| c.add.as_ref())
        .map(|v| v.iter().map(normalize).collect())
        .unwrap_or_default();
    let drop: Vec<String> = caps
        .and_then(|c| c.drop.as_ref())
        .map(|v| v.iter().map(normalize).collect())
        .unwrap_or_default();
    let mut set: Vec<String> = if drop.iter().any(|d| d == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for cap in add {
        if cap != "CAP_ALL" && !set.contains(&cap) {
            set.push(cap);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::images::RunConfig;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ReadyImage {
        ReadyImage {
            name: "i".into(),
            image_id: "i@sha256:0".into(),
            chain_id: "sha256:0".into(),
            config: RunConfig {
                entrypoint: Some(entrypoint.iter().map(|s| (*s).to_owned()).collect()),
                cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
                ..RunConfig::default()
            },
        }
    }

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).expect("container")
    }

    #[test]
    fn argv_follows_the_kubernetes_rules() {
        let img = image(&["/entry"], &["default"]);
        let vars = BTreeMap::from([("X".to_owned(), "1".to_owned())]);
        let c = |j| argv(&container(j), &img, &vars);
        assert_eq!(c(serde_json::json!({"name": "a"})), ["/entry", "default"]);
        assert_eq!(
            c(serde_json::json!({"name": "a", "args": ["x$(X)"]})),
            ["/entry", "x1"]
        );
        assert_eq!(
            c(serde_json::json!({"name": "a", "command": ["sh"], "args": ["-c"]})),
            ["sh", "-c"]
        );
        assert_eq!(
            c(serde_json::json!({"name": "a", "command": ["sh"]})),
            ["sh"]
        );
    }

    #[test]
    fn capabilities_add_and_drop() {
        let c = container(
            serde_json::json!({"name": "a", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}}),
        );
        assert_eq!(capabilities(&c), ["CAP_NET_ADMIN"]);
        let c = container(
            serde_json::json!({"name": "a", "securityContext": {"capabilities": {"drop": ["KILL"]}}}),
        );
        assert!(!capabilities(&c).contains(&"CAP_KILL".to_owned()));
        assert!(capabilities(&c).contains(&"CAP_CHOWN".to_owned()));
    }
}
