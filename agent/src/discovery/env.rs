//! Service environment variables, byte for byte as kubelet makes them (its
//! `getServiceEnvVarMap` and `envvars.FromServices`): for every Service with a cluster IP
//! in the pod's namespace (when `enableServiceLinks`), and always for the `kubernetes`
//! Service of the default namespace, the `<NAME>_SERVICE_HOST`/`_SERVICE_PORT[_<PORT>]`
//! variables and the Docker-link style `<NAME>_PORT…` ones.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// Services of the default namespace every pod gets variables for (kubelet's
/// masterServices).
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// The variables for a pod in `namespace`.
pub fn service_env<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for service in services {
        if !has_cluster_ip(service) {
            continue;
        }
        let name = service.metadata.name.clone().unwrap_or_default();
        let service_namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        if service_namespace == "default" && MASTER_SERVICES.contains(&name.as_str()) {
            chosen.entry(name).or_insert(service);
        } else if service_namespace == namespace && enable_service_links {
            chosen.insert(name, service);
        }
    }
    let mut vars = BTreeMap::new();
    for service in chosen.values() {
        from_service(service, &mut vars);
    }
    vars
}

fn has_cluster_ip(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// `my-svc` → `MY_SVC`.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

fn from_service(service: &Service, vars: &mut BTreeMap<String, String>) {
    let Some(spec) = &service.spec else { return };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let prefix = env_name(service.metadata.name.as_deref().unwrap_or_default());
    let ports = spec.ports.as_deref().unwrap_or_default();
    vars.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
    let Some(first) = ports.first() else { return };
    vars.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            vars.insert(
                format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                port.port.to_string(),
            );
        }
    }
    // Docker-compatible link variables.
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{ip}:{}", port.port);
        if i == 0 {
            vars.insert(format!("{prefix}_PORT"), url.clone());
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        vars.insert(port_prefix.clone(), url);
        vars.insert(format!("{port_prefix}_PROTO"), lower);
        vars.insert(format!("{port_prefix}_PORT"), port.port.to_string());
        vars.insert(format!("{port_prefix}_ADDR"), ip.clone());
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use kube::api::ObjectMeta;

    use super::*;

    fn service(ns: &str, name: &str, ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.to_owned()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: Some((*n).to_owned()).filter(|n| !n.is_empty()),
                            port: *p,
                            protocol: Some((*proto).to_owned()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn variables_match_kubelet() {
        let services = [
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                &[("https", 443, "TCP")],
            ),
            service("web", "redis-master", "10.96.5.6", &[("", 6379, "TCP")]),
            service(
                "web",
                "dns",
                "10.96.5.7",
                &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
            ),
            service("web", "headless", "None", &[("", 80, "TCP")]),
            service("other", "elsewhere", "10.96.5.8", &[("", 80, "TCP")]),
        ];
        let vars = service_env(&services, "web", true);
        let expected: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("REDIS_MASTER_SERVICE_HOST", "10.96.5.6"),
            ("REDIS_MASTER_SERVICE_PORT", "6379"),
            ("REDIS_MASTER_PORT", "tcp://10.96.5.6:6379"),
            ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.96.5.6:6379"),
            ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.96.5.6"),
            ("DNS_SERVICE_HOST", "10.96.5.7"),
            ("DNS_SERVICE_PORT", "53"),
            ("DNS_SERVICE_PORT_DNS", "53"),
            ("DNS_SERVICE_PORT_DNS_TCP", "53"),
            ("DNS_PORT", "udp://10.96.5.7:53"),
            ("DNS_PORT_53_UDP", "udp://10.96.5.7:53"),
            ("DNS_PORT_53_UDP_PROTO", "udp"),
            ("DNS_PORT_53_UDP_PORT", "53"),
            ("DNS_PORT_53_UDP_ADDR", "10.96.5.7"),
            ("DNS_PORT_53_TCP", "tcp://10.96.5.7:53"),
            ("DNS_PORT_53_TCP_PROTO", "tcp"),
            ("DNS_PORT_53_TCP_PORT", "53"),
            ("DNS_PORT_53_TCP_ADDR", "10.96.5.7"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(vars, expected);
        // enableServiceLinks: false keeps only the master services.
        let only_master = service_env(&services, "web", false);
        assert!(only_master.keys().all(|k| k.starts_with("KUBERNETES_")));
        assert_eq!(only_master.len(), 8);
    }
}
