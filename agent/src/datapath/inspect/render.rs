//! Map entries and flow events as the lines `skiff-agent bpf` prints.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use skiff_ebpf_common::{
    conntrack::{
        CT_CLOSING, CT_EXTERNAL, CT_FORWARD, CT_HAIRPIN, CT_SEEN_REPLY, CT_SNAT, CtKey, CtValue,
    },
    events::{Event, HOOK_NAMES, REASON_NAMES, SELECT_NAMES},
    lb::{
        BACKEND_ACTIVE, BACKEND_LOCAL, Backend, PROTO_TCP, PROTO_UDP, RevNat, SVC_AFFINITY,
        SVC_CLUSTER_IP, SVC_EXTERNAL_IP, SVC_LOAD_BALANCER, SVC_LOCAL_ONLY, SVC_MAGLEV,
        SVC_NODE_PORT, ServiceKey, ServiceValue,
    },
};

use crate::datapath::{
    maps::{LbMaps, Maps},
    model::{FrontendKey, Scope, ip_from_be},
};

/// Id → address snapshots, to print events and tables by address.
pub(super) struct Names {
    backends: HashMap<u32, Backend>,
    frontends: HashMap<u32, RevNat>,
}

impl Names {
    pub(super) fn read(maps: &LbMaps) -> Self {
        Self {
            backends: maps.backends.iter().filter_map(Result::ok).collect(),
            frontends: maps.rev_nat.iter().filter_map(Result::ok).collect(),
        }
    }

    /// Whether the event names an id this snapshot lacks.
    pub(super) fn missing(&self, event: &Event) -> bool {
        (event.backend_id != 0 && !self.backends.contains_key(&event.backend_id))
            || (event.service_id != 0 && !self.frontends.contains_key(&event.service_id))
    }

    pub(super) fn backend(&self, id: u32) -> String {
        match self.backends.get(&id) {
            Some(b) => format!("{}:{}", ip_from_be(b.address), u16::from_be(b.port)),
            None => format!("#{id} (gone)"),
        }
    }

    pub(super) fn frontend(&self, id: u32) -> String {
        match self.frontends.get(&id) {
            Some(f) => format!(
                "{}:{}/{}",
                ip_from_be(f.address),
                u16::from_be(f.port),
                proto_name(f.proto)
            ),
            None => format!("#{id}"),
        }
    }
}

pub(super) fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "TCP",
        PROTO_UDP => "UDP",
        _ => "?",
    }
}

fn kind_names(flags: u16) -> Vec<&'static str> {
    let mut parts = Vec::new();
    for (flag, name) in [
        (SVC_CLUSTER_IP, "ClusterIP"),
        (SVC_NODE_PORT, "NodePort"),
        (SVC_LOAD_BALANCER, "LoadBalancer"),
        (SVC_EXTERNAL_IP, "ExternalIP"),
        (SVC_LOCAL_ONLY, "Local"),
        (SVC_AFFINITY, "ClientIP"),
        (SVC_MAGLEV, "maglev"),
    ] {
        if flags & flag != 0 {
            parts.push(name);
        }
    }
    parts
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Internal => "internal",
        Scope::External => "external",
    }
}

pub(super) fn backend_label(id: u32, backend: Option<&Backend>) -> String {
    match backend {
        Some(b) => format!(
            "{}:{} ({id}, {}{})",
            ip_from_be(b.address),
            u16::from_be(b.port),
            if b.state == BACKEND_ACTIVE {
                "active"
            } else {
                "terminating"
            },
            if b.flags & BACKEND_LOCAL != 0 {
                ", local"
            } else {
                ""
            }
        ),
        None => format!("#{id} (missing)"),
    }
}

/// `lb list` as text.
pub fn render_frontends(
    entries: &BTreeMap<FrontendKey, (ServiceValue, Vec<u32>)>,
    backends: &HashMap<u32, Backend>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<9} {:<5} {:<26} BACKENDS",
        "FRONTEND", "SCOPE", "ID", "KIND"
    );
    for (key, (value, slots)) in entries {
        let scope = scope_name(key.scope);
        let mut first = true;
        let lead = format!(
            "{:<26} {:<9} {:<5} {:<26}",
            key.address.to_string(),
            scope,
            value.service_id,
            kind_names(value.flags).join(",")
        );
        if slots.is_empty() {
            let _ = writeln!(out, "{lead} (none: connections are refused)");
        }
        for id in slots {
            let label = backend_label(*id, backends.get(id));
            if first {
                let _ = writeln!(out, "{lead} {label}");
                first = false;
            } else {
                let _ = writeln!(out, "{:<69} {label}", "");
            }
        }
    }
    out
}

/// `lb list -o json`: one object per frontend, for scripts and tests, with the same
/// fields as the text form (`kind` as a list, each backend with its state).
pub fn frontends_json(
    entries: &BTreeMap<FrontendKey, (ServiceValue, Vec<u32>)>,
    backends: &HashMap<u32, Backend>,
) -> serde_json::Value {
    let frontends = entries
        .iter()
        .map(|(key, (value, slots))| {
            let slots: Vec<serde_json::Value> = slots
                .iter()
                .map(|id| match backends.get(id) {
                    Some(b) => serde_json::json!({
                        "id": id,
                        "address": format!("{}:{}", ip_from_be(b.address), u16::from_be(b.port)),
                        "state": if b.state == BACKEND_ACTIVE { "active" } else { "terminating" },
                        "local": b.flags & BACKEND_LOCAL != 0,
                    }),
                    None => serde_json::json!({"id": id, "state": "missing"}),
                })
                .collect();
            serde_json::json!({
                "frontend": key.address.to_string(),
                "scope": scope_name(key.scope),
                "service_id": value.service_id,
                "kind": kind_names(value.flags),
                "backends": slots,
            })
        })
        .collect();
    serde_json::Value::Array(frontends)
}

pub(super) fn read_frontends(maps: &Maps) -> BTreeMap<FrontendKey, (ServiceValue, Vec<u32>)> {
    let all: HashMap<ServiceKey, ServiceValue> =
        maps.lb.services.iter().filter_map(Result::ok).collect();
    let mut frontends = BTreeMap::new();
    for (key, value) in &all {
        if key.slot != 0 {
            continue;
        }
        let Some(frontend) = FrontendKey::from_map_key(key) else {
            continue;
        };
        let slots = (1..=value.count)
            .filter_map(|slot| all.get(&ServiceKey { slot, ..*key }).map(|v| v.backend_id))
            .collect();
        frontends.insert(frontend, (*value, slots));
    }
    frontends
}

fn ct_flags(flags: u16) -> String {
    let mut parts = Vec::new();
    for (flag, name) in [
        (CT_SNAT, "snat"),
        (CT_HAIRPIN, "hairpin"),
        (CT_EXTERNAL, "external"),
        (CT_SEEN_REPLY, "replied"),
        (CT_CLOSING, "closing"),
    ] {
        if flags & flag != 0 {
            parts.push(name);
        }
    }
    parts.join(",")
}

pub(super) fn endpoint(address: u32, port: u16) -> String {
    format!("{}:{}", ip_from_be(address), u16::from_be(port))
}

/// One conntrack entry as a line.
pub(super) fn render_ct(key: &CtKey, value: &CtValue, names: &Names, now: u64) -> String {
    let age = now.saturating_sub(value.last_seen) / 1_000_000_000;
    let direction = if key.direction == CT_FORWARD {
        "forward"
    } else {
        "reply"
    };
    let rewrite = if key.direction == CT_FORWARD {
        let mut text = format!("→ {}", endpoint(value.nat_daddr, value.nat_dport));
        if value.nat_saddr != 0 {
            let _ = write!(text, " from {}", endpoint(value.nat_saddr, value.nat_sport));
        }
        text
    } else {
        let mut text = format!("src → {}", endpoint(value.nat_saddr, value.nat_sport));
        if value.nat_daddr != 0 {
            let _ = write!(
                text,
                ", dst → {}",
                endpoint(value.nat_daddr, value.nat_dport)
            );
        }
        text
    };
    format!(
        "{} {} {} → {} {}  [{}] service {} backend {} idle {}s{}",
        proto_name(key.proto),
        direction,
        endpoint(key.saddr, key.sport),
        endpoint(key.daddr, key.dport),
        rewrite,
        ct_flags(value.flags),
        names.frontend(value.service_id),
        names.backend(value.backend_id),
        age,
        if value.expired(key.proto, now) {
            " (expired)"
        } else {
            ""
        }
    )
}

/// One event as a line.
pub fn render_event(
    event: &Event,
    start: u64,
    names_backend: &dyn Fn(u32) -> String,
    names_frontend: &dyn Fn(u32) -> String,
) -> String {
    let at = event.timestamp.saturating_sub(start) as f64 / 1e9;
    let hook = HOOK_NAMES
        .get(usize::from(event.hook))
        .copied()
        .unwrap_or("?");
    let reason = REASON_NAMES
        .get(usize::from(event.reason))
        .copied()
        .unwrap_or("?");
    let mut line = format!("{at:>10.6} {hook:<12}");
    if event.ifindex != 0 {
        let _ = write!(line, " if{}", event.ifindex);
    }
    let _ = write!(
        line,
        " {} {} → {}",
        proto_name(event.proto),
        endpoint(event.saddr, event.sport),
        endpoint(event.daddr, event.dport)
    );
    let _ = write!(line, "  {reason}");
    if event.service_id != 0 {
        let _ = write!(line, "  service {}", names_frontend(event.service_id));
    }
    if event.backend_id != 0 {
        let how = SELECT_NAMES
            .get(usize::from(event.select))
            .copied()
            .unwrap_or("?");
        let _ = write!(
            line,
            "  backend {} by {how}",
            names_backend(event.backend_id)
        );
    }
    let changed = (
        event.new_saddr,
        event.new_sport,
        event.new_daddr,
        event.new_dport,
    ) != (event.saddr, event.sport, event.daddr, event.dport);
    if changed {
        let _ = write!(
            line,
            "  nat {} → {}",
            endpoint(event.new_saddr, event.new_sport),
            endpoint(event.new_daddr, event.new_dport)
        );
    }
    if event.ct_flags != 0 {
        let _ = write!(line, "  [{}]", ct_flags(event.ct_flags));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::datapath::model::{Address, Protocol};
    use skiff_ebpf_common::events::{HOOK_XDP, REASON_TRANSLATED, SELECT_MAGLEV};

    fn be(ip: &str) -> u32 {
        u32::from(ip.parse::<Ipv4Addr>().expect("ip")).to_be()
    }

    #[test]
    fn frontends_list_their_backends_like_cilium() {
        let key = FrontendKey {
            address: Address {
                ip: Ipv4Addr::new(10, 96, 0, 20),
                port: 80,
                protocol: Protocol::Tcp,
            },
            scope: Scope::Internal,
        };
        let value = ServiceValue {
            count: 2,
            flags: SVC_CLUSTER_IP,
            service_id: 7,
            ..ServiceValue::default()
        };
        let mut backends = HashMap::new();
        backends.insert(
            12,
            Backend {
                address: be("10.244.1.5"),
                port: 8080u16.to_be(),
                proto: PROTO_TCP,
                flags: BACKEND_LOCAL,
                ..Backend::default()
            },
        );
        let mut entries = BTreeMap::new();
        entries.insert(key, (value, vec![12, 13]));
        let text = render_frontends(&entries, &backends);
        assert!(text.contains("10.96.0.20:80/TCP"), "{text}");
        assert!(text.contains("ClusterIP"), "{text}");
        assert!(
            text.contains("10.244.1.5:8080 (12, active, local)"),
            "{text}"
        );
        assert!(text.contains("#13 (missing)"), "{text}");
    }

    #[test]
    fn events_name_the_hook_service_backend_and_nat() {
        let event = Event {
            timestamp: 1_500_000_000,
            hook: HOOK_XDP,
            reason: REASON_TRANSLATED,
            select: SELECT_MAGLEV,
            proto: PROTO_TCP,
            ifindex: 2,
            saddr: be("172.30.0.1"),
            daddr: be("172.30.0.11"),
            sport: 40000u16.to_be(),
            dport: 30080u16.to_be(),
            new_saddr: be("172.30.0.11"),
            new_daddr: be("10.244.2.4"),
            new_sport: 40000u16.to_be(),
            new_dport: 8080u16.to_be(),
            service_id: 9,
            backend_id: 13,
            ct_flags: CT_SNAT,
            ..Event::default()
        };
        let line = render_event(&event, 1_000_000_000, &|id| format!("b{id}"), &|id| {
            format!("f{id}")
        });
        assert!(line.contains("xdp"), "{line}");
        assert!(
            line.contains("172.30.0.1:40000 → 172.30.0.11:30080"),
            "{line}"
        );
        assert!(line.contains("translated"), "{line}");
        assert!(line.contains("service f9"), "{line}");
        assert!(line.contains("backend b13 by maglev"), "{line}");
        assert!(
            line.contains("nat 172.30.0.11:40000 → 10.244.2.4:8080"),
            "{line}"
        );
        assert!(line.contains("[snat]"), "{line}");
    }
}
