//! The four modes over N threads sharing a request budget, a deadline and a pace.

use std::{
    net::{TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    Args, Mode, Protocol,
    exchange::{self, kind},
    report::Report,
};

/// What every thread shares.
struct Budget {
    deadline: Instant,
    remaining: Option<AtomicU64>,
    /// Interval between one thread's requests when paced.
    interval: Option<Duration>,
}

impl Budget {
    /// Whether another request may start.
    fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// Sleep until a thread's next paced start.
fn pace(next: &mut Instant, interval: Option<Duration>) {
    if let Some(interval) = interval {
        let now = Instant::now();
        if *next > now {
            thread::sleep(*next - now);
        }
        *next += interval;
    }
}

/// Run the mode and merge every thread's report.
pub fn run(args: &Args) -> Report {
    let started = Instant::now();
    let threads = if matches!(args.mode, Mode::Probe | Mode::Wait) {
        1
    } else {
        args.connections
    };
    let budget = Arc::new(Budget {
        deadline: started + Duration::from_secs_f64(args.duration),
        remaining: args
            .requests
            .or((args.mode == Mode::Probe).then_some(100))
            .map(AtomicU64::new),
        interval: args
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(threads as f64 / r)),
    });
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let args = args.clone();
            let budget = budget.clone();
            thread::spawn(move || match args.mode {
                Mode::Probe => probe(&args, &budget),
                Mode::Rr => rr(&args, &budget),
                Mode::Crr => crr(&args, &budget),
                Mode::Stream => stream(&args, &budget),
                Mode::Wait => wait(&args, &budget),
            })
        })
        .collect();
    let mut total = Report::new();
    for handle in handles {
        match handle.join() {
            Ok(report) => total.merge(report),
            Err(_) => total.failure("thread panicked".to_owned()),
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// One fresh exchange per request, recording the backend and the socket's peer.
fn probe(args: &Args, budget: &Budget) -> Report {
    let mut report = Report::new();
    let mut buffer = Vec::new();
    let mut datagram = [0u8; 2048];
    while budget.take() {
        let start = Instant::now();
        let result = match args.protocol {
            Protocol::Udp => exchange::udp_socket(args.timeout()).and_then(|socket| {
                exchange::udp_exchange(&socket, args.target, &mut datagram)
                    .map(|(name, from)| (name, from.to_string()))
            }),
            _ => exchange::connect(args.target, args.timeout(), args.local_ports).and_then(
                |mut stream| {
                    let peer = stream.peer_addr()?.to_string();
                    let name = if args.protocol == Protocol::Http {
                        exchange::http_get(&mut stream, &mut buffer)?
                    } else {
                        let payload = vec![b'x'; args.size.max(1)];
                        let mut back = vec![0u8; payload.len()];
                        exchange::echo(&mut stream, &payload, &mut back)?;
                        String::new()
                    };
                    Ok((name, peer))
                },
            ),
        };
        match result {
            Ok((name, peer)) => {
                report.success(start.elapsed());
                if !name.is_empty() {
                    *report.backends.entry(name).or_default() += 1;
                }
                report.peers.insert(peer);
            }
            Err(e) => report.failure(kind(&e)),
        }
        if args.interval_ms > 0 {
            thread::sleep(Duration::from_millis(args.interval_ms));
        }
    }
    report
}

/// Request/response on one connection per thread (reconnecting after failures, and after
/// every `--reconnect-every` exchanges). Only exchanges are timed, not the connects.
fn rr(args: &Args, budget: &Budget) -> Report {
    let mut report = Report::new();
    let payload = vec![b'x'; args.size.max(1)];
    let mut back = vec![0u8; payload.len()];
    let mut buffer = Vec::new();
    let mut datagram = [0u8; 2048];
    let mut next = Instant::now();
    let mut tcp: Option<TcpStream> = None;
    let mut udp: Option<UdpSocket> = None;
    let mut on_this_connection = 0u64;
    while budget.take() {
        pace(&mut next, budget.interval);
        if args
            .reconnect_every
            .is_some_and(|n| on_this_connection >= n)
        {
            (tcp, udp, on_this_connection) = (None, None, 0);
        }
        let result = if args.protocol == Protocol::Udp {
            let socket = match udp.take() {
                Some(s) => Ok(s),
                None => exchange::udp_socket(args.timeout()).and_then(|s| {
                    s.connect(args.target_of(new_connection()))?;
                    Ok(s)
                }),
            };
            socket.and_then(|s| {
                let start = Instant::now();
                let result = exchange::udp_connected_exchange(&s, &mut datagram);
                // A lost datagram is UDP's normal weather: keep the socket (and its
                // backend). Any other error (the socket was destroyed, the destination is
                // unreachable) means a new socket, connected afresh through the Service.
                let keep = match &result {
                    Ok(_) => true,
                    Err(e) => matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ),
                };
                if keep {
                    udp = Some(s);
                }
                result.map(|name| (name, start.elapsed()))
            })
        } else {
            let stream = match tcp.take() {
                Some(s) => Ok(s),
                None => exchange::connect(
                    args.target_of(new_connection()),
                    args.timeout(),
                    args.local_ports,
                ),
            };
            stream.and_then(|mut s| {
                let start = Instant::now();
                let name = if args.protocol == Protocol::Http {
                    exchange::http_get(&mut s, &mut buffer)?
                } else {
                    exchange::echo(&mut s, &payload, &mut back)?;
                    String::new()
                };
                tcp = Some(s);
                Ok((name, start.elapsed()))
            })
        };
        match result {
            Ok((name, took)) => {
                on_this_connection += 1;
                report.success(took);
                if !name.is_empty() {
                    *report.backends.entry(name).or_default() += 1;
                }
            }
            Err(e) => {
                if tcp.is_none() && udp.is_none() {
                    on_this_connection = 0;
                }
                report.failure(kind(&e));
            }
        }
    }
    report
}

/// Connections opened by `rr` and `crr` so far, over all threads (picks each one's target).
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// The number of a new connection (for [`Args::target_of`]).
fn new_connection() -> usize {
    CONNECTIONS.fetch_add(1, Ordering::Relaxed)
}

/// Connect, one request, close — per request (TCP_CRR).
fn crr(args: &Args, budget: &Budget) -> Report {
    let mut report = Report::new();
    let payload = vec![b'x'; args.size.max(1)];
    let mut back = vec![0u8; payload.len()];
    let mut buffer = Vec::new();
    let mut next = Instant::now();
    while budget.take() {
        pace(&mut next, budget.interval);
        let start = Instant::now();
        let target = args.target_of(new_connection());
        let result =
            exchange::connect(target, args.timeout(), args.local_ports).and_then(|mut s| {
                if args.protocol == Protocol::Http {
                    exchange::http_get_closing(&mut s, &mut buffer)
                } else {
                    exchange::echo(&mut s, &payload, &mut back).map(|()| String::new())
                }
            });
        match result {
            Ok(name) => {
                report.success(start.elapsed());
                if !name.is_empty() {
                    *report.backends.entry(name).or_default() += 1;
                }
            }
            Err(e) => report.failure(kind(&e)),
        }
    }
    report
}

/// Bulk: blocks of `--size` bytes echoed back, per thread, on one connection.
fn stream(args: &Args, budget: &Budget) -> Report {
    let mut report = Report::new();
    let size = args.size.max(64 * 1024);
    let payload = vec![b'x'; size];
    let mut back = vec![0u8; size];
    let mut connection = None;
    while budget.take() {
        let start = Instant::now();
        let stream = match connection.take() {
            Some(s) => Ok(s),
            None => exchange::connect(args.target, args.timeout(), args.local_ports),
        };
        match stream.and_then(|mut s| exchange::echo(&mut s, &payload, &mut back).map(|()| s)) {
            Ok(s) => {
                report.success(start.elapsed());
                report.bytes += size as u64;
                connection = Some(s);
            }
            Err(e) => report.failure(kind(&e)),
        }
    }
    report
}

/// Retry every millisecond until one exchange succeeds.
fn wait(args: &Args, budget: &Budget) -> Report {
    let mut report = Report::new();
    let mut buffer = Vec::new();
    let mut datagram = [0u8; 2048];
    while budget.take() {
        let result = match args.protocol {
            Protocol::Udp => exchange::udp_socket(Duration::from_millis(50))
                .and_then(|s| exchange::udp_exchange(&s, args.target, &mut datagram).map(drop)),
            _ => exchange::connect(args.target, Duration::from_millis(200), args.local_ports)
                .and_then(|mut s| {
                    if args.protocol == Protocol::Http {
                        exchange::http_get(&mut s, &mut buffer).map(drop)
                    } else {
                        let payload = [b'x'; 8];
                        let mut back = [0u8; 8];
                        exchange::echo(&mut s, &payload, &mut back)
                    }
                }),
        };
        match result {
            Ok(()) => {
                report.ok += 1;
                report.succeeded_at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_micros() as u64);
                break;
            }
            Err(e) => {
                report.failure(kind(&e));
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    report
}
