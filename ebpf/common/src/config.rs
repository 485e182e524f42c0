//! Runtime settings of the datapath, one entry of the `CONFIG` array the agent writes at
//! start (from its flags) and the inspection CLI changes live (monitor/trace, switches):
//! runtime flags instead of compile-time variants of the programs.

/// Name of the config map.
pub const CONFIG_MAP: &str = "CONFIG";

/// The cgroup socket hooks translate Service addresses (`--socket-lb`).
pub const CONFIG_SOCKET_LB: u32 = 1 << 0;
/// The XDP program on the external interface handles NodePort/LB traffic
/// (`--nodeport-acceleration=xdp`); otherwise it passes everything to tc.
pub const CONFIG_XDP: u32 = 1 << 1;

/// A flow filter for `trace`: zero fields match anything. A packet matches in either
/// direction (so replies are traced too).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// Address of one end (network byte order), 0: any.
    pub addr_a: u32,
    /// Address of the other end (network byte order), 0: any.
    pub addr_b: u32,
    /// Port of either end (network byte order), 0: any.
    pub port: u16,
    /// Protocol, 0: any.
    pub proto: u8,
    /// Explicit padding; always 0.
    pub pad: u8,
}

/// The one value of the `CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `CONFIG_*` flags.
    pub flags: u32,
    /// The node's address: SNAT source for external traffic sent to another node's backend.
    pub node_address: u32,
    /// Source address for hairpin flows (a pod reaching itself through its Service).
    pub hairpin_address: u32,
    /// Maglev table size M.
    pub maglev_table_size: u32,
    /// Emit translation and drop events until this monotonic time (ns); 0: never. The
    /// `monitor` CLI keeps pushing it forward while it runs, so events stop by themselves.
    pub monitor_until: u64,
    /// Emit every decision about flows matching `trace` until this time (ns).
    pub trace_until: u64,
    /// The flow `trace` follows.
    pub trace: TraceFilter,
    /// Explicit padding; always 0.
    pub pad: u32,
}

const _: () = assert!(core::mem::size_of::<TraceFilter>() == 12);
const _: () = assert!(core::mem::size_of::<Config>() == 48);

impl TraceFilter {
    /// Whether a packet `saddr:sport → daddr:dport` matches, in either direction.
    #[inline(always)]
    #[must_use]
    pub fn matches(&self, saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> bool {
        if self.proto != 0 && self.proto != proto {
            return false;
        }
        if self.port != 0 && self.port != sport && self.port != dport {
            return false;
        }
        let end = |want: u32| want == 0 || want == saddr || want == daddr;
        end(self.addr_a) && end(self.addr_b)
    }
}
