//! `skiff-agent bpf …`: the datapath as a network engineer wants to see it, read from the
//! maps a running agent pinned — frontends with their backends (like `cilium bpf lb
//! list`), backends, conntrack, affinity, Maglev tables, counters — plus `monitor` (every
//! translation and drop, live) and `trace` (every decision about one flow, at every hook).
//! Events are only produced while one of those two runs: each keeps pushing a deadline
//! forward in the config map, so a killed CLI stops them within seconds.

//!
//! [`render`] turns map entries and events into text; [`stream`] runs `monitor`/`trace`.

mod render;
mod stream;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, Subcommand, ValueEnum};
use skiff_ebpf_common::{
    config::{CONFIG_SOCKET_LB, CONFIG_XDP, TraceFilter},
    conntrack::{CtKey, CtValue},
    lb::{Backend, PROTO_TCP, PROTO_UDP},
};

use render::{
    Names, backend_label, endpoint, frontends_json, proto_name, read_frontends, render_ct,
};
pub use render::{render_event, render_frontends};

use super::{
    DatapathError,
    conntrack_gc::monotonic_ns,
    maps::{Maps, map_error},
    model::ip_from_be,
    programs, stats,
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
    /// This node's eBPF programs: how often each ran and its CPU time per run.
    Programs {
        /// Count for this many seconds and show what ran meanwhile (the kernel only counts
        /// while run-time statistics are on; without this, totals since someone last
        /// turned them on).
        #[arg(long)]
        sample: Option<f64>,
    },
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
    List {
        /// `text` (a table) or `json` (one object per frontend, for scripts).
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// How a listing is printed.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Output {
    /// A table for people.
    #[default]
    Text,
    /// JSON for scripts.
    Json,
}

/// `ct`/`affinity` subcommands.
#[derive(Subcommand, Debug)]
pub enum ListCommand {
    /// List entries.
    List,
}

/// Run a `bpf` command, printing to stdout.
pub fn run(target: &Target, command: Command) -> Result<(), DatapathError> {
    let dir = target.dir()?;
    let mut maps = Maps::open_pinned(&dir)?;
    match command {
        Command::Lb {
            command: LbCommand::List { output },
        } => {
            let backends: HashMap<u32, Backend> =
                maps.lb.backends.iter().filter_map(Result::ok).collect();
            let frontends = read_frontends(&maps);
            match output {
                Output::Text => print!("{}", render_frontends(&frontends, &backends)),
                Output::Json => println!("{}", frontends_json(&frontends, &backends)),
            }
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
        Command::Programs { sample } => print!("{}", programs_table(&dir, sample)?),
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
            stream::stream(&mut maps, None, seconds.map(Duration::from_secs), count)?;
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
            stream::stream(
                &mut maps,
                Some(filter),
                Some(Duration::from_secs(seconds)),
                count,
            )?;
        }
    }
    Ok(())
}

/// `bpf programs`: per program, runs and run time, over a sample or in total.
fn programs_table(dir: &Path, sample: Option<f64>) -> Result<String, DatapathError> {
    let rows = match sample {
        Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
            let stats = programs::RunTimeStats::enable()?;
            let before = programs::node_programs(dir)?;
            std::thread::sleep(Duration::from_secs_f64(seconds));
            let after = programs::node_programs(dir)?;
            drop(stats);
            programs::difference(&before, &after)
        }
        Some(seconds) => {
            return Err(DatapathError::Setting(format!(
                "--sample {seconds}: give a number of seconds above 0"
            )));
        }
        None => programs::node_programs(dir)?,
    };
    let mut out = format!(
        "{:<7} {:<16} {:>12} {:>10} {:>12}\n",
        "ID", "NAME", "RUNS", "NS/RUN", "CPU MS"
    );
    for program in &rows {
        let per_run = program
            .run_time
            .as_nanos()
            .checked_div(u128::from(program.runs))
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<7} {:<16} {:>12} {per_run:>10} {:>12.3}",
            program.id,
            program.name,
            program.runs,
            program.run_time.as_secs_f64() * 1e3
        );
    }
    if sample.is_none() && rows.iter().all(|p| p.runs == 0) {
        out.push_str(
            "(the kernel counts only while run-time statistics are on: add --sample SECONDS)\n",
        );
    }
    Ok(out)
}
