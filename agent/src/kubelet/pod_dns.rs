//! A pod's name-resolution files as kubelet writes them: `/etc/resolv.conf` by dnsPolicy
//! (ClusterFirst → the cluster DNS with the search path `<ns>.svc.<domain> svc.<domain>
//! <domain>` and `ndots:5`; Default → the node's; None → only dnsConfig) merged with
//! dnsConfig, `/etc/hosts` with the pod's own name (and `<hostname>.<subdomain>` FQDN), and
//! the hostname (spec.hostname or the pod name).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

/// Cluster-wide DNS settings of the node.
#[derive(Debug, Clone)]
pub struct ClusterDns {
    /// The cluster DNS address.
    pub server: Ipv4Addr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
}

/// The pod's hostname: spec.hostname, else its name (kubelet truncates to 63 characters).
pub fn hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_owned()
}

/// `/etc/hosts` of the pod.
pub fn hosts(pod: &Pod, ip: Ipv4Addr, dns: &ClusterDns) -> String {
    let host = hostname(pod);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let subdomain = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty());
    let names = match subdomain {
        Some(sub) => format!("{host}.{sub}.{namespace}.svc.{}\t{host}", dns.domain),
        None => host,
    };
    let mut text = format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{names}\n"
    );
    for alias in pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_ref())
        .into_iter()
        .flatten()
    {
        text.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            alias.ip,
            alias.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    text
}

/// `/etc/resolv.conf` of the pod; `node_resolv` is the node's own (for dnsPolicy Default).
pub fn resolv_conf(pod: &Pod, dns: &ClusterDns, node_resolv: &str) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy {
            "None" => (Vec::new(), Vec::new(), Vec::new()),
            "Default" => parse_resolv(node_resolv),
            // ClusterFirstWithHostNet, and ClusterFirst unless on the host network.
            "ClusterFirst" if host_network => parse_resolv(node_resolv),
            _ => (
                vec![dns.server.to_string()],
                vec![
                    format!("{namespace}.svc.{}", dns.domain),
                    format!("svc.{}", dns.domain),
                    dns.domain.clone(),
                ],
                vec!["ndots:5".to_owned()],
            ),
        };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        for server in config.nameservers.iter().flatten() {
            if !servers.contains(server) {
                servers.push(server.clone());
            }
        }
        for search in config.searches.iter().flatten() {
            if !searches.contains(search) {
                searches.push(search.clone());
            }
        }
        for option in config.options.iter().flatten() {
            let text = match &option.value {
                Some(v) => format!("{}:{v}", option.name.clone().unwrap_or_default()),
                None => option.name.clone().unwrap_or_default(),
            };
            let key = text.split(':').next().unwrap_or_default().to_owned();
            options.retain(|o| o.split(':').next() != Some(key.as_str()));
            options.push(text);
        }
    }
    servers.truncate(3);
    searches.truncate(32);
    let mut text = String::new();
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for server in &servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

fn parse_resolv(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.map(str::to_owned)),
            Some("search" | "domain") => searches.extend(words.map(str::to_owned)),
            Some("options") => options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    (servers, searches, options)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};
    use kube::api::ObjectMeta;

    use super::*;

    fn pod(policy: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".to_owned()),
                namespace: Some("shop".to_owned()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: policy.map(str::to_owned),
                hostname: Some("web-0".to_owned()),
                subdomain: Some("web".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn dns() -> ClusterDns {
        ClusterDns {
            server: Ipv4Addr::new(10, 96, 0, 10),
            domain: "cluster.local".to_owned(),
        }
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_and_search_path() {
        assert_eq!(
            resolv_conf(&pod(None), &dns(), "nameserver 1.1.1.1\n"),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert_eq!(
            resolv_conf(
                &pod(Some("Default")),
                &dns(),
                "nameserver 1.1.1.1\nsearch lan\n"
            ),
            "search lan\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn dns_config_merges_and_none_uses_only_it() {
        let mut p = pod(Some("None"));
        p.spec.as_mut().expect("spec").dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["10.0.0.53".to_owned()]),
            searches: Some(vec!["example.internal".to_owned()]),
            options: Some(vec![PodDNSConfigOption {
                name: Some("ndots".to_owned()),
                value: Some("2".to_owned()),
            }]),
        });
        assert_eq!(
            resolv_conf(&p, &dns(), ""),
            "search example.internal\nnameserver 10.0.0.53\noptions ndots:2\n"
        );
    }

    #[test]
    fn hosts_carry_the_subdomain_fqdn() {
        let text = hosts(&pod(None), Ipv4Addr::new(10, 244, 1, 5), &dns());
        assert!(
            text.contains("10.244.1.5\tweb-0.web.shop.svc.cluster.local\tweb-0\n"),
            "{text}"
        );
    }
}
