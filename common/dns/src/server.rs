//! Serving the zone over UDP and TCP (2-byte length-prefixed messages, several per
//! connection), forwarding names outside the cluster domain to an upstream when one is
//! configured. One bad datagram or frame never stops the server.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
};
use tracing::debug;

use crate::zone::{Resolution, Zone};

/// Where to listen and where to forward.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// UDP and TCP on each address.
    pub listen: Vec<SocketAddr>,
    /// Upstream for names outside the cluster domain (UDP); none: REFUSED.
    pub upstream: Option<SocketAddr>,
}

/// The resolver's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    queries: AtomicU64,
    forwarded: AtomicU64,
    /// Responses by rcode: NOERROR, NXDOMAIN, FORMERR, REFUSED, SERVFAIL, other.
    rcodes: [AtomicU64; 6],
}

const RCODES: [&str; 6] = [
    "NOERROR", "NXDOMAIN", "FORMERR", "REFUSED", "SERVFAIL", "OTHER",
];

impl Metrics {
    fn response(&self, bytes: &[u8]) {
        let Some(flags) = bytes.get(3) else { return };
        let index = match flags & 0x0f {
            0 => 0,
            3 => 1,
            1 => 2,
            5 => 3,
            2 => 4,
            _ => 5,
        };
        self.rcodes[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Append the counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP skiff_dns_queries_total Queries received by the node-local resolver."
        );
        let _ = writeln!(out, "# TYPE skiff_dns_queries_total counter");
        let _ = writeln!(
            out,
            "skiff_dns_queries_total {}",
            self.queries.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP skiff_dns_forwarded_total Queries relayed to the upstream."
        );
        let _ = writeln!(out, "# TYPE skiff_dns_forwarded_total counter");
        let _ = writeln!(
            out,
            "skiff_dns_forwarded_total {}",
            self.forwarded.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP skiff_dns_responses_total Responses by rcode.");
        let _ = writeln!(out, "# TYPE skiff_dns_responses_total counter");
        for (name, count) in RCODES.iter().zip(&self.rcodes) {
            let _ = writeln!(
                out,
                "skiff_dns_responses_total{{rcode=\"{name}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
}

/// Most TCP connections served at once.
const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long the upstream has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

struct Shared {
    zone: Arc<RwLock<Zone>>,
    metrics: Arc<Metrics>,
    upstream: Option<SocketAddr>,
}

impl Shared {
    /// The response to `query` (empty: none), forwarding when needed.
    async fn respond(&self, query: &[u8], max_size: usize) -> Vec<u8> {
        self.metrics.queries.fetch_add(1, Ordering::Relaxed);
        let resolution = match self.zone.read() {
            Ok(zone) => zone.resolve(query, max_size, self.upstream.is_some()),
            Err(_) => return Vec::new(),
        };
        let bytes = match resolution {
            Resolution::Reply(bytes) => bytes,
            Resolution::Forward => self.forward(query).await,
        };
        self.metrics.response(&bytes);
        bytes
    }

    async fn forward(&self, query: &[u8]) -> Vec<u8> {
        self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
        let servfail = || {
            let mut reply = query.get(..12).map(<[u8]>::to_vec).unwrap_or_default();
            if reply.len() == 12 {
                reply[2] |= 0x80; // response
                reply[3] = (reply[3] & 0xf0) | 2; // SERVFAIL
                reply[4..12].fill(0);
            }
            reply
        };
        let Some(upstream) = self.upstream else {
            return servfail();
        };
        let relay = async {
            let socket = UdpSocket::bind(if upstream.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            })
            .await?;
            socket.connect(upstream).await?;
            socket.send(query).await?;
            let mut buf = vec![0u8; 65535];
            let n = socket.recv(&mut buf).await?;
            buf.truncate(n);
            std::io::Result::Ok(buf)
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, relay).await {
            Ok(Ok(reply)) if reply.len() >= 12 && reply[..2] == query[..2] => reply,
            _ => servfail(),
        }
    }
}

/// Serve `zone` until the future is dropped. Binding errors are returned at once.
pub async fn serve(
    config: ServerConfig,
    zone: Arc<RwLock<Zone>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        zone,
        metrics,
        upstream: config.upstream,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for addr in &config.listen {
        let udp = Arc::new(UdpSocket::bind(addr).await?);
        let tcp = TcpListener::bind(addr).await?;
        tasks.spawn(serve_udp(udp, shared.clone()));
        tasks.spawn(serve_tcp(tcp, shared.clone()));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                debug!(error = %e, "dns: udp receive failed");
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let socket = socket.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let reply = shared.respond(&query, 512).await;
            if !reply.is_empty() {
                let _ = socket.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // over the limit: the connection is dropped
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tcp_connection(stream, &shared).await;
            drop(permit);
        });
    }
}

async fn tcp_connection(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    loop {
        let mut length = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut length)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let reply = shared.respond(&query, 65535).await;
        if reply.is_empty() {
            return Ok(());
        }
        let Ok(len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&reply).await?;
    }
}
