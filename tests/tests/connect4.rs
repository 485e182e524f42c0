//! The eBPF toolchain end to end: the embedded connect4 program loads into the real kernel,
//! attaches to a cgroup, and a process in that cgroup that connects to a service VIP
//! reaches the backend the agent programmed — while the same connect without a service
//! entry fails. Runs in a scratch network namespace with only loopback, so a missed
//! rewrite can never send a packet anywhere.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::Command,
    sync::mpsc,
    time::Duration,
};

use skiff_agent::datapath::{
    self, Datapath, MapSizes, Settings,
    desired::{DesiredBackend, DesiredFrontend},
    model::{Address, FrontendKey, Protocol, Scope},
    table::{MaglevSettings, Table},
};
use skiff_ebpf_common::lb::{BACKEND_ACTIVE, SVC_CLUSTER_IP};
use skiff_tests::{cgroup2_mount, netns::ScratchNetns, process, require_root};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 77, 7);

/// A cgroup2 directory removed when dropped.
struct ScratchCgroup(PathBuf);

impl ScratchCgroup {
    fn new(tag: &str) -> Self {
        let root = cgroup2_mount().expect("no cgroup2 hierarchy mounted");
        let dir = root.join(format!("skiff-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the test cgroup");
        Self(dir)
    }
}

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Listeners on 127.0.0.1 inside `netns`, each answering the first line it reads with its
/// own name; every accepted connection's backend name is reported on the returned channel.
fn backends(netns: &str, names: &[&'static str]) -> (Vec<u16>, mpsc::Receiver<&'static str>) {
    let (tx, rx) = mpsc::channel();
    let mut ports = Vec::new();
    for name in names {
        let listener =
            skiff_tests::netns::run_in(netns, || TcpListener::bind("127.0.0.1:0").expect("bind"));
        ports.push(listener.local_addr().expect("local addr").port());
        let tx = tx.clone();
        let name = *name;
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 64];
                let _ = stream.read(&mut buf);
                let _ = writeln!(stream, "{name}");
                if tx.send(name).is_err() {
                    return;
                }
            }
        });
    }
    (ports, rx)
}

/// A bash script to run inside `cgroup` and `netns` (it joins the cgroup first: `ip netns
/// exec` remounts /sys).
fn in_cgroup(cgroup: &ScratchCgroup, netns: &str, script: &str) -> Command {
    let procs = cgroup.0.join("cgroup.procs");
    let wrapper = format!(
        "echo $$ > '{}' && exec ip netns exec '{netns}' bash -c \"$0\"",
        procs.display()
    );
    let mut command = Command::new("sh");
    command.args(["-c", &wrapper, script]);
    command
}

/// Run a bash script inside `cgroup` and `netns` and wait for it.
fn run_in_cgroup(cgroup: &ScratchCgroup, netns: &str, script: &str) -> process::Finished {
    process::output(&mut in_cgroup(cgroup, netns, script))
}

/// Start a bash script inside `cgroup` and `netns`, without waiting.
fn spawn_in_cgroup(cgroup: &ScratchCgroup, netns: &str, script: &str) -> std::process::Child {
    in_cgroup(cgroup, netns, script)
        .spawn()
        .expect("spawning sh")
}

/// Entries in the socket LB's reverse map.
fn reverse_entries(state: &datapath::maps::StateMaps) -> usize {
    state.sock_rev_nat.keys().filter(Result::is_ok).count()
}

#[test]
fn connect4_rewrites_a_service_vip_to_its_backends() {
    if !require_root() {
        return;
    }
    let netns = ScratchNetns::new("connect4");
    let cgroup = ScratchCgroup::new("connect4");
    let (ports, accepted) = backends(&netns.name, &["backend-a", "backend-b", "backend-c"]);

    let (mut datapath, mut maps) =
        Datapath::load(None, &MapSizes::default()).expect("loading the embedded eBPF object");
    datapath::configure(
        &mut maps,
        &Settings {
            socket_lb: true,
            xdp: false,
            node_address: Ipv4Addr::LOCALHOST,
            hairpin_address: Ipv4Addr::new(169, 254, 42, 1),
            maglev_table_size: 16_381,
        },
    )
    .expect("configuring the datapath");
    datapath
        .attach_socket_lb(&cgroup.0)
        .expect("attaching the socket LB to the test cgroup");
    let mut table = Table::load(
        maps.lb,
        MaglevSettings {
            table_size: 16_381,
            seed: datapath::maglev::DEFAULT_SEED,
        },
    )
    .expect("reading the (empty) maps");

    // Without a service entry the VIP is just an unroutable address: connect fails locally.
    let before = run_in_cgroup(&cgroup, &netns.name, &format!("exec 3<>/dev/tcp/{VIP}/80"));
    assert_ne!(
        before.code, 0,
        "connect to an unprogrammed VIP succeeded: {before:?}"
    );
    assert!(
        before.stderr.contains("unreachable"),
        "expected a local 'Network is unreachable', got: {}",
        before.stderr
    );

    let frontend = FrontendKey {
        address: Address {
            ip: VIP,
            port: 80,
            protocol: Protocol::Tcp,
        },
        scope: Scope::Internal,
    };
    let addresses: Vec<Address> = ports
        .iter()
        .map(|port| Address {
            ip: Ipv4Addr::LOCALHOST,
            port: *port,
            protocol: Protocol::Tcp,
        })
        .collect();
    let ids: Vec<u32> = addresses
        .iter()
        .map(|a| {
            table
                .set_backend(
                    *a,
                    DesiredBackend {
                        state: BACKEND_ACTIVE,
                        local: true,
                    },
                )
                .expect("programming a backend")
        })
        .collect();
    let desired = |slots: &[Address]| DesiredFrontend {
        key: frontend,
        flags: SVC_CLUSTER_IP,
        affinity_timeout: 0,
        slots: slots.to_vec(),
    };
    table
        .set_frontend(&desired(&addresses), &ids)
        .expect("programming the service");
    assert_eq!(table.count_in_map(&frontend), 3);

    // 30 connections to the VIP from inside the cgroup: every one answered by a backend,
    // each backend chosen at least once (P(missing one) = 3·(2/3)^30 ≈ 1.6e-5).
    let script = format!(
        "for i in $(seq 30); do exec 3<>/dev/tcp/{VIP}/80 || exit 9; echo hi >&3; read -r line <&3; echo \"$line\"; exec 3<&-; done"
    );
    let out = run_in_cgroup(&cgroup, &netns.name, &script);
    assert_eq!(out.code, 0, "connections through the VIP failed: {out:?}");
    let answers: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(answers.len(), 30, "expected 30 answers, got {answers:?}");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for _ in 0..30 {
        let name = accepted
            .recv_timeout(Duration::from_secs(5))
            .expect("a backend accepted");
        *seen.entry(name).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "not every backend was selected: {seen:?}");
    for answer in answers {
        assert!(seen.contains_key(answer), "unexpected answer {answer}");
    }

    // Every one of those sockets is closed: sock_release took its reverse entry with it.
    assert_eq!(
        reverse_entries(&maps.state),
        0,
        "closed sockets left reverse entries"
    );
    // An open connection keeps its entry until it closes.
    let mut held = spawn_in_cgroup(
        &cgroup,
        &netns.name,
        &format!("exec 3<>/dev/tcp/{VIP}/80 || exit 9; echo hi >&3; read -r line <&3; sleep 2"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while reverse_entries(&maps.state) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        reverse_entries(&maps.state),
        1,
        "an open connection has one reverse entry"
    );
    let status = held.wait().expect("waiting for the held connection");
    assert!(status.success(), "the held connection failed: {status}");
    assert_eq!(
        reverse_entries(&maps.state),
        0,
        "the closed connection's entry stayed"
    );

    // Shrinking to one backend removes the surplus slots; every connection then lands there.
    table
        .set_frontend(&desired(&addresses[..1]), &ids[..1])
        .expect("shrinking the service");
    assert_eq!(table.count_in_map(&frontend), 1);
    let out = run_in_cgroup(&cgroup, &netns.name, &script);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.lines().all(|l| l == "backend-a"),
        "{}",
        out.stdout
    );

    // Removing the service restores the original behaviour.
    table
        .remove_frontend(&frontend)
        .expect("removing the service");
    let after = run_in_cgroup(&cgroup, &netns.name, &format!("exec 3<>/dev/tcp/{VIP}/80"));
    assert_ne!(
        after.code, 0,
        "VIP still translated after removal: {after:?}"
    );
}

#[test]
fn a_full_map_refuses_loudly_and_keeps_what_it_had() {
    if !require_root() {
        return;
    }
    // Room for one frontend entry and three slots.
    let sizes = MapSizes {
        services: 4,
        ..MapSizes::default()
    };
    let (_datapath, maps) = Datapath::load(None, &sizes).expect("loading with tiny maps");
    let mut table = Table::load(
        maps.lb,
        MaglevSettings {
            table_size: 16_381,
            seed: datapath::maglev::DEFAULT_SEED,
        },
    )
    .expect("reading the (empty) maps");
    let frontend = FrontendKey {
        address: Address {
            ip: VIP,
            port: 80,
            protocol: Protocol::Tcp,
        },
        scope: Scope::Internal,
    };
    let addresses: Vec<Address> = (1..=5)
        .map(|i| Address {
            ip: Ipv4Addr::new(10, 244, 9, i),
            port: 8080,
            protocol: Protocol::Tcp,
        })
        .collect();
    let ids: Vec<u32> = addresses
        .iter()
        .map(|a| {
            table
                .set_backend(
                    *a,
                    DesiredBackend {
                        state: BACKEND_ACTIVE,
                        local: false,
                    },
                )
                .expect("programming a backend")
        })
        .collect();
    let desired = |n: usize| DesiredFrontend {
        key: frontend,
        flags: SVC_CLUSTER_IP,
        affinity_timeout: 0,
        slots: addresses[..n].to_vec(),
    };
    table
        .set_frontend(&desired(3), &ids[..3])
        .expect("three slots and the frontend fit");
    assert_eq!(table.count_in_map(&frontend), 3);
    // Five slots do not fit: the write is refused with the map named, and the frontend the
    // kernel sees still announces the three slots it had (slot 0 is written last).
    let error = table
        .set_frontend(&desired(5), &ids)
        .expect_err("a full map must refuse");
    assert!(
        matches!(error, datapath::DatapathError::Full { map: "SERVICES" }),
        "{error}"
    );
    assert_eq!(table.count_in_map(&frontend), 3);
}
