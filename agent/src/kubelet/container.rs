//! From a pod's container spec and its image to the runtime's container config: argv, env,
//! user (resolved in the image as containerd resolves it), working dir, mounts, limits
//! (memory, CPU, pids), and the security context (see [`super::security`]).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{Kubelet, env, security, volumes};
use crate::runtime::{
    devices,
    images::ReadyImage,
    passwd, seccomp,
    spec::{BindMount, ContainerConfig},
};
use skiff_quantity as quantity;

/// Why a container could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// kubelet could not build the container's config (kubelet's
    /// CreateContainerConfigError: a missing key, runAsNonRoot…).
    #[error("{0}")]
    Config(String),
    /// The runtime could not create the container from it (kubelet's CreateContainerError:
    /// an image user that does not exist, a seccomp profile it cannot load).
    #[error("{0}")]
    Create(String),
}

impl ConfigError {
    /// The container's waiting reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) => "CreateContainerConfigError",
            Self::Create(_) => "CreateContainerError",
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Self::Config(m) | Self::Create(m) => m,
        }
    }
}

/// containerd's prefix of a container it could not create.
fn create_failed(detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::Create(format!("failed to create containerd container: {detail}"))
}

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
#[allow(clippy::too_many_arguments)]
pub async fn build(
    kubelet: &Kubelet,
    pod: &Pod,
    container: &Container,
    image: &ReadyImage,
    prepared: &volumes::Prepared,
    pod_files: &[BindMount],
    pod_dir: &Path,
    cgroups_path: String,
) -> Result<ContainerConfig, ConfigError> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| ConfigError::Config("pod has no spec".into()))?;
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
    let container_env = env::build(&kubelet.client, pod, container, &image_env, &service_env)
        .await
        .map_err(|e| ConfigError::Config(e.0))?;
    let mut environment = container_env.vars;
    // containerd's CRI plugin sets HOSTNAME first; the image and the pod may override it.
    if !environment.iter().any(|(name, _)| name == "HOSTNAME") {
        environment.insert(0, ("HOSTNAME".to_owned(), super::pod_dns::hostname(pod)));
    }
    let vars: BTreeMap<String, String> = environment.iter().cloned().collect();
    let args = argv(container, image, &vars);
    if args.is_empty() {
        return Err(ConfigError::Config(format!(
            "container {} has no command: the image defines no ENTRYPOINT or CMD and the pod gives none",
            container.name
        )));
    }
    security::needs_user_namespace(pod, container).map_err(ConfigError::Config)?;
    let privileged = security::privileged(container);
    if privileged && !kubelet.config.allow_privileged {
        return Err(ConfigError::Config(format!(
            "container {} is privileged, which this node does not allow (skiff-agent --allow-privileged)",
            container.name
        )));
    }
    let image_user = security::ImageUser::from_config(image.config.user.as_deref());
    security::verify_run_as_non_root(pod, container, &image_user).map_err(ConfigError::Config)?;
    let user = resolve_user(kubelet, pod, container, image, &image_user).await?;
    let capabilities = security::capabilities(container);
    let seccomp = match security::seccomp(pod, container, kubelet.config.seccomp_default)
        .map_err(create_failed)?
    {
        security::Seccomp::RuntimeDefault => Some(seccomp::runtime_default(&capabilities)),
        security::Seccomp::Unconfined => None,
    };
    let mut mounts = pod_files.to_vec();
    mounts.extend(
        volumes::mounts_for(container, prepared, pod_dir, &container_env.kubelet)
            .map_err(|e| ConfigError::Config(e.0))?,
    );
    let resources = container.resources.as_ref();
    let limit =
        |name: &str| resources.and_then(|r| r.limits.as_ref()?.get(name).map(|q| q.0.clone()));
    let request =
        |name: &str| resources.and_then(|r| r.requests.as_ref()?.get(name).map(|q| q.0.clone()));
    let memory_limit = limit("memory").and_then(|q| quantity::bytes(&q));
    let cpu_quota = limit("cpu")
        .and_then(|q| quantity::millicores(&q))
        .map(|m| m.saturating_mul(100).max(1000));
    let cpu_shares = request("cpu")
        .or_else(|| limit("cpu"))
        .and_then(|q| quantity::millicores(&q))
        .map(|m| u64::try_from((m.saturating_mul(1024) / 1000).max(2)).unwrap_or(2));
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
        user: (user.uid, user.gid),
        additional_gids: user.additional_gids,
        hostname: super::pod_dns::hostname(pod),
        netns: PathBuf::new(),
        cgroups_path,
        mounts,
        memory_limit,
        cpu_quota,
        cpu_shares,
        read_only_root: security::read_only_root(container),
        capabilities,
        privileged,
        shim_group: pod.metadata.uid.clone().unwrap_or_default(),
        no_new_privileges: security::no_new_privileges(container),
        seccomp,
        devices: if privileged {
            devices::host_devices(Path::new("/dev"))
        } else {
            Vec::new()
        },
        pids_limit: kubelet.config.pod_max_pids,
    })
}

/// The container's uid, gid and groups, as containerd's CRI plugin resolves them: from the
/// user string and, unless it is all numbers under the Strict groups policy, the image's
/// /etc/passwd and /etc/group.
async fn resolve_user(
    kubelet: &Kubelet,
    pod: &Pod,
    container: &Container,
    image: &ReadyImage,
    image_user: &security::ImageUser,
) -> Result<passwd::ResolvedUser, ConfigError> {
    let user = security::user_string(pod, container, image_user);
    let merge = security::merge_image_groups(pod);
    let supplemental = security::supplemental_groups(pod).map_err(ConfigError::Config)?;
    let numeric = user.split(':').all(|part| part.parse::<i64>().is_ok());
    let accounts = if numeric && !merge && user.contains(':') {
        Arc::new(passwd::ImageAccounts::default())
    } else {
        let scratch = kubelet.image_views_dir();
        match kubelet
            .runtime
            .image_accounts(&image.chain_id, &scratch)
            .await
        {
            Ok(accounts) => accounts,
            // A numeric user needs the files only for its gid and groups: run it with gid
            // 0 and the pod's groups rather than not at all (a name cannot do without).
            Err(e) if numeric => {
                tracing::warn!(image = %image.name, error = %e, "cannot read the image's users; numeric user taken as is");
                Arc::new(passwd::ImageAccounts::default())
            }
            Err(e) => return Err(create_failed(e)),
        }
    };
    passwd::resolve(&user, &accounts, merge, &supplemental).map_err(create_failed)
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
}
