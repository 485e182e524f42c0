//! kube-proxy's iptables mode (v1.33), reproduced for the benchmarks: the `iptables-restore`
//! input kube-proxy writes for a set of Service ports and their endpoints — `KUBE-SERVICES`,
//! `KUBE-SVC-*` with `-m statistic --mode random --probability`, `KUBE-SEP-*` with the DNAT,
//! `KUBE-EXT-*` and `KUBE-NODEPORTS` for node ports, `KUBE-MARK-MASQ` and
//! `KUBE-POSTROUTING` for masquerading, and the filter table's `KUBE-FORWARD` — with kube's
//! chain names (base32 of a SHA-256, as `servicePortChainName` computes them).
//!
//! kube-proxy lists Services in `KUBE-SERVICES` in Go map order, so a Service's rule may sit
//! anywhere; the benchmark places the measured one explicitly ([`Position`]) and says where.

use std::{fmt::Write as _, net::Ipv4Addr};

use super::{ServicePort, Settings, sha256_base32};

/// The iptables mode's chain names: `KUBE-*-` and 16 characters of base32(SHA-256), as
/// `servicePortChainName` computes them.
impl ServicePort {
    fn hash(&self, extra: &str) -> String {
        let text = format!("{}{}{extra}", self.port_name_string(), self.protocol);
        sha256_base32(&text)[..16].to_owned()
    }

    /// `KUBE-SVC-…`.
    pub fn service_chain(&self) -> String {
        format!("KUBE-SVC-{}", self.hash(""))
    }

    /// `KUBE-EXT-…`.
    pub fn external_chain(&self) -> String {
        format!("KUBE-EXT-{}", self.hash(""))
    }

    /// `KUBE-SEP-…` of one endpoint.
    pub fn endpoint_chain(&self, endpoint: (Ipv4Addr, u16)) -> String {
        format!(
            "KUBE-SEP-{}",
            self.hash(&format!("{}:{}", endpoint.0, endpoint.1))
        )
    }
}

/// Where the measured Service's rule sits in `KUBE-SERVICES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// After every other Service: the worst case (every rule is tried first).
    Last,
    /// In the middle: the median case.
    Middle,
}

fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

/// The chains and rules of one Service port (nat table), appended to `chains`/`rules`.
fn service_rules(
    service: &ServicePort,
    settings: &Settings,
    chains: &mut String,
    rules: &mut String,
) {
    let name = service.port_name_string();
    let proto = &service.protocol;
    let svc = service.service_chain();
    let _ = writeln!(chains, ":{svc} - [0:0]");
    let _ = writeln!(
        rules,
        "-A {svc} {} -m {proto} -p {proto} -d {}/32 --dport {} ! -s {} -j KUBE-MARK-MASQ",
        comment(&format!("{name} cluster IP")),
        service.cluster_ip,
        service.port,
        settings.cluster_cidr
    );
    let count = service.endpoints.len();
    for (i, endpoint) in service.endpoints.iter().enumerate() {
        let sep = service.endpoint_chain(*endpoint);
        let target = format!("{}:{}", endpoint.0, endpoint.1);
        let left = count - i;
        if left > 1 {
            let _ = writeln!(
                rules,
                "-A {svc} {} -m statistic --mode random --probability {:.10} -j {sep}",
                comment(&format!("{name} -> {target}")),
                1.0 / left as f64
            );
        } else {
            let _ = writeln!(
                rules,
                "-A {svc} {} -j {sep}",
                comment(&format!("{name} -> {target}"))
            );
        }
        let _ = writeln!(chains, ":{sep} - [0:0]");
        let _ = writeln!(
            rules,
            "-A {sep} {} -s {}/32 -j KUBE-MARK-MASQ",
            comment(&name),
            endpoint.0
        );
        let _ = writeln!(
            rules,
            "-A {sep} {} -m {proto} -p {proto} -j DNAT --to-destination {target}",
            comment(&name)
        );
    }
    if service.node_port.is_some() {
        let ext = service.external_chain();
        let _ = writeln!(chains, ":{ext} - [0:0]");
        let _ = writeln!(
            rules,
            "-A {ext} {} -j KUBE-MARK-MASQ",
            comment(&format!(
                "masquerade traffic for {name} external destinations"
            ))
        );
        let _ = writeln!(rules, "-A {ext} -j {svc}");
    }
}

/// The `KUBE-SERVICES` jump of a Service port.
fn services_jump(service: &ServicePort) -> String {
    format!(
        "-A KUBE-SERVICES {} -m {proto} -p {proto} -d {}/32 --dport {} -j {}\n",
        comment(&format!("{} cluster IP", service.port_name_string())),
        service.cluster_ip,
        service.port,
        service.service_chain(),
        proto = service.protocol,
    )
}

/// The `KUBE-NODEPORTS` jump of a Service port with a node port, appended to `rules`.
fn node_port_jump(service: &ServicePort, rules: &mut String) {
    if let Some(node_port) = service.node_port {
        let _ = writeln!(
            rules,
            "-A KUBE-NODEPORTS {} -m {proto} -p {proto} --dport {node_port} -j {}",
            comment(&service.port_name_string()),
            service.external_chain(),
            proto = service.protocol,
        );
    }
}

/// `KUBE-SERVICES` whole, appended to `rules`: every Service port's jump (`measured` at
/// `position`), then the jump to `KUBE-NODEPORTS` for local destinations.
fn services_chain(
    services: &[ServicePort],
    measured: usize,
    position: Position,
    rules: &mut String,
) {
    for service in ordered(services, measured, position) {
        rules.push_str(&services_jump(service));
    }
    rules.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
}

/// The order of `services` in `KUBE-SERVICES` with `measured` at `position`.
fn ordered(services: &[ServicePort], measured: usize, position: Position) -> Vec<&ServicePort> {
    let mut others: Vec<&ServicePort> = services
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != measured)
        .map(|(_, s)| s)
        .collect();
    let at = match position {
        Position::Last => others.len(),
        Position::Middle => others.len() / 2,
    };
    if let Some(service) = services.get(measured) {
        others.insert(at, service);
    }
    others
}

/// The full `iptables-restore --noflush` input kube-proxy's full sync writes: every KUBE-*
/// chain of the nat and filter tables, flushed and rewritten. Restored again and again (as
/// the programming benchmark does), it leaves the same rules.
pub fn full_restore(
    services: &[ServicePort],
    measured: usize,
    position: Position,
    settings: &Settings,
) -> String {
    restore_input(services, measured, position, settings, false)
}

/// [`full_restore`] plus the jumps from the base chains (`PREROUTING`, `OUTPUT`,
/// `POSTROUTING`, `FORWARD`), which kube-proxy ensures once with `iptables -C`/`-I`: the
/// one restore that turns a namespace without rules into a kube-proxy node. Restored twice
/// without a flush between, it would add the jumps twice.
pub fn first_restore(
    services: &[ServicePort],
    measured: usize,
    position: Position,
    settings: &Settings,
) -> String {
    restore_input(services, measured, position, settings, true)
}

fn restore_input(
    services: &[ServicePort],
    measured: usize,
    position: Position,
    settings: &Settings,
    base_jumps: bool,
) -> String {
    let mut chains = String::from(
        ":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n",
    );
    let mut rules = String::from(
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n",
    );
    for service in services {
        service_rules(service, settings, &mut chains, &mut rules);
        node_port_jump(service, &mut rules);
    }
    services_chain(services, measured, position, &mut rules);
    let base = if base_jumps {
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n"
    } else {
        ""
    };
    let filter_chains = "*filter\n\
        :KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n\
        -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
        -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
        -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
    let filter_jumps = if base_jumps {
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
        -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
        -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
        -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
        -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
    } else {
        ""
    };
    format!("{filter_chains}{filter_jumps}COMMIT\n*nat\n{chains}{base}{rules}COMMIT\n")
}

/// The restore input kube-proxy's partial sync (MinimizeIPTablesRestore, default since
/// 1.27) writes when only `changed` changed: `KUBE-SERVICES` and `KUBE-NODEPORTS` rewritten
/// whole, the changed Service's own chains rewritten, the rest left alone.
pub fn partial_restore(
    services: &[ServicePort],
    changed: usize,
    measured: usize,
    position: Position,
    settings: &Settings,
) -> String {
    let mut chains = String::from(":KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n");
    let mut rules = String::new();
    if let Some(service) = services.get(changed) {
        service_rules(service, settings, &mut chains, &mut rules);
    }
    for service in services {
        node_port_jump(service, &mut rules);
    }
    services_chain(services, measured, position, &mut rules);
    format!("*nat\n{chains}{rules}COMMIT\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_proxy::tests::{service, settings};

    #[test]
    fn chain_names_follow_kube_proxy() {
        let s = service("web", 1);
        // Same inputs, same 16-character base32 name; different ports, different chains.
        assert_eq!(s.service_chain().len(), "KUBE-SVC-".len() + 16);
        assert!(
            s.service_chain()[9..]
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
        );
        let other = ServicePort {
            port_name: "https".to_owned(),
            ..s.clone()
        };
        assert_ne!(s.service_chain(), other.service_chain());
        assert_eq!(s.service_chain()[9..], s.external_chain()[9..]);
        assert_ne!(
            s.endpoint_chain((Ipv4Addr::new(10, 244, 1, 1), 8080)),
            s.endpoint_chain((Ipv4Addr::new(10, 244, 1, 2), 8080))
        );
    }

    #[test]
    fn probabilities_share_traffic_evenly() {
        let rules = full_restore(&[service("web", 4)], 0, Position::Last, &settings());
        for p in ["0.2500000000", "0.3333333333", "0.5000000000"] {
            assert!(rules.contains(&format!("--probability {p}")), "{rules}");
        }
        // The last endpoint takes what is left, without a statistic match.
        let svc = service("web", 4).service_chain();
        let last = rules
            .lines()
            .rfind(|l| l.starts_with(&format!("-A {svc} ")))
            .expect("rules");
        assert!(!last.contains("statistic"), "{last}");
        assert!(rules.contains("DNAT --to-destination 10.244.1.4:8080"));
        assert!(rules.contains("-A KUBE-NODEPORTS"));
        assert!(rules.starts_with("*filter\n"));
        assert!(rules.trim_end().ends_with("COMMIT"));
    }

    #[test]
    fn only_the_first_restore_jumps_from_the_base_chains() {
        let services = [service("web", 2)];
        let base = |text: &str| {
            text.lines()
                .filter(|l| {
                    [
                        "-A PREROUTING ",
                        "-A OUTPUT ",
                        "-A POSTROUTING ",
                        "-A FORWARD ",
                    ]
                    .iter()
                    .any(|chain| l.starts_with(chain))
                })
                .count()
        };
        let sync = full_restore(&services, 0, Position::Last, &settings());
        let first = first_restore(&services, 0, Position::Last, &settings());
        // A sync restored again and again adds nothing to the base chains.
        assert_eq!(base(&sync), 0, "{sync}");
        // nat: PREROUTING, OUTPUT, POSTROUTING; filter: four FORWARD jumps and OUTPUT.
        assert_eq!(base(&first), 8, "{first}");
        assert_eq!(first.lines().count(), sync.lines().count() + 8);
    }

    #[test]
    fn the_measured_service_sits_where_asked() {
        let services: Vec<ServicePort> = (0..5).map(|i| service(&format!("s{i}"), 1)).collect();
        let settings = settings();
        let jumps = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("-A KUBE-SERVICES") && l.contains("cluster IP"))
                .map(str::to_owned)
                .collect()
        };
        let measured = services[0].service_chain();
        let last = jumps(&full_restore(&services, 0, Position::Last, &settings));
        assert!(last[4].ends_with(&measured));
        let middle = jumps(&full_restore(&services, 0, Position::Middle, &settings));
        assert!(middle[2].ends_with(&measured));
        let partial = partial_restore(&services, 3, 0, Position::Last, &settings);
        assert!(partial.contains(&format!(":{} - [0:0]", services[3].service_chain())));
        assert!(!partial.contains(&format!(":{} - [0:0]", services[1].service_chain())));
        assert_eq!(jumps(&partial).len(), 5);
    }
}
