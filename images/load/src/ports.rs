//! `--local-ports`: the ephemeral ports a run's TCP connections may take, through the
//! socket option `IP_LOCAL_PORT_RANGE` (Linux ≥ 6.3).
//!
//! Why a benchmark needs it: when two paths reach the same backend, one through a cluster
//! IP translated per packet and one straight to the pod, the kernel derives a connection's
//! timestamp offset and initial sequence number from the address the *socket* sees. A new
//! connection on a wire tuple the other path used a moment before then meets the
//! backend's TIME_WAIT with an older-looking timestamp; the backend answers with an ACK,
//! the client resets and retries its SYN (measured: 5% of connections, p99 12 ms instead of
//! 1 ms). Disjoint port ranges keep each path's wire tuples its own.

use std::{
    io,
    os::fd::AsRawFd,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
};

use socket2::Socket;

/// `IP_LOCAL_PORT_RANGE` from linux/in.h (not in every libc crate release).
const IP_LOCAL_PORT_RANGE: libc::c_int = 51;

/// Whether the missing-option warning was printed.
static WARNED: AtomicBool = AtomicBool::new(false);

/// An inclusive range of local ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port.
    pub low: u16,
    /// Highest port.
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (low, high) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?}: expected LOW-HIGH, e.g. 40000-42999"))?;
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port"))
        };
        let (low, high) = (parse(low)?, parse(high)?);
        if low == 0 || low > high {
            return Err(format!("{text:?}: need 1 ≤ LOW ≤ HIGH"));
        }
        Ok(Self { low, high })
    }
}

impl PortRange {
    /// Restrict `socket`'s automatic port choice to this range.
    pub fn apply(self, socket: &Socket) -> io::Result<()> {
        let value: u32 = (u32::from(self.high) << 16) | u32::from(self.low);
        // SAFETY: a valid fd and a pointer to a u32 of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                IP_LOCAL_PORT_RANGE,
                (&value as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOPROTOOPT) {
            // Before Linux 6.3: run on the kernel's whole range, and say so once.
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "skiff-load: this kernel has no IP_LOCAL_PORT_RANGE (Linux ≥ 6.3); \
                     --local-ports ignored"
                );
            }
            return Ok(());
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_say_why() {
        assert_eq!(
            "40000-42999".parse::<PortRange>(),
            Ok(PortRange {
                low: 40000,
                high: 42999
            })
        );
        assert!("42999-40000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!(
            "40000"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("LOW-HIGH")
        );
    }

    #[test]
    fn connections_take_ports_of_the_range() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let target = match listener.local_addr().expect("addr") {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => unreachable!("bound to IPv4"),
        };
        let range = PortRange {
            low: 47100,
            high: 47199,
        };
        let stream =
            crate::exchange::connect(target, std::time::Duration::from_secs(1), Some(range))
                .expect("connect");
        let port = stream.local_addr().expect("local").port();
        if !WARNED.load(Ordering::Relaxed) {
            assert!((47100..=47199).contains(&port), "port {port}");
        }
    }
}
