//! `cargo xtask up`: build Skiff and bring the lab up, or report the one already running.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{
    daemons, down, guestbook,
    layout::{
        self, AGENT_HEALTH_PORT, AGENT_PORT, BRIDGE_ADDR, CONTROL_HEALTH_PORT, CONTROL_PORT,
        ETCD_METRICS_PORT, ETCD_PEER_PORT, LOAD_BALANCER_POOL, Layout, MAX_NODES, Node,
        REGISTRY_PORT,
    },
    network,
    probe::{alive, http_get, wait_until},
    record::{Daemon, Record},
    status,
};
use crate::{
    cmd::{Progress, cargo, command, output, run_cmd},
    host, images, setup,
};

/// How long a daemon may take to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `cargo xtask up`.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Number of nodes (network namespaces with one agent each).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Use the binaries already built (target/debug, or target/release) instead of building.
    #[arg(long)]
    pub no_build: bool,
    /// Only the cluster: do not deploy the guestbook demo (`examples/guestbook`).
    #[arg(long)]
    pub bare: bool,
    /// Run release builds (target/release), as `cargo xtask bench` does: for profiling or
    /// measuring by hand against the daemons the benchmarks run.
    #[arg(long)]
    pub release: bool,
}

/// Entry point of `cargo xtask up`.
pub fn up(args: &UpArgs) -> Result<()> {
    host::require_root("up")?;
    if args.nodes == 0 || args.nodes > MAX_NODES {
        bail!(
            "--nodes must be between 1 and {MAX_NODES}, got {}",
            args.nodes
        );
    }
    let layout = if args.release {
        Layout::release()
    } else {
        Layout::current()
    };
    if let Some(record) = Record::load(&layout)?
        && !record.daemons.is_empty()
        && record.daemons.iter().all(|d| alive(d.pid))
    {
        eprintln!("A lab is already running; leaving it as it is.\n");
        status::print(&layout, &record);
        print_next_steps(&layout);
        return Ok(());
    }
    if down::anything_left(&layout) {
        eprintln!("Found a stale lab (its processes are gone); cleaning it up first.");
        down::teardown(&layout)?;
    }
    setup::ensure()?;
    bring_up(&layout, args.nodes, !args.no_build)?;
    let demo = if args.bare {
        None
    } else {
        let mut progress = Progress::new("up", 1);
        Some(
            progress.step("the guestbook demo (examples/guestbook)", || {
                guestbook::deploy(&layout, Node::new(1).address)
            })?,
        )
    };
    print_next_steps(&layout);
    if let Some(demo) = demo {
        print_guestbook(&demo);
    }
    Ok(())
}

fn print_guestbook(demo: &guestbook::Guestbook) {
    println!(
        "\nThe guestbook is running (examples/guestbook): open {url} or try\n  curl '{url}guestbook.php?cmd=set&key=messages&value=hello'\n  curl '{url}guestbook.php?cmd=get&key=messages'\n  kubectl get pods,svc -l 'tier in (frontend,backend)'\n  kubectl scale deployment/frontend --replicas=6\nIts node port answers too: {node_port}",
        url = demo.url,
        node_port = demo.node_port_url,
    );
}

/// Build, then start every component; on failure the partial lab stays recorded so the next
/// `up` or `down` cleans it.
pub fn bring_up(layout: &Layout, node_count: usize, build: bool) -> Result<()> {
    let nodes: Vec<Node> = (1..=node_count).map(Node::new).collect();
    let mut record = Record {
        nodes: node_count,
        daemons: Vec::new(),
    };
    let mut progress = Progress::new("up", 9);
    if build {
        progress.step(
            &format!(
                "build skiff-control, skiff-agent and skiff-load ({})",
                layout.profile
            ),
            || build_binaries(layout),
        )?;
    } else {
        progress.step(
            "use the skiff-control and skiff-agent already built",
            || {
                for bin in ["skiff-control", "skiff-agent"] {
                    anyhow::ensure!(
                        layout.bin(bin).exists(),
                        "{} is not built: run without --no-build",
                        layout.bin(bin).display()
                    );
                }
                Ok(())
            },
        )?;
    }
    progress.step(
        &format!("underlay bridge and {node_count} node namespaces"),
        || {
            for dir in [
                layout.logs(),
                layout.etcd_data(),
                layout.containerd_dir(),
                layout.control_dir(),
                layout.registry_dir(),
            ] {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            record.save(layout)?;
            network::create_bridge()?;
            for node in &nodes {
                network::create_node(node)?;
                let cgroup = layout::node_cgroup2(node).context("no cgroup2 hierarchy")?;
                std::fs::create_dir_all(&cgroup)
                    .with_context(|| format!("creating cgroup {}", cgroup.display()))?;
                std::fs::create_dir_all(layout.node_dir(node))?;
            }
            Ok(())
        },
    )?;
    progress.step("etcd", || {
        let daemon = start_etcd(layout)?;
        started(layout, &mut record, daemon, || {
            let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, ETCD_METRICS_PORT).into();
            let body = http_get(addr, "/health")?;
            anyhow::ensure!(body.contains("true"), "etcd /health says {body}");
            Ok(())
        })
    })?;
    progress.step("containerd (own root, state and socket; CRI off)", || {
        let daemon = start_containerd(layout)?;
        let socket = layout.containerd_socket();
        started(layout, &mut record, daemon, || {
            ctr(&socket, &["version"]).map(drop)
        })?;
        for node in &nodes {
            ctr(
                &socket,
                &["namespaces", "create", &node.name, "skiff.io/lab=true"],
            )?;
        }
        Ok(())
    })?;
    progress.step("image registry (every node's mirror)", || {
        let daemon = start_registry(layout)?;
        started(layout, &mut record, daemon, || {
            http_get(SocketAddrV4::new(BRIDGE_ADDR, REGISTRY_PORT).into(), "/v2/").map(drop)
        })
    })?;
    progress.step("skiff-control", || {
        write_encryption_config(layout)?;
        let mut cmd = Command::new(layout.bin("skiff-control"));
        cmd.arg("serve")
            .args(layout.etcd_client_args())
            .arg("--listen")
            .arg(format!("127.0.0.1:{CONTROL_PORT}"))
            .arg("--listen")
            .arg(format!("{BRIDGE_ADDR}:{CONTROL_PORT}"))
            .arg("--healthz-listen")
            .arg(format!("127.0.0.1:{CONTROL_HEALTH_PORT}"))
            .arg("--service-account-signing-key-file")
            .arg(layout.service_account_key())
            .arg("--token-auth-file")
            .arg(write_token_file(layout)?)
            .arg("--data-dir")
            .arg(layout.control_dir())
            // Shorter than kube's 40 s so a dead node is noticed quickly in the lab.
            .arg("--node-monitor-grace-period")
            .arg("20")
            .arg("--load-balancer-pool")
            .arg(LOAD_BALANCER_POOL);
        let health = format!("http://127.0.0.1:{CONTROL_HEALTH_PORT}/healthz");
        let daemon = daemons::spawn(
            "skiff-control",
            cmd,
            &layout.logs().join("skiff-control.log"),
            health,
        )?;
        started(layout, &mut record, daemon, || {
            http_get(
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, CONTROL_HEALTH_PORT).into(),
                "/healthz",
            )
            .map(drop)
        })
    })?;
    progress.step(
        "kubeconfigs (admin, and one per node) and node serving certificates",
        || {
            write_kubeconfig(
                layout,
                "kubernetes-admin",
                &["system:masters"],
                &layout.kubeconfig(),
            )?;
            for node in &nodes {
                let user = format!("system:node:{}", node.name);
                write_kubeconfig(
                    layout,
                    &user,
                    &["system:nodes"],
                    &layout.node_dir(node).join("kubeconfig"),
                )?;
                serving_cert(layout, node)?;
            }
            Ok(())
        },
    )?;
    progress.step(&format!("skiff-agent on {node_count} nodes"), || {
        let mut pending = Vec::new();
        for node in &nodes {
            let daemon = start_agent(layout, node)?;
            record.daemons.push(daemon.clone());
            record.save(layout)?;
            pending.push((node.clone(), daemon));
        }
        for (node, daemon) in pending {
            let addr = SocketAddr::from(SocketAddrV4::new(node.address, AGENT_HEALTH_PORT));
            wait_healthy(&daemon, || http_get(addr, "/healthz").map(drop))?;
        }
        Ok(())
    })?;
    progress.step("test images into the registry (cargo xtask images)", || {
        images::build_and_publish(Some(&format!("{BRIDGE_ADDR}:{REGISTRY_PORT}")))
    })?;
    Ok(())
}

fn build_binaries(layout: &Layout) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--quiet"]);
    if layout.profile == "release" {
        cmd.arg("--release");
    }
    run_cmd(cmd.args([
        "--bins",
        "-p",
        "skiff-control",
        "-p",
        "skiff-agent",
        "-p",
        "skiff-load",
    ]))
}

/// Record a freshly spawned daemon, then wait for its health check.
fn started(
    layout: &Layout,
    record: &mut Record,
    daemon: Daemon,
    check: impl FnMut() -> Result<()>,
) -> Result<()> {
    record.daemons.push(daemon.clone());
    record.save(layout)?;
    wait_healthy(&daemon, check)
}

fn wait_healthy(daemon: &Daemon, mut check: impl FnMut() -> Result<()>) -> Result<()> {
    wait_until(HEALTH_TIMEOUT, || {
        if !alive(daemon.pid) {
            bail!("{} exited", daemon.name);
        }
        check()
    })
    .with_context(|| {
        format!(
            "{} did not become healthy\n{}",
            daemon.name,
            log_tail(&daemon.log)
        )
    })
}

/// The last lines of a log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    format!("last lines of {}:\n{tail}", log.display())
}

fn start_etcd(layout: &Layout) -> Result<Daemon> {
    // Loopback only, and mutual TLS: the control plane runs in the root namespace; nodes and
    // pods never reach etcd, and nothing without a certificate from etcd's CA may use it.
    output(
        Command::new(layout.bin("skiff-control"))
            .arg("etcd-pki")
            .arg("--dir")
            .arg(layout.etcd_pki()),
    )
    .context("creating etcd's PKI")?;
    let pki = layout.etcd_pki();
    let client = layout.etcd_url();
    let peer = format!("http://127.0.0.1:{ETCD_PEER_PORT}");
    let mut cmd = Command::new("etcd");
    cmd.arg("--name=skiff-lab")
        .arg(format!("--data-dir={}", layout.etcd_data().display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=skiff-lab={peer}"))
        .arg(format!(
            "--listen-metrics-urls=http://127.0.0.1:{ETCD_METRICS_PORT}"
        ))
        .arg(format!("--cert-file={}", pki.join("server.crt").display()))
        .arg(format!("--key-file={}", pki.join("server.key").display()))
        .arg(format!(
            "--trusted-ca-file={}",
            pki.join("ca.crt").display()
        ))
        .arg("--client-cert-auth")
        .arg("--log-level=warn");
    let health = format!("http://127.0.0.1:{ETCD_METRICS_PORT}/health");
    daemons::spawn("etcd", cmd, &layout.logs().join("etcd.log"), health)
}

fn start_containerd(layout: &Layout) -> Result<Daemon> {
    let dir = layout.containerd_dir();
    let socket = layout.containerd_socket();
    // unix socket paths are limited to 108 bytes.
    if socket.as_os_str().len() > 100 {
        bail!(
            "the containerd socket path {} is too long for a unix socket: clone Skiff to a shorter path",
            socket.display()
        );
    }
    let config = format!(
        "version = 2\n\
         root = \"{root}\"\n\
         state = \"{state}\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{sock}\"\n\
         [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{root}/opt\"\n",
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        sock = socket.display(),
    );
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(&config_path);
    daemons::spawn(
        "containerd",
        cmd,
        &layout.logs().join("containerd.log"),
        format!("ctr version @ {}", socket.display()),
    )
}

/// Docker Distribution (Debian's docker-registry) on the bridge address, storage in the lab.
fn start_registry(layout: &Layout) -> Result<Daemon> {
    let dir = layout.registry_dir();
    let config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
         http:\n  addr: {BRIDGE_ADDR}:{REGISTRY_PORT}\n",
        root = dir.join("data").display(),
    );
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&config_path);
    daemons::spawn(
        "registry",
        cmd,
        &layout.logs().join("registry.log"),
        format!("http://{BRIDGE_ADDR}:{REGISTRY_PORT}/v2/"),
    )
}

/// Run `ctr` against the lab's containerd.
pub fn ctr(socket: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = command("ctr", ["--address"]);
    cmd.arg(socket).args(args);
    output(&mut cmd)
}

fn start_agent(layout: &Layout, node: &Node) -> Result<Daemon> {
    let cgroup = layout::node_cgroup2(node).context("no cgroup2 hierarchy")?;
    let listen = SocketAddrV4::new(node.address, AGENT_PORT);
    let health = SocketAddrV4::new(node.address, AGENT_HEALTH_PORT);
    let mut cmd = Command::new(layout.bin("skiff-agent"));
    cmd.arg("--node-name")
        .arg(&node.name)
        .arg("--netns")
        .arg(&node.name)
        .arg("--cgroup")
        .arg(&cgroup)
        .arg("--bpffs-dir")
        .arg(layout::node_pin_dir(node))
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--healthz-listen")
        .arg(health.to_string())
        .arg("--state-dir")
        .arg(layout.node_dir(node))
        .arg("--kubeconfig")
        .arg(layout.node_dir(node).join("kubeconfig"))
        .arg("--tls-cert-file")
        .arg(layout.node_dir(node).join("kubelet.crt"))
        .arg("--tls-private-key-file")
        .arg(layout.node_dir(node).join("kubelet.key"))
        .arg("--containerd")
        .arg(layout.containerd_socket())
        .arg("--pod-cidr")
        .arg(&node.pod_cidr)
        .arg("--registry-config")
        .arg(write_registries(layout)?);
    let name = format!("agent/{}", node.name);
    let log = layout.logs().join(format!("agent-{}.log", node.name));
    daemons::spawn(&name, cmd, &log, format!("http://{health}/healthz"))
}

/// Every registry is mirrored by the lab registry (k3s registries.yaml format), so plain
/// manifests (`image: busybox`) pull on nodes that reach nothing else.
fn write_registries(layout: &Layout) -> Result<std::path::PathBuf> {
    let path = layout.registry_dir().join("registries.yaml");
    std::fs::write(
        &path,
        format!(
            "mirrors:\n  \"*\":\n    endpoint:\n      - \"http://{BRIDGE_ADDR}:{REGISTRY_PORT}\"\n"
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A token file with one random admin token (for clients that use bearer tokens).
/// Secrets encrypted at rest with a random secretbox key (written once, 0600, kept across
/// restarts of the lab's control plane).
fn write_encryption_config(layout: &Layout) -> Result<std::path::PathBuf> {
    use base64::Engine as _;
    let path = layout.control_dir().join("encryption.yaml");
    if path.exists() {
        return Ok(path);
    }
    let mut key = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: lab\n        secret: {}\n  - identity: {{}}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// Write a file only root may read.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .with_context(|| format!("writing {}", path.display()))
}

fn write_token_file(layout: &Layout) -> Result<std::path::PathBuf> {
    let path = layout.control_dir().join("tokens.csv");
    let mut random = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    write_private(
        &path,
        format!("# token,user,uid,groups\n{token},lab-admin,lab-admin,\"system:masters\"\n")
            .as_bytes(),
    )?;
    Ok(path)
}

/// Issue a client certificate for `user` in `groups` from the cluster CA and write its
/// kubeconfig to `out` (0600).
pub fn write_kubeconfig(layout: &Layout, user: &str, groups: &[&str], out: &Path) -> Result<()> {
    let mut cmd = Command::new(layout.bin("skiff-control"));
    cmd.arg("kubeconfig")
        .args(layout.etcd_client_args())
        .arg("--server")
        .arg(format!("https://{BRIDGE_ADDR}:{CONTROL_PORT}"))
        .arg("--user")
        .arg(user)
        .arg("--out")
        .arg(out);
    for group in groups {
        cmd.arg("--group").arg(group);
    }
    output(&mut cmd)
        .map(drop)
        .with_context(|| format!("writing the kubeconfig of {user}"))
}

/// A node agent's serving certificate from the cluster CA, for its name and address (the
/// API server verifies it when it proxies logs and exec).
fn serving_cert(layout: &Layout, node: &Node) -> Result<()> {
    let dir = layout.node_dir(node);
    output(
        Command::new(layout.bin("skiff-control"))
            .arg("serving-cert")
            .args(layout.etcd_client_args())
            .arg("--name")
            .arg(&node.name)
            .arg("--name")
            .arg(node.address.to_string())
            .arg("--cert-out")
            .arg(dir.join("kubelet.crt"))
            .arg("--key-out")
            .arg(dir.join("kubelet.key")),
    )
    .map(drop)
    .with_context(|| format!("issuing the serving certificate of {}", node.name))
}

fn print_next_steps(layout: &Layout) {
    println!(
        "\nThe Skiff lab is up. Next:\n  export KUBECONFIG={}\n  kubectl version\n  cargo xtask status\n  cargo xtask down   # when you are done",
        layout.kubeconfig().display()
    );
}
