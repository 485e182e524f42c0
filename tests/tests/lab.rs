//! The lab itself: nodes on the underlay reach each other and nothing else; every daemon
//! is healthy; each agent has its datapath attached and pinned; kubectl reaches the
//! control plane through the kubeconfig `up` wrote.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::Command,
    time::Duration,
};

use skiff_tests::{
    AGENT_HEALTH_PORT, AGENT_PORT, BRIDGE_ADDR, Lab, cgroup2_mount, netns::run_in, process,
};

/// An address in TEST-NET-1 (RFC 5737): never routed anywhere. Nodes have no route to it,
/// so every attempt must fail inside the node before a packet is sent.
const OUTSIDE: &str = "192.0.2.1";

#[test]
fn every_node_reaches_every_other_node_over_the_underlay() {
    let Some(lab) = Lab::from_env() else { return };
    assert_eq!(lab.nodes.len(), 3, "the default lab has 3 nodes");
    for server in &lab.nodes {
        let address = server.address;
        let listener = run_in(&server.name, move || {
            TcpListener::bind((address, 0)).expect("bind on node address")
        });
        let port = listener.local_addr().expect("addr").port();
        let acceptor = std::thread::spawn(move || {
            let mut count = 0;
            for stream in listener.incoming().take(lab_size()) {
                let mut stream = stream.expect("accept");
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf).expect("read");
                stream.write_all(&buf).expect("echo");
                count += 1;
            }
            count
        });
        for client in &lab.nodes {
            let target = SocketAddr::from((address, port));
            run_in(&client.name, move || {
                let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connecting to {target}: {e}"));
                stream.write_all(b"hello").expect("write");
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf).expect("read echo");
                assert_eq!(&buf, b"hello");
            });
        }
        assert_eq!(acceptor.join().expect("acceptor"), lab.nodes.len());
    }
}

fn lab_size() -> usize {
    Lab::from_env().map_or(0, |l| l.nodes.len())
}

#[test]
fn nodes_reach_nothing_outside_the_lab() {
    let Some(lab) = Lab::from_env() else { return };
    for node in &lab.nodes {
        let routes =
            process::run("ip", &["-n", &node.name, "-4", "route", "show"]).expect("ip route");
        assert!(
            !routes.contains("default"),
            "{} has a default route:\n{routes}",
            node.name
        );
        // The root namespace is reachable on the underlay (the API server) …
        let api = SocketAddr::from((BRIDGE_ADDR, 6443));
        run_in(&node.name, move || {
            TcpStream::connect_timeout(&api, Duration::from_secs(2))
                .expect("the API server on the underlay")
        });
        // … but not etcd, which only the control plane reaches (on loopback) …
        let etcd = SocketAddr::from((BRIDGE_ADDR, 2379));
        let refused = run_in(&node.name, move || {
            TcpStream::connect_timeout(&etcd, Duration::from_secs(2)).map(drop)
        });
        assert!(
            refused.is_err(),
            "{}: etcd answers on the underlay",
            node.name
        );
        // … and anything else fails locally with "network unreachable", for TCP and UDP.
        let outside: SocketAddr = format!("{OUTSIDE}:80").parse().expect("addr");
        let (tcp, udp) = run_in(&node.name, move || {
            let tcp = TcpStream::connect_timeout(&outside, Duration::from_secs(2)).map(drop);
            let udp = UdpSocket::bind("0.0.0.0:0")
                .and_then(|s| s.send_to(b"x", outside))
                .map(drop);
            (tcp, udp)
        });
        let tcp = tcp.expect_err("TCP to an outside address succeeded");
        assert_eq!(
            tcp.kind(),
            ErrorKind::NetworkUnreachable,
            "{}: {tcp}",
            node.name
        );
        let udp = udp.expect_err("UDP to an outside address was sent");
        assert_eq!(
            udp.kind(),
            ErrorKind::NetworkUnreachable,
            "{}: {udp}",
            node.name
        );
    }
}

#[test]
fn the_node_api_requires_a_cluster_client_certificate() {
    let Some(lab) = Lab::from_env() else { return };
    use base64::Engine as _;
    // The client certificate and key of a kubeconfig, written out for curl.
    let decode = |path: &std::path::Path| {
        let text = std::fs::read_to_string(path).expect("kubeconfig");
        let config: serde_json::Value = serde_saphyr::from_str(&text).expect("kubeconfig YAML");
        let user = &config["users"][0]["user"];
        let b64 = base64::engine::general_purpose::STANDARD;
        let field = |name: &str| {
            b64.decode(user[name].as_str().expect(name))
                .expect("base64")
        };
        let dir = std::env::temp_dir().join(format!(
            "skiff-nodeapi-{}-{}",
            std::process::id(),
            path.to_string_lossy().len()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("cert.pem"), field("client-certificate-data")).expect("write");
        std::fs::write(dir.join("key.pem"), field("client-key-data")).expect("write");
        dir
    };
    let node = &lab.nodes[0];
    let url = format!("https://{}:{AGENT_PORT}/healthz", node.address);
    // No client certificate: the TLS handshake is refused.
    let anonymous = process::run("curl", &["-sk", "--max-time", "3", &url]);
    assert!(
        anonymous.is_err(),
        "an anonymous caller reached the node API: {anonymous:?}"
    );
    // The admin (system:masters) is let in.
    let admin = decode(&lab.kubeconfig());
    let cert = admin.join("cert.pem").to_string_lossy().into_owned();
    let key = admin.join("key.pem").to_string_lossy().into_owned();
    let ok = process::run(
        "curl",
        &[
            "-sk",
            "--max-time",
            "3",
            "--cert",
            &cert,
            "--key",
            &key,
            &url,
        ],
    );
    assert_eq!(ok.as_deref(), Ok("ok"));
    // Another node's identity is authenticated but not authorized.
    let other = decode(
        &lab.dir
            .join("nodes")
            .join(&lab.nodes[lab.nodes.len() - 1].name)
            .join("kubeconfig"),
    );
    let cert = other.join("cert.pem").to_string_lossy().into_owned();
    let key = other.join("key.pem").to_string_lossy().into_owned();
    let code = process::run(
        "curl",
        &[
            "-sk",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cert",
            &cert,
            "--key",
            &key,
            &url,
        ],
    );
    assert_eq!(code.as_deref(), Ok("403"));
}

#[test]
fn agents_are_healthy_with_the_datapath_attached_and_pinned() {
    let Some(lab) = Lab::from_env() else { return };
    let cgroup2 = cgroup2_mount().expect("cgroup2");
    for node in &lab.nodes {
        let base = format!("http://{}:{AGENT_HEALTH_PORT}", node.address);
        let health = process::run(
            "curl",
            &["-sf", "--max-time", "2", &format!("{base}/healthz")],
        );
        assert_eq!(health.as_deref(), Ok("ok"), "{} /healthz", node.name);
        let metrics = process::run(
            "curl",
            &["-sf", "--max-time", "2", &format!("{base}/metrics")],
        )
        .expect("metrics");
        assert!(
            metrics.contains("skiff_datapath_socket_lb_attached 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!("skiff_agent_info{{node=\"{}\"", node.name)),
            "{metrics}"
        );

        let cgroup = cgroup2.join("skiff").join(&node.name);
        let attached = process::run("bpftool", &["cgroup", "show", &cgroup.to_string_lossy()])
            .expect("bpftool cgroup show");
        for program in [
            "connect4",
            "sendmsg4",
            "recvmsg4",
            "getpeername4",
            "sock_release",
        ] {
            assert!(
                attached.contains(program),
                "{program} not attached to {}:\n{attached}",
                cgroup.display()
            );
        }
        // tc (TCX) and XDP on the node's underlay interface, through pinned links.
        for (pin, program) in [
            ("tc-external-eth0", "tc_external"),
            ("xdp-eth0", "xdp_external"),
        ] {
            let path = format!("/sys/fs/bpf/skiff/{}/links/{pin}", node.name);
            let link = process::run("bpftool", &["link", "show", "pinned", &path])
                .unwrap_or_else(|e| panic!("no pinned link {path}: {e}"));
            let id = link
                .split_whitespace()
                .skip_while(|w| *w != "prog")
                .nth(1)
                .unwrap_or_else(|| panic!("{path} names no program: {link}"));
            let shown =
                process::run("bpftool", &["prog", "show", "id", id]).expect("bpftool prog show");
            assert!(
                shown.contains(&format!("name {program}")),
                "{path} runs {shown}"
            );
        }
        // Maps are pinned and carry BTF, so bpftool shows them by name with their types.
        for map in [
            "SERVICES",
            "BACKENDS",
            "REV_NAT",
            "MAGLEV",
            "CONNTRACK",
            "AFFINITY",
            "SOCK_REV_NAT",
            "CONFIG",
            "METRICS",
            "EVENTS",
        ] {
            let pin = format!("/sys/fs/bpf/skiff/{}/{map}", node.name);
            let shown = process::run("bpftool", &["map", "show", "pinned", &pin])
                .expect("bpftool map show");
            // The hash of Maglev tables holds map fds and the ring buffer raw bytes: no
            // typed key or value, so no BTF.
            let typed = matches!(map, "MAGLEV" | "EVENTS") || shown.contains("btf_id");
            assert!(
                shown.contains(&format!("name {map}")) && typed,
                "{pin}: {shown}"
            );
        }
    }
}

#[test]
fn kubectl_reaches_the_control_plane_through_the_lab_kubeconfig() {
    let Some(lab) = Lab::from_env() else { return };
    let out = process::output(
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(lab.kubeconfig())
            .args(["version", "-o", "json"]),
    );
    assert_eq!(out.code, 0, "kubectl version failed: {out:?}");
    let version: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("kubectl printed JSON");
    assert_eq!(version["serverVersion"]["major"], "1", "{version}");
    assert_eq!(version["serverVersion"]["minor"], "33", "{version}");
}

#[test]
fn control_plane_reports_health_and_metrics() {
    if Lab::from_env().is_none() {
        return;
    }
    let lab = Lab::from_env().expect("lab");
    // Health checks answer everyone: over HTTPS without credentials, and on the
    // health-only plain port.
    for base in ["https://127.0.0.1:6443", "http://127.0.0.1:10257"] {
        for path in ["healthz", "livez", "readyz"] {
            let body = process::run(
                "curl",
                &["-sfk", "--max-time", "2", &format!("{base}/{path}")],
            );
            assert_eq!(body.as_deref(), Ok("ok"), "{base}/{path}");
        }
    }
    // The plain port answers nothing else, and there is no plain-HTTP API any more.
    let plain = process::run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            "http://127.0.0.1:10257/api/v1/secrets",
        ],
    )
    .expect("curl");
    assert_eq!(plain, "404", "the health port serves health checks only");
    assert!(
        process::run(
            "curl",
            &["-sf", "--max-time", "2", "http://127.0.0.1:8080/version"]
        )
        .is_err(),
        "the old plain-HTTP admin port still answers"
    );
    // Metrics need authorization (the lab's admin has it).
    let metrics = lab.kubectl_ok(&["get", "--raw", "/metrics"]);
    assert!(metrics.contains("skiff_control_etcd_up 1"), "{metrics}");
}
