//! skiff-load: the load generator of Skiff's datapath tests and benchmarks.
//!
//! Modes (netperf's names):
//! - `probe`: N sequential exchanges, one connection (or datagram) each, recording which
//!   backend answered and the peer address the socket reports — for distribution and
//!   getpeername checks.
//! - `rr`: request/response on long-lived connections (TCP_RR), or datagrams (UDP_RR).
//! - `crr`: connect, one request, close (TCP_CRR) — the connection rate.
//! - `stream`: bulk TCP for throughput.
//! - `wait`: retry until the target answers, reporting the wall-clock time it first did.
//!
//! Every run is bounded (`--duration` or `--requests`, a per-operation timeout) and may
//! only target the lab's addresses. One JSON object is printed on stdout.

mod exchange;
mod modes;
mod ports;
mod report;
mod targets;

use std::{net::SocketAddrV4, process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Sequential single exchanges, recording the answering backend.
    Probe,
    /// Request/response on reused connections (TCP_RR / UDP_RR).
    Rr,
    /// Connect, request, close (TCP_CRR).
    Crr,
    /// Bulk TCP throughput.
    Stream,
    /// Try one exchange every millisecond until one succeeds (or `--duration` passes);
    /// reports when (`succeeded_at_unix_us`) — for measuring programming latency.
    Wait,
}

/// The application protocol spoken to the target (skiff-echo's three servers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// `GET /` over HTTP/1.1 (skiff-echo :8080 answers its hostname).
    Http,
    /// Raw TCP echo of `--size` bytes (skiff-echo :9000).
    Echo,
    /// One UDP datagram, answered with the hostname (skiff-echo :9001).
    Udp,
}

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "skiff-load",
    version,
    about = "Load generator for Skiff's datapath (lab addresses only)"
)]
pub struct Args {
    /// What to run.
    #[arg(value_enum)]
    pub mode: Mode,
    /// The address to load: a pod IP, cluster IP, node port or LoadBalancer address.
    #[arg(long)]
    pub target: SocketAddrV4,
    /// More addresses, taken in turn with `--target` for each new connection (rr, crr): a
    /// direct floor spread over the same pods a Service spreads its connections over.
    #[arg(long = "and-target")]
    pub more_targets: Vec<SocketAddrV4>,
    /// rr: open a new connection after this many exchanges on one (through the Service
    /// again, or to the next `--and-target`), so one run samples many backends.
    #[arg(long)]
    pub reconnect_every: Option<u64>,
    /// Local ports TCP connections may take, LOW-HIGH (default: the kernel's whole range).
    /// Paths measured one after another against the same backends need disjoint ranges;
    /// see `ports.rs`.
    #[arg(long)]
    pub local_ports: Option<ports::PortRange>,
    /// Protocol spoken to the target.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,
    /// Concurrent connections (threads).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Stop after this many seconds (with or without `--requests`).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many requests in total.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Pace to this many requests per second in total (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Request size in bytes (echo and stream).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Timeout of one connect, send or receive, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Pause between probe exchanges, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
}

impl Args {
    /// The address of the `n`th new connection: `--target` and `--and-target` in turn.
    pub fn target_of(&self, n: usize) -> SocketAddrV4 {
        match n % (1 + self.more_targets.len()) {
            0 => self.target,
            i => self.more_targets[i - 1],
        }
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    for target in std::iter::once(&args.target).chain(&args.more_targets) {
        if let Err(reason) = targets::check(*target.ip()) {
            eprintln!("skiff-load: refusing {target}: {reason}");
            return ExitCode::from(2);
        }
    }
    if !args.more_targets.is_empty() && !matches!(args.mode, Mode::Crr | Mode::Rr) {
        eprintln!("skiff-load: --and-target applies to rr and crr only");
        return ExitCode::from(2);
    }
    if args.reconnect_every == Some(0) {
        eprintln!("skiff-load: --reconnect-every must be at least 1");
        return ExitCode::from(2);
    }
    if !(0.0..=3600.0).contains(&args.duration) || args.connections == 0 || args.connections > 1024
    {
        eprintln!("skiff-load: --duration must be 0–3600 s and --connections 1–1024");
        return ExitCode::from(2);
    }
    if args.protocol == Protocol::Udp && matches!(args.mode, Mode::Crr | Mode::Stream) {
        eprintln!(
            "skiff-load: {:?} needs TCP; use --protocol http or echo",
            args.mode
        );
        return ExitCode::from(2);
    }
    let report = modes::run(&args);
    println!("{}", report.to_json(&args));
    ExitCode::SUCCESS
}
