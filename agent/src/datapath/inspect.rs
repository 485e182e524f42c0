//! `skiff-agent bpf …`: the datapath as a network engineer wants to see it, read from the
//! maps a running agent pinned — frontends with their backends (like `cilium bpf lb
//! list`), backends, conntrack, affinity, Maglev tables, counters — plus `monitor` (every
//! translation and drop, live) and `trace` (every decision about one flow, at every hook).
//! Events are only produced while one of those two runs: each keeps pushing a deadline
//! forward in the config map, so a killed CLI stops them within seconds.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use clap::{Args, Subcommand, ValueEnum};
use skiff_ebpf_common::{
    config::{CONFIG_SOCKET_LB, CONFIG_XDP, TraceFilter},
    conntrack::{
        CT_CLOSING, CT_EXTERNAL, CT_FORWARD, CT_HAIRPIN, CT_SEEN_REPLY, CT_SNAT, CtKey, CtValue,
    },
    events::{Event, HOOK_NAMES, REASON_NAMES, SELECT_NAMES},
    lb::{
        BACKEND_ACTIVE, BACKEND_LOCAL, Backend, RevNat, SVC_AFFINITY, SVC_CLUSTER_IP,
        SVC_EXTERNAL_IP, SVC_LOAD_BALANCER, SVC_LOCAL_ONLY, SVC_MAGLEV, SVC_NODE_PORT, ServiceKey,
        ServiceValue,
    },
    lb::{PROTO_TCP, PROTO_UDP},
};

use super::{
    DatapathError,
    conntrack_gc::monotonic_ns,
    maps::{LbMaps, Maps, map_error},
    model::{FrontendKey, Scope, ip_from_be},
    stats,
};

/// Where the datapath of a node is pinned.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The node whose datapath to read (pins under /sys/fs/bpf/skiff/NODE).
    #[arg(long, env = "SKIFF_NODE_NAME", conflicts_with = "pins")]
    pub node: Option<String>,
    /// The pin directory itself.
    #[arg(long)]
    pub pins: Option<PathBuf>,
}

impl Target {
    /// The pin directory.
    pub fn dir(&self) -> Result<PathBuf, DatapathError> {
        match (&self.pins, &self.node) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(node)) => Ok(Path::new("/sys/fs/bpf/skiff").join(node)),
            (None, None) => Err(DatapathError::Setting(
                "say which node: --node skiff-node-1 (or --pins DIR)".to_owned(),
            )),
        }
    }
}

/// On or off.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// A transport protocol on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// `skiff-agent bpf` commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Service frontends and the backends they choose from.
    #[command(name = "lb")]
    Lb {
        #[command(subcommand)]
        command: LbCommand,
    },
    /// Every backend with its id and state.
    Backends,
    /// Per-packet flows (tc and XDP).
    #[command(name = "ct")]
    Conntrack {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// ClientIP affinity entries.
    Affinity {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// The Maglev table of a frontend (by service id, as `lb list` shows it).
    Maglev {
        /// Service id.
        service_id: u32,
    },
    /// Decision counters by hook and reason.
    Counters,
    /// Show or change the runtime switches.
    Config {
        /// Socket-level load balancing for in-cluster clients.
        #[arg(long)]
        socket_lb: Option<Switch>,
        /// XDP NodePort acceleration on the underlay interface.
        #[arg(long)]
        xdp: Option<Switch>,
    },
    /// Stream every translation and drop, live.
    Monitor {
        /// Stop after this many seconds (default: until interrupted).
        #[arg(long)]
        seconds: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Follow one flow: every hook that sees it and every decision.
    Trace {
        /// An address of the flow (give one or two: client, frontend or backend).
        #[arg(long = "addr", num_args = 1, action = clap::ArgAction::Append)]
        addresses: Vec<Ipv4Addr>,
        /// A port of the flow (either end).
        #[arg(long)]
        port: Option<u16>,
        /// The protocol.
        #[arg(long, value_enum)]
        proto: Option<Proto>,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
}

/// `lb` subcommands.
#[derive(Subcommand, Debug)]
pub enum LbCommand {
    /// List frontends and their backends.
    List,
}

/// `ct`/`affinity` subcommands.
#[derive(Subcommand, Debug)]
pub enum ListCommand {
    /// List entries.
    List,
}

/// Id → address snapshots, to print events and tables by address.
struct Names {
    backends: HashMap<u32, Backend>,
    frontends: HashMap<u32, RevNat>,
}

impl Names {
    fn read(maps: &LbMaps) -> Self {
        Self {
            backends: maps.backends.iter().filter_map(Result::ok).collect(),
            frontends: maps.rev_nat.iter().filter_map(Result::ok).collect(),
        }
    }

    /// Whether the event names an id this snapshot lacks.
    fn missing(&self, event: &Event) -> bool {
        (event.backend_id != 0 && !self.backends.contains_key(&event.backend_id))
            || (event.service_id != 0 && !self.frontends.contains_key(&event.service_id))
    }

    fn backend(&self, id: u32) -> String {
        match self.backends.get(&id) {
            Some(b) => format!("{}:{}", ip_from_be(b.address), u16::from_be(b.port)),
            None => format!("#{id} (gone)"),
        }
    }

    fn frontend(&self, id: u32) -> String {
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

fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "TCP",
        PROTO_UDP => "UDP",
        _ => "?",
    }
}

fn kind_name(flags: u16) -> String {
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
    parts.join(",")
}

fn backend_label(id: u32, backend: Option<&Backend>) -> String {
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
        let scope = match key.scope {
            Scope::Internal => "internal",
            Scope::External => "external",
        };
        let mut first = true;
        let lead = format!(
            "{:<26} {:<9} {:<5} {:<26}",
            key.address.to_string(),
            scope,
            value.service_id,
            kind_name(value.flags)
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

fn read_frontends(maps: &Maps) -> BTreeMap<FrontendKey, (ServiceValue, Vec<u32>)> {
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

fn endpoint(address: u32, port: u16) -> String {
    format!("{}:{}", ip_from_be(address), u16::from_be(port))
}

/// One conntrack entry as a line.
fn render_ct(key: &CtKey, value: &CtValue, names: &Names, now: u64) -> String {
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

/// Run a `bpf` command, printing to stdout.
pub fn run(target: &Target, command: Command) -> Result<(), DatapathError> {
    let dir = target.dir()?;
    let mut maps = Maps::open_pinned(&dir)?;
    match command {
        Command::Lb { .. } => {
            let backends: HashMap<u32, Backend> =
                maps.lb.backends.iter().filter_map(Result::ok).collect();
            print!("{}", render_frontends(&read_frontends(&maps), &backends));
        }
        Command::Backends => {
            let mut backends: Vec<(u32, Backend)> =
                maps.lb.backends.iter().filter_map(Result::ok).collect();
            backends.sort_by_key(|(id, _)| *id);
            println!("{:<6} {:<24} {:<4} STATE", "ID", "ADDRESS", "PROTO");
            for (id, b) in backends {
                println!(
                    "{id:<6} {:<24} {:<4} {}",
                    endpoint(b.address, b.port),
                    proto_name(b.proto),
                    backend_label(id, Some(&b))
                        .split_once('(')
                        .map(|(_, rest)| rest.trim_end_matches(')'))
                        .unwrap_or_default()
                );
            }
        }
        Command::Conntrack { .. } => {
            let names = Names::read(&maps.lb);
            let now = monotonic_ns();
            let mut entries: Vec<(CtKey, CtValue)> =
                maps.state.conntrack.iter().filter_map(Result::ok).collect();
            entries.sort_by_key(|(k, _)| *k);
            for (key, value) in &entries {
                println!("{}", render_ct(key, value, &names, now));
            }
            println!("{} entries", entries.len());
        }
        Command::Affinity { .. } => {
            let names = Names::read(&maps.lb);
            let now = monotonic_ns();
            for entry in maps.state.affinity.iter().filter_map(Result::ok) {
                let (key, value) = entry;
                let client = if key.kind == skiff_ebpf_common::affinity::CLIENT_NETNS {
                    format!("netns {}", key.client)
                } else {
                    ip_from_be(key.client as u32).to_string()
                };
                println!(
                    "{client} → service {} backend {} (used {}s ago)",
                    names.frontend(key.service_id),
                    names.backend(value.backend_id),
                    now.saturating_sub(value.last_used) / 1_000_000_000
                );
            }
        }
        Command::Maglev { service_id } => {
            let names = Names::read(&maps.lb);
            let table = maps
                .lb
                .maglev
                .get(&service_id, 0)
                .map_err(map_error(skiff_ebpf_common::maglev::MAGLEV_MAP))?;
            let mut shares: BTreeMap<u32, usize> = BTreeMap::new();
            let mut size = 0;
            for id in table.iter().filter_map(Result::ok) {
                size += 1;
                *shares.entry(id).or_default() += 1;
            }
            println!(
                "service {} Maglev table, M = {size}",
                names.frontend(service_id)
            );
            for (id, count) in shares {
                println!(
                    "  {:<24} {count:>6} slots ({:.1}%)",
                    if id == 0 {
                        "(empty)".to_owned()
                    } else {
                        names.backend(id)
                    },
                    100.0 * count as f64 / size.max(1) as f64
                );
            }
        }
        Command::Counters => {
            let mut out = String::new();
            stats::render_kernel_counters(&mut out, &stats::kernel_counters(&maps.state));
            print!("{out}");
        }
        Command::Config { socket_lb, xdp } => {
            let config = maps.config.update(|c| {
                for (switch, flag) in [(socket_lb, CONFIG_SOCKET_LB), (xdp, CONFIG_XDP)] {
                    match switch {
                        Some(Switch::On) => c.flags |= flag,
                        Some(Switch::Off) => c.flags &= !flag,
                        None => {}
                    }
                }
            })?;
            let on = |flag| {
                if config.flags & flag != 0 {
                    "on"
                } else {
                    "off"
                }
            };
            println!("socket-lb: {}", on(CONFIG_SOCKET_LB));
            println!("xdp: {}", on(CONFIG_XDP));
            println!("node address: {}", ip_from_be(config.node_address));
            println!("hairpin address: {}", ip_from_be(config.hairpin_address));
            println!("maglev table size: {}", config.maglev_table_size);
        }
        Command::Monitor { seconds, count } => {
            stream(&mut maps, None, seconds.map(Duration::from_secs), count)?;
        }
        Command::Trace {
            addresses,
            port,
            proto,
            seconds,
            count,
        } => {
            if addresses.len() > 2 {
                return Err(DatapathError::Setting(
                    "trace follows one flow: give at most two --addr".to_owned(),
                ));
            }
            let filter = TraceFilter {
                addr_a: addresses.first().map_or(0, |a| u32::from(*a).to_be()),
                addr_b: addresses.get(1).map_or(0, |a| u32::from(*a).to_be()),
                port: port.map_or(0, u16::to_be),
                proto: match proto {
                    Some(Proto::Tcp) => PROTO_TCP,
                    Some(Proto::Udp) => PROTO_UDP,
                    None => 0,
                },
                pad: 0,
            };
            stream(
                &mut maps,
                Some(filter),
                Some(Duration::from_secs(seconds)),
                count,
            )?;
        }
    }
    Ok(())
}

/// How far ahead the event deadline is pushed; a killed CLI stops events after this.
const DEADLINE_AHEAD: Duration = Duration::from_secs(3);

/// Read events until the duration or count is reached (monitor without a filter, trace
/// with one), keeping the kernel's deadline ahead of now.
fn stream(
    maps: &mut Maps,
    filter: Option<TraceFilter>,
    duration: Option<Duration>,
    count: Option<usize>,
) -> Result<(), DatapathError> {
    let mut names = Names::read(&maps.lb);
    // Events a previous session left unread are not this session's.
    while maps.events.next().is_some() {}
    let started = Instant::now();
    let start_ns = monotonic_ns();
    let mut seen = 0usize;
    let mut last_push = None::<Instant>;
    let arm = |maps: &mut Maps, until: u64| {
        maps.config.update(|c| match filter {
            Some(f) => {
                c.trace = f;
                c.trace_until = until;
            }
            None => c.monitor_until = until,
        })
    };
    let result = loop {
        if duration.is_some_and(|d| started.elapsed() >= d) || count.is_some_and(|c| seen >= c) {
            break Ok(());
        }
        if last_push.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let until = monotonic_ns() + DEADLINE_AHEAD.as_nanos() as u64;
            if let Err(e) = arm(maps, until) {
                break Err(e);
            }
            last_push = Some(Instant::now());
        }
        let mut any = false;
        while let Some(item) = maps.events.next() {
            any = true;
            if item.len() < std::mem::size_of::<Event>() {
                continue;
            }
            // SAFETY: the kernel wrote an `Event` (plain integers, any bit pattern valid)
            // of at least this size; read_unaligned copes with the ring's alignment.
            let event: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            if event.timestamp < start_ns {
                continue;
            }
            if names.missing(&event) {
                // A Service or backend newer than the snapshot.
                names = Names::read(&maps.lb);
            }
            let line = render_event(&event, start_ns, &|id| names.backend(id), &|id| {
                names.frontend(id)
            });
            println!("{line}");
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                break;
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let _ = arm(maps, 0);
    result
}

#[cfg(test)]
mod tests {
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
