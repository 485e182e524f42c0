//! Attaching the programs, each through a bpf_link pinned under `<pins>/links/`, so the
//! datapath stays attached while the agent is down and a restarted (or upgraded) agent
//! swaps its programs in without a gap:
//!
//! - cgroup socket hooks: the new link is attached beside the old one (cgroup links
//!   coexist), then its pin replaces the old pin, which detaches the old link.
//! - tc (TCX) and XDP: the pinned link is updated in place to the new program
//!   (`bpf_link_update`); a pin whose interface is gone is replaced by a fresh link.
//!
//! Kernels without TCX (< 6.6) get tc through a clsact qdisc and netlink, which cannot be
//! pinned: the filter stays attached after the agent exits and is replaced at its next
//! start.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use aya::programs::{
    CgroupAttachMode, CgroupSock, CgroupSockAddr, LinkOrder, SchedClassifier, TcAttachType, Xdp,
    XdpMode,
    links::{FdLink, LinkError, PinnedLink},
    tc::{self, TcAttachOptions},
    xdp::XdpLink,
};
use tracing::{info, warn};

use super::{Datapath, DatapathError};

/// The socket-LB programs, in attach order.
pub const SOCKET_PROGRAMS: [&str; 4] = ["connect4", "sendmsg4", "recvmsg4", "getpeername4"];
/// The socket-LB program that removes a closed socket's reverse entry.
pub const SOCKET_RELEASE: &str = "sock_release";
/// tc program for the underlay interface.
pub const TC_EXTERNAL: &str = "tc_external";
/// tc program for pod veths.
pub const TC_POD: &str = "tc_pod";
/// XDP program for the underlay interface.
pub const XDP_EXTERNAL: &str = "xdp_external";
/// Pin the cgroup link of program `name` as `cgroup-<name>` in `dir`. Replacing the old
/// pin drops the last reference to the previous agent's link, which detaches it; the new
/// link is already attached.
fn pin_cgroup_link(link: FdLink, dir: &Path, name: &'static str) -> Result<(), DatapathError> {
    pin_replacing(link, &dir.join(format!("cgroup-{name}")), name)
}

/// Pin `link` at `path`; an old pin there is replaced only once the new one exists, so the
/// old link (detached when its last reference, the pin, goes) outlives the moment the new
/// one is attached. bpffs reserves dots in names, hence `-new`.
fn pin_replacing(link: FdLink, path: &Path, program: &'static str) -> Result<(), DatapathError> {
    let link_error = |e: aya::pin::PinError| DatapathError::Link {
        program,
        reason: e.to_string(),
    };
    if !path.exists() {
        link.pin(path).map_err(link_error)?;
        return Ok(());
    }
    let mut staged = path.as_os_str().to_owned();
    staged.push("-new");
    let staged = PathBuf::from(staged);
    let _ = std::fs::remove_file(&staged);
    let pinned = link.pin(&staged).map_err(link_error)?;
    std::fs::rename(&staged, path).map_err(io_error("replacing pinned link", path))?;
    drop(pinned);
    Ok(())
}

/// An error with its sources (aya's syscall errors keep the errno in the source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Prefix of the pinned tc links of pod veths.
const POD_LINK_PREFIX: &str = "tc-pod-";

fn program_error(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> DatapathError {
    move |source| DatapathError::Program {
        program,
        source: Box::new(source),
    }
}

fn link_error(program: &'static str) -> impl Fn(LinkError) -> DatapathError {
    move |e| DatapathError::Link {
        program,
        reason: e.to_string(),
    }
}

fn io_error(what: &'static str, path: &Path) -> impl Fn(io::Error) -> DatapathError {
    let path = path.to_path_buf();
    move |source| DatapathError::Io {
        what,
        path: path.clone(),
        source,
    }
}

/// How the underlay interface's XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttach {
    /// In the driver where it supports XDP, generic (skb) mode otherwise.
    Best,
    /// Generic mode only.
    Generic,
}

impl Datapath {
    fn links_dir(&self) -> Result<Option<PathBuf>, DatapathError> {
        let Some(pins) = &self.pin_dir else {
            return Ok(None);
        };
        let dir = pins.join("links");
        std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        Ok(Some(dir))
    }

    /// Attach the socket LB (connect4, sendmsg4, recvmsg4, getpeername4, and
    /// sock_release, which removes a closed socket's reverse entry) to the cgroup2
    /// directory `cgroup`, so it applies to every process below it.
    pub fn attach_socket_lb(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        let links = self.links_dir()?;
        let open_cgroup = || File::open(cgroup).map_err(io_error("opening cgroup", cgroup));
        for name in SOCKET_PROGRAMS {
            let program: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or(DatapathError::Missing(name))?
                .try_into()
                .map_err(program_error(name))?;
            program.load().map_err(program_error(name))?;
            // bpf_link attachments (kernel ≥ 5.7) coexist on a cgroup, which lets the new
            // agent attach before the old one's link goes.
            let id = program
                .attach(open_cgroup()?, CgroupAttachMode::Single)
                .map_err(program_error(name))?;
            if let Some(dir) = &links {
                let link = program.take_link(id).map_err(program_error(name))?;
                pin_cgroup_link(link.try_into().map_err(link_error(name))?, dir, name)?;
            }
        }
        let name = SOCKET_RELEASE;
        let program: &mut CgroupSock = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::Missing(name))?
            .try_into()
            .map_err(program_error(name))?;
        program.load().map_err(program_error(name))?;
        let id = program
            .attach(open_cgroup()?, CgroupAttachMode::Single)
            .map_err(program_error(name))?;
        if let Some(dir) = &links {
            let link = program.take_link(id).map_err(program_error(name))?;
            pin_cgroup_link(link.try_into().map_err(link_error(name))?, dir, name)?;
        }
        Ok(())
    }

    fn load_classifier(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DatapathError> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::Missing(name))?
            .try_into()
            .map_err(program_error(name))?;
        if program.fd().is_err() {
            program.load().map_err(program_error(name))?;
        }
        Ok(program)
    }

    /// Attach tc program `name` at ingress of `interface`, its link pinned at `pin`.
    fn attach_tc(
        &mut self,
        name: &'static str,
        interface: &str,
        pin: Option<PathBuf>,
    ) -> Result<(), DatapathError> {
        let program = self.load_classifier(name)?;
        let program_id = program.info().map(|i| i.id()).ok();
        // A pinned link this run cannot update in place stays attached until the new link
        // is: removing it first would leave the interface without a program for a moment
        // (untranslated Service packets, replies without reverse NAT).
        let mut replaces_pin = false;
        if let Some(path) = &pin {
            match PinnedLink::from_pin(path) {
                Ok(pinned) => {
                    let fd = FdLink::from(pinned);
                    if fd.info().ok().map(|i| i.program_id()) == program_id {
                        // Already running this very program (attached earlier this run).
                        return Ok(());
                    }
                    let updated = tc::SchedClassifierLink::try_from(fd)
                        .map_err(|e| error_chain(&e))
                        .and_then(|link| program.attach_to_link(link).map_err(|e| error_chain(&e)));
                    match updated {
                        Ok(_) => return Ok(()),
                        Err(e) => {
                            warn!(program = name, %interface, error = %e, "the pinned tc link cannot be updated; attaching a new one before the old one goes");
                            replaces_pin = true;
                        }
                    }
                }
                Err(LinkError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {
                }
                Err(e) => {
                    warn!(program = name, pin = %path.display(), error = %e, "unreadable tc link pin; replacing it");
                    replaces_pin = true;
                }
            }
        }
        // First in the chain: while the old link is still there, the new program decides.
        let order = if replaces_pin {
            LinkOrder::first()
        } else {
            LinkOrder::default()
        };
        let tcx = program.attach_with_options(
            interface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(order),
        );
        let id = match tcx {
            Ok(id) => id,
            Err(e) => {
                // No TCX (kernel < 6.6): clsact + netlink, not pinnable.
                info!(program = name, %interface, error = %e, "TCX unavailable; attaching through clsact");
                let _ = tc::qdisc_add_clsact(interface);
                program
                    .attach(interface, TcAttachType::Ingress)
                    .map_err(program_error(name))?;
                return Ok(());
            }
        };
        if let Some(path) = pin {
            let link: FdLink = program
                .take_link(id)
                .map_err(program_error(name))?
                .try_into()
                .map_err(link_error(name))?;
            pin_replacing(link, &path, name)?;
        }
        Ok(())
    }

    /// Attach the per-packet path for traffic arriving from outside (tc ingress) and the
    /// NodePort acceleration (XDP) on the underlay interface.
    pub fn attach_external(
        &mut self,
        interface: &str,
        xdp: XdpAttach,
    ) -> Result<(), DatapathError> {
        let links = self.links_dir()?;
        self.attach_tc(
            TC_EXTERNAL,
            interface,
            links
                .as_ref()
                .map(|d| d.join(format!("tc-external-{interface}"))),
        )?;
        self.attach_xdp(
            interface,
            xdp,
            links.map(|d| d.join(format!("xdp-{interface}"))),
        )
    }

    fn attach_xdp(
        &mut self,
        interface: &str,
        mode: XdpAttach,
        pin: Option<PathBuf>,
    ) -> Result<(), DatapathError> {
        let name = XDP_EXTERNAL;
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::Missing(name))?
            .try_into()
            .map_err(program_error(name))?;
        program.load().map_err(program_error(name))?;
        if let Some(path) = &pin {
            match PinnedLink::from_pin(path) {
                Ok(pinned) => {
                    let fd = FdLink::from(pinned);
                    let updated = XdpLink::try_from(fd)
                        .map_err(|e| e.to_string())
                        .and_then(|link| program.attach_to_link(link).map_err(|e| e.to_string()));
                    match updated {
                        Ok(_) => return Ok(()),
                        Err(e) => {
                            warn!(%interface, error = %e, "the pinned XDP link cannot be updated; attaching afresh");
                            let _ = std::fs::remove_file(path);
                        }
                    }
                }
                Err(LinkError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {
                }
                Err(e) => {
                    warn!(pin = %path.display(), error = %e, "unreadable XDP link pin; replacing it");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let attached = match mode {
            XdpAttach::Best => program.attach(interface, XdpMode::Driver).or_else(|e| {
                info!(%interface, error = %e, "native XDP unavailable; using generic XDP");
                program.attach(interface, XdpMode::Skb)
            }),
            XdpAttach::Generic => program.attach(interface, XdpMode::Skb),
        };
        let id = attached.map_err(program_error(name))?;
        if let Some(path) = pin {
            let link: FdLink = program
                .take_link(id)
                .map_err(program_error(name))?
                .try_into()
                .map_err(link_error(name))?;
            link.pin(&path).map_err(|e| DatapathError::Link {
                program: name,
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Attach the pod-side tc program at ingress of a pod's host veth.
    pub fn attach_pod(&mut self, veth: &str) -> Result<(), DatapathError> {
        let pin = self
            .links_dir()?
            .map(|d| d.join(format!("{POD_LINK_PREFIX}{veth}")));
        self.attach_tc(TC_POD, veth, pin)
    }

    /// Forget the pinned link of a pod veth that was removed.
    pub fn detach_pod(&mut self, veth: &str) -> Result<(), DatapathError> {
        if let Some(dir) = self.links_dir()? {
            let path = dir.join(format!("{POD_LINK_PREFIX}{veth}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing pinned link", &path)(e)),
            }
        }
        Ok(())
    }

    /// The veths with a pinned pod link (to re-attach or forget at start).
    pub fn pinned_pod_veths(&self) -> Vec<String> {
        let Some(pins) = &self.pin_dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(pins.join("links")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix(POD_LINK_PREFIX)
                    .map(str::to_owned)
            })
            .collect()
    }
}
