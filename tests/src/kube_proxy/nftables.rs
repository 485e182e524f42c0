//! kube-proxy's nftables mode (v1.33), reproduced for the benchmarks: the `nft -f` input
//! its sync writes for a set of Service ports and their endpoints, in its own table
//! `ip kube-proxy`.
//!
//! Where the iptables mode walks `KUBE-SERVICES` rule by rule, the nftables mode looks a
//! packet's (destination, protocol, port) up once in the `service-ips` verdict map, which
//! sends it to the Service's `service-…` chain; that chain picks an endpoint with
//! `numgen random mod N vmap { … }` and the endpoint's `endpoint-…` chain DNATs. Node
//! ports go through `service-nodeports` (destination one of `nodeport-ips`) to the
//! Service's `external-…` chain. The filter chains (`filter-forward`, `filter-input`,
//! `filter-output` and the pre-DNAT firewall chains) check every new connection against
//! `no-endpoint-services`, `firewall-ips` and `cluster-ips`, as kube-proxy's do.
//!
//! Chain names are kube-proxy's: 8 characters of base32(SHA-256) of the name, a dash and
//! the name (`service-ULMVA6XW-ns1/svc1/tcp/p80`, as `servicePortChainNameBase` computes
//! them).

use std::{fmt::Write as _, net::Ipv4Addr};

use super::{ServicePort, Settings, sha256_base32};

/// The table every rule lives in.
pub const TABLE: &str = "ip kube-proxy";

/// kube-proxy's longest chain-name base; longer names are cut and end in `...`.
const CHAIN_NAME_BASE_MAX: usize = 240;

/// `hashAndTruncate`: the name prefixed with 8 characters of its hash, cut to
/// [`CHAIN_NAME_BASE_MAX`].
fn hash_and_truncate(name: &str) -> String {
    let hashed = format!("{}-{name}", &sha256_base32(name)[..8]);
    if hashed.len() > CHAIN_NAME_BASE_MAX {
        // Chain names are ASCII ([A-Za-z0-9_./-]), so any byte is a char boundary.
        format!("{}...", &hashed[..CHAIN_NAME_BASE_MAX - 3])
    } else {
        hashed
    }
}

/// The nftables mode's chain names.
impl ServicePort {
    /// `ns/name/protocol/portName` with its hash in front.
    fn chain_base(&self) -> String {
        hash_and_truncate(&format!(
            "{}/{}/{}/{}",
            self.namespace, self.name, self.protocol, self.port_name
        ))
    }

    /// `service-…`: the Service port's endpoints, for traffic to its cluster IP.
    pub fn nft_service_chain(&self) -> String {
        format!("service-{}", self.chain_base())
    }

    /// `external-…`: node-port (and external IP) traffic, masqueraded, then on to the
    /// service chain.
    pub fn nft_external_chain(&self) -> String {
        format!("external-{}", self.chain_base())
    }

    /// `endpoint-…` of one endpoint: its DNAT.
    pub fn nft_endpoint_chain(&self, endpoint: (Ipv4Addr, u16)) -> String {
        format!(
            "endpoint-{}",
            hash_and_truncate(&format!(
                "{}/{}/{}/{}__{}/{}",
                self.namespace, self.name, self.protocol, self.port_name, endpoint.0, endpoint.1
            ))
        )
    }
}

/// The table, its sets, maps and fixed chains and rules: what kube-proxy's
/// `setupNFTables` writes before any Service.
fn base(settings: &Settings, out: &mut String) {
    let t = TABLE;
    let _ = write!(
        out,
        "add table {t} {{ comment \"rules for kube-proxy\" ; }}\n\
         add set {t} cluster-ips {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}\n\
         add set {t} nodeport-ips {{ type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ; }}\n\
         add map {t} firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"destinations that are subject to LoadBalancerSourceRanges\" ; }}\n\
         add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ; }}\n\
         add map {t} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to services with no endpoints\" ; }}\n\
         add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }}\n\
         add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }}\n\
         add chain {t} cluster-ips-check\n\
         add chain {t} filter-prerouting-pre-dnat {{ type filter hook prerouting priority -110 ; }}\n\
         add chain {t} filter-output-pre-dnat {{ type filter hook output priority -110 ; }}\n\
         add chain {t} filter-forward {{ type filter hook forward priority 0 ; }}\n\
         add chain {t} filter-input {{ type filter hook input priority 0 ; }}\n\
         add chain {t} filter-output {{ type filter hook output priority 0 ; }}\n\
         add chain {t} firewall-check\n\
         add chain {t} mark-for-masquerade\n\
         add chain {t} masquerading\n\
         add chain {t} nat-output {{ type nat hook output priority -100 ; }}\n\
         add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}\n\
         add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}\n\
         add chain {t} nodeport-endpoints-check\n\
         add chain {t} reject-chain {{ comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }}\n\
         add chain {t} services\n\
         add chain {t} service-endpoints-check\n\
         add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n\
         add rule {t} cluster-ips-check ip daddr {{ {service_cidr} }} drop comment \"Drop traffic to unallocated ClusterIPs\"\n\
         add rule {t} filter-prerouting-pre-dnat ct state new jump firewall-check\n\
         add rule {t} filter-forward ct state new jump service-endpoints-check\n\
         add rule {t} filter-forward ct state new jump cluster-ips-check\n\
         add rule {t} filter-input ct state new jump nodeport-endpoints-check\n\
         add rule {t} filter-input ct state new jump service-endpoints-check\n\
         add rule {t} filter-output ct state new jump service-endpoints-check\n\
         add rule {t} filter-output-pre-dnat ct state new jump firewall-check\n\
         add rule {t} filter-output ct state new jump cluster-ips-check\n\
         add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips\n\
         add rule {t} mark-for-masquerade mark set mark or 0x4000\n\
         add rule {t} masquerading mark and 0x4000 == 0 return\n\
         add rule {t} masquerading mark set mark xor 0x4000\n\
         add rule {t} masquerading masquerade fully-random\n\
         add rule {t} nat-output jump services\n\
         add rule {t} nat-postrouting jump masquerading\n\
         add rule {t} nat-prerouting jump services\n\
         add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports\n\
         add rule {t} reject-chain reject\n\
         add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips\n\
         add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports\n\
         add element {t} nodeport-ips {{ {node_ip} }}\n\
         add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services\n",
        service_cidr = settings.service_cidr,
        node_ip = settings.node_ip,
    );
}

/// One Service port's chains, rules and map elements (its chains created before anything
/// refers to them). `flush` empties chains that may already hold rules (a partial sync).
fn service(service: &ServicePort, settings: &Settings, flush: bool, out: &mut String) {
    let t = TABLE;
    let proto = &service.protocol;
    let ip = service.cluster_ip;
    let port = service.port;
    let _ = writeln!(out, "add element {t} cluster-ips {{ {ip} }}");
    if service.endpoints.is_empty() {
        // No chains in the nat path: the filter chains reject new connections.
        let name = service.port_name_string();
        let _ = writeln!(
            out,
            "add element {t} no-endpoint-services {{ {ip} . {proto} . {port} comment \"{name}\" : goto reject-chain }}"
        );
        if let Some(node_port) = service.node_port {
            let _ = writeln!(
                out,
                "add element {t} no-endpoint-nodeports {{ {proto} . {node_port} comment \"{name}\" : goto reject-chain }}"
            );
        }
        return;
    }
    let chain = |out: &mut String, name: &str| {
        let _ = writeln!(out, "add chain {t} {name}");
        if flush {
            let _ = writeln!(out, "flush chain {t} {name}");
        }
    };
    let mut verdicts = Vec::with_capacity(service.endpoints.len());
    for (i, endpoint) in service.endpoints.iter().enumerate() {
        let ep = service.nft_endpoint_chain(*endpoint);
        chain(out, &ep);
        let _ = writeln!(
            out,
            "add rule {t} {ep} ip saddr {} jump mark-for-masquerade",
            endpoint.0
        );
        let _ = writeln!(
            out,
            "add rule {t} {ep} meta l4proto {proto} dnat to {}:{}",
            endpoint.0, endpoint.1
        );
        verdicts.push(format!("{i} : goto {ep}"));
    }
    let svc = service.nft_service_chain();
    chain(out, &svc);
    let _ = writeln!(
        out,
        "add rule {t} {svc} ip daddr {ip} {proto} dport {port} ip saddr != {} jump mark-for-masquerade",
        settings.cluster_cidr
    );
    let _ = writeln!(
        out,
        "add rule {t} {svc} numgen random mod {} vmap {{ {} }}",
        verdicts.len(),
        verdicts.join(" , ")
    );
    let _ = writeln!(
        out,
        "add element {t} service-ips {{ {ip} . {proto} . {port} : goto {svc} }}"
    );
    if let Some(node_port) = service.node_port {
        // externalTrafficPolicy Cluster: masquerade, then any endpoint.
        let ext = service.nft_external_chain();
        chain(out, &ext);
        let _ = writeln!(out, "add rule {t} {ext} jump mark-for-masquerade");
        let _ = writeln!(out, "add rule {t} {ext} goto {svc}");
        let _ = writeln!(
            out,
            "add element {t} service-nodeports {{ {proto} . {node_port} : goto {ext} }}"
        );
    }
}

/// The `nft -f` input of kube-proxy's full sync into a namespace without its table: the
/// table, then every Service port.
pub fn full_sync(services: &[ServicePort], settings: &Settings) -> String {
    let mut out = String::new();
    base(settings, &mut out);
    for port in services {
        service(port, settings, false, &mut out);
    }
    out
}

/// The `nft -f` transaction of kube-proxy's partial sync when only `changed` changed: that
/// Service port's chains flushed and rewritten and its map elements written again (the
/// maps are looked up, not walked, so no other Service's rules move). Only the
/// transaction: each sync kube-proxy also lists the table's chains and sets to find stale
/// ones, which this leaves out.
pub fn partial_sync(services: &[ServicePort], changed: usize, settings: &Settings) -> String {
    let mut out = String::new();
    if let Some(port) = services.get(changed) {
        service(port, settings, true, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_proxy::tests::{service, settings};

    fn port(namespace: &str, name: &str, port_name: &str) -> ServicePort {
        ServicePort {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port_name: port_name.to_owned(),
            ..service("x", 1)
        }
    }

    #[test]
    fn chain_names_are_kube_proxys() {
        // The names kube-proxy's own tests expect (pkg/proxy/nftables/proxier_test.go).
        let svc1 = port("ns1", "svc1", "p80");
        assert_eq!(
            svc1.nft_service_chain(),
            "service-ULMVA6XW-ns1/svc1/tcp/p80"
        );
        assert_eq!(
            svc1.nft_endpoint_chain((Ipv4Addr::new(10, 180, 0, 1), 80)),
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        let svc3 = port("ns3", "svc3", "p80");
        assert_eq!(
            svc3.nft_external_chain(),
            "external-4AT6LBPK-ns3/svc3/tcp/p80"
        );
    }

    #[test]
    fn long_names_are_cut_as_kube_proxy_cuts_them() {
        let long = "n".repeat(300);
        let cut = hash_and_truncate(&long);
        assert_eq!(cut.len(), CHAIN_NAME_BASE_MAX);
        assert!(cut.ends_with("..."));
        assert_eq!(hash_and_truncate("a/b").len(), 8 + 1 + 3);
    }

    #[test]
    fn a_service_is_one_map_element_and_a_random_pick() {
        let web = service("web", 3);
        let rules = full_sync(std::slice::from_ref(&web), &settings());
        let svc = web.nft_service_chain();
        assert!(rules.starts_with("add table ip kube-proxy"));
        assert!(rules.contains(&format!(
            "add element ip kube-proxy service-ips {{ 10.96.0.10 . tcp . 80 : goto {svc} }}"
        )));
        let pick = rules
            .lines()
            .find(|l| l.contains("numgen random mod 3 vmap"))
            .expect("a numgen rule");
        for i in 1..=3u8 {
            let ep = web.nft_endpoint_chain((Ipv4Addr::new(10, 244, 1, i), 8080));
            assert!(pick.contains(&format!("{} : goto {ep}", i - 1)), "{pick}");
            assert!(rules.contains(&format!("dnat to 10.244.1.{i}:8080")));
            // Every chain exists before a rule or element names it.
            let created = rules
                .find(&format!("add chain ip kube-proxy {ep}\n"))
                .expect("chain");
            assert!(created < rules.find(pick).expect("pick"));
        }
        assert!(rules.contains(&format!(
            "service-nodeports {{ tcp . 30080 : goto {} }}",
            web.nft_external_chain()
        )));
        assert!(rules.contains("ip daddr { 10.96.0.0/12 } drop"));
        // Off-cluster sources to the cluster IP and port are masqueraded.
        assert!(rules.contains(&format!(
            "add rule ip kube-proxy {svc} ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
        )));
        assert!(rules.contains("nodeport-ips { 172.30.0.50 }"));
    }

    #[test]
    fn a_service_without_endpoints_is_rejected_not_routed() {
        let empty = service("empty", 0);
        let rules = full_sync(std::slice::from_ref(&empty), &settings());
        assert!(!rules.contains(&empty.nft_service_chain()));
        assert!(rules.contains(
            "no-endpoint-services { 10.96.0.10 . tcp . 80 comment \"default/empty:http\" : goto reject-chain }"
        ));
        assert!(rules.contains("no-endpoint-nodeports { tcp . 30080"));
    }

    #[test]
    fn a_partial_sync_rewrites_one_service_only() {
        let services: Vec<ServicePort> = (0..4).map(|i| service(&format!("s{i}"), 2)).collect();
        let partial = partial_sync(&services, 2, &settings());
        let svc = services[2].nft_service_chain();
        assert!(partial.contains(&format!("flush chain ip kube-proxy {svc}\n")));
        assert!(!partial.contains(&services[1].nft_service_chain()));
        assert!(!partial.contains("add table"));
        assert!(partial_sync(&services, 9, &settings()).is_empty());
    }
}
