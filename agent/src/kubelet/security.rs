//! A container's security context as kubelet hands it to containerd's CRI plugin, and as
//! that plugin turns it into the OCI spec: the effective context (container fields over the
//! pod's), the user string (kubelet's `determineEffectiveSecurityContext`, the CRI plugin's
//! `GenerateUserString`), runAsNonRoot (kubelet's `verifyRunAsNonRoot`, with its wording),
//! the seccomp profile, capabilities (the CRI plugin's `WithCapabilities`), no_new_privs
//! (kubelet's `AddNoNewPrivileges`), supplementary groups with fsGroup, kubelet's
//! `FsUserFrom` for projected tokens, and the refusal of what needs a user namespace.
//! Pure functions of the pod; no I/O.

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use crate::runtime::spec::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES};

fn pod_context(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec.as_ref()?.security_context.as_ref()
}

fn container_context(container: &Container) -> Option<&SecurityContext> {
    container.security_context.as_ref()
}

/// The container's field, else the pod's (kubelet's `DetermineEffectiveSecurityContext`).
fn effective<T: Clone>(
    pod: &Pod,
    container: &Container,
    of_container: impl Fn(&SecurityContext) -> Option<T>,
    of_pod: impl Fn(&PodSecurityContext) -> Option<T>,
) -> Option<T> {
    container_context(container)
        .and_then(of_container)
        .or_else(|| pod_context(pod).and_then(of_pod))
}

/// kubelet's `format.Pod`: `name_namespace(uid)`.
pub fn pod_full_name(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The pod's fsGroup, if it has one in range.
pub fn fs_group(pod: &Pod) -> Option<u32> {
    pod_context(pod)?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

/// The effective runAsUser of `container`.
pub fn run_as_user(pod: &Pod, container: &Container) -> Option<i64> {
    effective(pod, container, |c| c.run_as_user, |p| p.run_as_user)
}

/// kubelet's `FsUserFrom`: the one runAsUser every container (init and app) runs as, if
/// they all set one and it is the same; the owner of projected token files.
pub fn fs_user(pod: &Pod) -> Option<u32> {
    let spec = pod.spec.as_ref()?;
    let mut user = None;
    for container in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        let uid = run_as_user(pod, container)?;
        match user {
            None => user = Some(uid),
            Some(seen) if seen != uid => return None,
            Some(_) => {}
        }
    }
    user.and_then(|u| u32::try_from(u).ok())
}

/// The user an image runs as, as the CRI plugin reports it to kubelet (the part before
/// `:`): a uid, or a name; an image without USER runs as uid 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    /// A numeric user.
    Uid(i64),
    /// A user name, resolved later from the image's /etc/passwd.
    Name(String),
}

impl ImageUser {
    /// From the image config's `User`.
    pub fn from_config(user: Option<&str>) -> Self {
        let user = user.unwrap_or_default();
        let name = user.split(':').next().unwrap_or_default();
        if name.is_empty() {
            return Self::Uid(0);
        }
        name.parse()
            .map_or_else(|_| Self::Name(name.to_owned()), Self::Uid)
    }
}

/// kubelet's `verifyRunAsNonRoot`, with its messages.
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image: &ImageUser,
) -> Result<(), String> {
    let non_root = effective(pod, container, |c| c.run_as_non_root, |p| p.run_as_non_root);
    if non_root != Some(true) {
        return Ok(());
    }
    let full_name = pod_full_name(pod);
    let name = &container.name;
    if let Some(uid) = run_as_user(pod, container) {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: \"{full_name}\", container: {name})"
            ));
        }
        return Ok(());
    }
    match image {
        ImageUser::Name(user) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: \"{full_name}\", container: {name})"
        )),
        ImageUser::Uid(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{full_name}\", container: {name})"
        )),
        ImageUser::Uid(uid) if !(1..=i64::from(i32::MAX)).contains(uid) => Err(format!(
            "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be 1-({})): must be between 0 and 2147483647, inclusive (pod: \"{full_name}\", container: {name})",
            i32::MAX
        )),
        ImageUser::Uid(_) => Ok(()),
    }
}

/// The user string the CRI plugin resolves (`uid`, `name`, `uid:gid`, `name:gid`): the
/// effective runAsUser, else the image's user; then `:runAsGroup` if set. The image's own
/// group is not used, as with kubelet and containerd.
pub fn user_string(pod: &Pod, container: &Container, image: &ImageUser) -> String {
    let user = match (run_as_user(pod, container), image) {
        (Some(uid), _) => uid.to_string(),
        (None, ImageUser::Uid(uid)) => uid.to_string(),
        (None, ImageUser::Name(name)) => name.clone(),
    };
    match effective(pod, container, |c| c.run_as_group, |p| p.run_as_group) {
        Some(gid) => format!("{user}:{gid}"),
        None => user,
    }
}

/// The pod's supplementalGroups and fsGroup (kubelet adds the fsGroup to them).
pub fn supplemental_groups(pod: &Pod) -> Result<Vec<u32>, String> {
    let Some(context) = pod_context(pod) else {
        return Ok(Vec::new());
    };
    context
        .supplemental_groups
        .iter()
        .flatten()
        .chain(context.fs_group.iter())
        .map(|g| u32::try_from(*g).map_err(|_| format!("supplemental group {g} is out of range")))
        .collect()
}

/// Whether the user's groups from the image's /etc/group are added (supplementalGroupsPolicy
/// Merge, the default; not Strict).
pub fn merge_image_groups(pod: &Pod) -> bool {
    pod_context(pod).and_then(|c| c.supplemental_groups_policy.as_deref()) != Some("Strict")
}

/// The seccomp profile a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seccomp {
    /// None.
    Unconfined,
    /// containerd's default profile.
    RuntimeDefault,
}

/// The container's seccomp profile: container's, else pod's, else (kubelet's
/// `--seccomp-default`) RuntimeDefault or Unconfined. A privileged container runs
/// unconfined, as the CRI plugin runs it.
pub fn seccomp(pod: &Pod, container: &Container, default_runtime: bool) -> Result<Seccomp, String> {
    if privileged(container) {
        return Ok(Seccomp::Unconfined);
    }
    let profile = effective(
        pod,
        container,
        |c| c.seccomp_profile.clone(),
        |p| p.seccomp_profile.clone(),
    );
    let Some(profile) = profile else {
        return Ok(if default_runtime {
            Seccomp::RuntimeDefault
        } else {
            Seccomp::Unconfined
        });
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(Seccomp::RuntimeDefault),
        "Unconfined" => Ok(Seccomp::Unconfined),
        "Localhost" => Err(format!(
            "seccomp profile type Localhost ({:?}) is not supported by skiff-agent; use RuntimeDefault or Unconfined",
            profile.localhost_profile.unwrap_or_default()
        )),
        other => Err(format!("seccomp unknown ProfileType {other:?}")),
    }
}

/// Whether the container is privileged.
pub fn privileged(container: &Container) -> bool {
    container_context(container)
        .and_then(|c| c.privileged)
        .unwrap_or(false)
}

/// kubelet's `AddNoNewPrivileges`: only an explicit `allowPrivilegeEscalation: false`.
pub fn no_new_privileges(container: &Container) -> bool {
    container_context(container).and_then(|c| c.allow_privilege_escalation) == Some(false)
}

/// What needs a user namespace, which skiff-agent does not create yet: `procMount:
/// Unmasked` (without a user namespace, an unmasked /proc hands the container a writable
/// /proc/sys and /proc/sysrq-trigger as the host's root) and `hostUsers: false`. The
/// refusal (a CreateContainerConfigError) says so; nothing is run with less isolation than
/// the pod asked for.
pub fn needs_user_namespace(pod: &Pod, container: &Container) -> Result<(), String> {
    let name = &container.name;
    if container_context(container).and_then(|c| c.proc_mount.as_deref()) == Some("Unmasked") {
        return Err(format!(
            "container {name} asks for procMount: Unmasked, which needs a user namespace (spec.hostUsers: false); skiff-agent does not create user namespaces yet"
        ));
    }
    if pod.spec.as_ref().and_then(|s| s.host_users) == Some(false) {
        return Err(format!(
            "pod {} asks for a user namespace (spec.hostUsers: false), which skiff-agent does not create yet",
            pod_full_name(pod)
        ));
    }
    Ok(())
}

/// Whether the root filesystem is read-only.
pub fn read_only_root(container: &Container) -> bool {
    container_context(container)
        .and_then(|c| c.read_only_root_filesystem)
        .unwrap_or(false)
}

fn capability_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The CRI plugin's `WithCapabilities` over containerd's default set: `add: [ALL]` grants
/// every capability, `drop: [ALL]` removes them all, then the named additions, then the
/// named drops (a capability both added and dropped is dropped).
pub fn capabilities(container: &Container) -> Vec<String> {
    let caps = container_context(container).and_then(|c| c.capabilities.as_ref());
    let add: Vec<&String> = caps
        .and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten()
        .collect();
    let drop: Vec<&String> = caps
        .and_then(|c| c.drop.as_ref())
        .into_iter()
        .flatten()
        .collect();
    let is_all = |c: &&String| c.eq_ignore_ascii_case("ALL");
    let mut set: Vec<String> = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    if add.iter().any(is_all) {
        set = ALL_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
    }
    if drop.iter().any(is_all) {
        set.clear();
    }
    for cap in add.iter().filter(|c| !is_all(c)) {
        let cap = capability_name(cap);
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
    for cap in drop.iter().filter(|c| !is_all(c)) {
        let cap = capability_name(cap);
        set.retain(|c| *c != cap);
    }
    set
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1"},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn container(context: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "app", "securityContext": context}))
            .expect("container")
    }

    #[test]
    fn run_as_non_root_refuses_root_with_kubelets_words() {
        let p = pod(json!({"containers": [], "securityContext": {"runAsNonRoot": true}}));
        let c = container(json!({}));
        assert_eq!(
            verify_run_as_non_root(&p, &c, &ImageUser::Uid(0)),
            Err("container has runAsNonRoot and image will run as root (pod: \"web_prod(u-1)\", container: app)".to_owned())
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, &ImageUser::from_config(None)),
            verify_run_as_non_root(&p, &c, &ImageUser::Uid(0)),
            "an image without USER runs as root"
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, &ImageUser::Name("app".into())),
            Err("container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"web_prod(u-1)\", container: app)".to_owned())
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, &ImageUser::Uid(1000)),
            Ok(())
        );
        let as_root = container(json!({"runAsUser": 0}));
        assert_eq!(
            verify_run_as_non_root(&p, &as_root, &ImageUser::Uid(1000)),
            Err("container's runAsUser breaks non-root policy (pod: \"web_prod(u-1)\", container: app)".to_owned())
        );
        // runAsUser decides over the image's user.
        let as_user = container(json!({"runAsUser": 1000}));
        assert_eq!(
            verify_run_as_non_root(&p, &as_user, &ImageUser::Uid(0)),
            Ok(())
        );
        // The container may turn the pod's policy off.
        let off = container(json!({"runAsNonRoot": false}));
        assert_eq!(verify_run_as_non_root(&p, &off, &ImageUser::Uid(0)), Ok(()));
    }

    #[test]
    fn the_user_string_is_the_cri_plugins() {
        let p = pod(json!({"containers": [], "securityContext": {"runAsGroup": 3000}}));
        assert_eq!(
            user_string(
                &p,
                &container(json!({})),
                &ImageUser::from_config(Some("app:app"))
            ),
            "app:3000"
        );
        assert_eq!(
            user_string(
                &p,
                &container(json!({"runAsUser": 7})),
                &ImageUser::Name("app".into())
            ),
            "7:3000"
        );
        let plain = pod(json!({"containers": []}));
        assert_eq!(
            user_string(
                &plain,
                &container(json!({})),
                &ImageUser::from_config(Some("1000:1000"))
            ),
            "1000",
            "the image's group is not used"
        );
        assert_eq!(
            user_string(
                &plain,
                &container(json!({})),
                &ImageUser::from_config(Some("nobody"))
            ),
            "nobody"
        );
        assert_eq!(
            user_string(
                &plain,
                &container(json!({})),
                &ImageUser::from_config(Some(""))
            ),
            "0"
        );
    }

    #[test]
    fn seccomp_profiles_follow_container_then_pod_then_default() {
        let p = pod(
            json!({"containers": [], "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}),
        );
        assert_eq!(
            seccomp(&p, &container(json!({})), false),
            Ok(Seccomp::RuntimeDefault)
        );
        assert_eq!(
            seccomp(
                &p,
                &container(json!({"seccompProfile": {"type": "Unconfined"}})),
                false
            ),
            Ok(Seccomp::Unconfined)
        );
        let plain = pod(json!({"containers": []}));
        assert_eq!(
            seccomp(&plain, &container(json!({})), false),
            Ok(Seccomp::Unconfined)
        );
        assert_eq!(
            seccomp(&plain, &container(json!({})), true),
            Ok(Seccomp::RuntimeDefault)
        );
        let local = container(
            json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/a.json"}}),
        );
        let err = seccomp(&plain, &local, false).expect_err("localhost");
        assert!(
            err.contains("Localhost (\"profiles/a.json\") is not supported"),
            "{err}"
        );
        assert_eq!(
            seccomp(&p, &container(json!({"privileged": true})), true),
            Ok(Seccomp::Unconfined),
            "privileged containers run unconfined"
        );
    }

    #[test]
    fn no_new_privs_only_for_an_explicit_false() {
        assert!(no_new_privileges(&container(
            json!({"allowPrivilegeEscalation": false})
        )));
        assert!(!no_new_privileges(&container(
            json!({"allowPrivilegeEscalation": true})
        )));
        assert!(!no_new_privileges(&container(json!({}))));
    }

    #[test]
    fn capabilities_follow_the_cri_order() {
        let caps = |ctx| capabilities(&container(json!({"capabilities": ctx})));
        assert_eq!(
            caps(json!({"drop": ["ALL"], "add": ["NET_ADMIN"]})),
            ["CAP_NET_ADMIN"]
        );
        let dropped = caps(json!({"drop": ["KILL"]}));
        assert!(!dropped.contains(&"CAP_KILL".to_owned()));
        assert!(dropped.contains(&"CAP_CHOWN".to_owned()));
        // Added and dropped: dropped.
        assert!(
            !caps(json!({"add": ["SYS_TIME"], "drop": ["SYS_TIME"]}))
                .contains(&"CAP_SYS_TIME".to_owned())
        );
        let all = caps(json!({"add": ["ALL"], "drop": ["SYS_ADMIN"]}));
        assert_eq!(all.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!all.contains(&"CAP_SYS_ADMIN".to_owned()));
        assert_eq!(caps(json!({})).len(), DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn fs_group_joins_the_supplemental_groups_and_fs_user_needs_one_user() {
        let p = pod(json!({
            "securityContext": {"fsGroup": 2000, "supplementalGroups": [3000]},
            "containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 5}}],
        }));
        assert_eq!(supplemental_groups(&p), Ok(vec![3000, 2000]));
        assert_eq!(fs_group(&p), Some(2000));
        assert_eq!(fs_user(&p), None, "container a has no runAsUser");
        let same = pod(json!({
            "securityContext": {"runAsUser": 5},
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 5}}],
        }));
        assert_eq!(fs_user(&same), Some(5));
        let differ = pod(json!({
            "containers": [{"name": "a", "securityContext": {"runAsUser": 5}}, {"name": "b", "securityContext": {"runAsUser": 6}}],
        }));
        assert_eq!(fs_user(&differ), None);
        assert!(merge_image_groups(&p));
        let strict = pod(
            json!({"containers": [], "securityContext": {"supplementalGroupsPolicy": "Strict"}}),
        );
        assert!(!merge_image_groups(&strict));
    }

    #[test]
    fn what_needs_a_user_namespace_is_refused_until_there_are_user_namespaces() {
        let plain = pod(json!({"containers": []}));
        let unmasked = container(json!({"procMount": "Unmasked"}));
        let err = needs_user_namespace(&plain, &unmasked).expect_err("unmasked");
        assert!(
            err.contains("procMount: Unmasked")
                && err.contains("does not create user namespaces yet"),
            "{err}"
        );
        let own_users = pod(json!({"containers": [], "hostUsers": false}));
        let err = needs_user_namespace(&own_users, &container(json!({}))).expect_err("hostUsers");
        assert_eq!(
            err,
            "pod web_prod(u-1) asks for a user namespace (spec.hostUsers: false), which skiff-agent does not create yet"
        );
        assert!(needs_user_namespace(&own_users, &unmasked).is_err());
        let host_users = pod(json!({"containers": [], "hostUsers": true}));
        let default_proc = container(json!({"procMount": "Default"}));
        assert_eq!(needs_user_namespace(&host_users, &default_proc), Ok(()));
        assert_eq!(needs_user_namespace(&plain, &container(json!({}))), Ok(()));
    }
}
