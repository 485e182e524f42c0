//! Baseline check on sysctls: only the safe, namespaced set, which grew over versions
//! (check_sysctls.go).

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::CheckResult;

/// Safe sysctls from v1.0.
const SAFE_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
/// Added in v1.27.
const ADDED_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
/// Added in v1.29.
const ADDED_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
/// Added in v1.32.
const ADDED_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

/// `sysctls` before v1.27.
pub(super) fn sysctls_1_0(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    sysctls(meta, spec, &[SAFE_1_0])
}

/// `sysctls` from v1.27.
pub(super) fn sysctls_1_27(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    sysctls(meta, spec, &[SAFE_1_0, ADDED_1_27])
}

/// `sysctls` from v1.29.
pub(super) fn sysctls_1_29(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    sysctls(meta, spec, &[SAFE_1_0, ADDED_1_27, ADDED_1_29])
}

/// `sysctls` from v1.32.
pub(super) fn sysctls_1_32(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    sysctls(meta, spec, &[SAFE_1_0, ADDED_1_27, ADDED_1_29, ADDED_1_32])
}

/// The pod's sysctls are all in one of the `safe` sets; the others are listed in the
/// pod's order.
fn sysctls(_meta: &ObjectMeta, spec: &PodSpec, safe: &[&[&str]]) -> CheckResult {
    let forbidden: Vec<&str> = spec
        .security_context
        .iter()
        .flat_map(|sc| sc.sysctls.iter().flatten())
        .map(|sysctl| sysctl.name.as_str())
        .filter(|name| !safe.iter().any(|set| set.contains(name)))
        .collect();
    if forbidden.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid("forbidden sysctls", forbidden.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{forbidden, spec};
    use super::*;
    use serde_json::json;

    fn with_sysctls(names: &[&str]) -> PodSpec {
        let sysctls: Vec<_> = names
            .iter()
            .map(|n| json!({"name": n, "value": "1"}))
            .collect();
        spec(json!({"securityContext": {"sysctls": sysctls}, "containers": []}))
    }

    #[test]
    fn safe_sysctls_pass() {
        let meta = ObjectMeta::default();
        assert!(sysctls_1_0(&meta, &with_sysctls(&["kernel.shm_rmid_forced"])).allowed);
        assert!(sysctls_1_0(&meta, &spec(json!({"containers": []}))).allowed);
    }

    #[test]
    fn unsafe_sysctls_are_listed_in_order() {
        let meta = ObjectMeta::default();
        let pod = with_sysctls(&[
            "net.core.somaxconn",
            "kernel.shm_rmid_forced",
            "kernel.msgmax",
        ]);
        assert_eq!(
            forbidden(sysctls_1_32(&meta, &pod)),
            (
                "forbidden sysctls".into(),
                "net.core.somaxconn, kernel.msgmax".into()
            )
        );
    }

    #[test]
    fn the_safe_set_grows_with_the_version() {
        let meta = ObjectMeta::default();
        let reserved = with_sysctls(&["net.ipv4.ip_local_reserved_ports"]);
        assert!(!sysctls_1_0(&meta, &reserved).allowed);
        assert!(sysctls_1_27(&meta, &reserved).allowed);
        let keepalive = with_sysctls(&["net.ipv4.tcp_keepalive_time"]);
        assert!(!sysctls_1_27(&meta, &keepalive).allowed);
        assert!(sysctls_1_29(&meta, &keepalive).allowed);
        let rmem = with_sysctls(&["net.ipv4.tcp_rmem"]);
        assert_eq!(forbidden(sysctls_1_29(&meta, &rmem)).1, "net.ipv4.tcp_rmem");
        assert!(sysctls_1_32(&meta, &rmem).allowed);
    }
}
