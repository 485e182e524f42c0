//! skiff-control: the Kubernetes API server over etcd.
//!
//! `skiff-control serve` runs the server (HTTPS with client-certificate and bearer-token
//! authentication; optional plain HTTP on loopback for debugging). `skiff-control
//! kubeconfig` issues a client certificate from the cluster CA and writes a kubeconfig.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use skiff_control::{
    admission::Settings as AdmissionSettings,
    aggregator,
    api::{self, auth::Tokens, serve},
    authn, authz, bootstrap,
    pki::Ca,
    store::Store,
};
use tracing::{info, warn};

/// Command line of skiff-control.
#[derive(Parser, Debug)]
#[command(name = "skiff-control", version, about = "Skiff control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the API server.
    Serve(Box<ServeArgs>),
    /// Issue a client certificate from the cluster CA and write a kubeconfig.
    Kubeconfig(KubeconfigArgs),
    /// Create etcd's own PKI (a CA, the member's certificate, skiff-control's client
    /// certificate) in a directory, unless it exists.
    EtcdPki(EtcdPkiArgs),
    /// Issue a serving certificate from the cluster CA (a node agent's, which the API
    /// server verifies when it proxies logs and exec).
    ServingCert(ServingCertArgs),
}

#[derive(Args, Debug)]
struct EtcdPkiArgs {
    /// Where the PKI's files go (ca.crt, server.crt/key, client.crt/key; keys 0600).
    #[arg(long)]
    dir: PathBuf,
    /// Names and addresses of the etcd member (repeatable).
    #[arg(long = "name", default_values_t = ["127.0.0.1".to_owned(), "localhost".to_owned()])]
    names: Vec<String>,
}

#[derive(Args, Debug)]
struct ServingCertArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Names and IP addresses the certificate is valid for (repeatable).
    #[arg(long = "name", required = true)]
    names: Vec<String>,
    /// Where to write the certificate (PEM).
    #[arg(long)]
    cert_out: PathBuf,
    /// Where to write the private key (PEM, 0600).
    #[arg(long)]
    key_out: PathBuf,
}

#[derive(Args, Debug)]
struct EtcdArgs {
    /// etcd endpoints, comma separated.
    #[arg(
        long,
        env = "SKIFF_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd: Vec<String>,
    /// Encryption at rest (kube's EncryptionConfiguration; secretbox and identity
    /// providers). The cluster CA's key is sealed with the secrets.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// CA that signed etcd's certificate (https endpoints; kube-apiserver's --etcd-cafile).
    #[arg(long, requires_all = ["etcd_certfile", "etcd_keyfile"])]
    etcd_cafile: Option<PathBuf>,
    /// This client's certificate for etcd (--etcd-certfile).
    #[arg(long)]
    etcd_certfile: Option<PathBuf>,
    /// This client's key for etcd (--etcd-keyfile).
    #[arg(long)]
    etcd_keyfile: Option<PathBuf>,
}

impl EtcdArgs {
    /// The store these flags describe.
    fn store(&self) -> Result<Arc<Store>> {
        let encryption = self
            .encryption_provider_config
            .as_deref()
            .map(skiff_control::store::encryption::EncryptionConfig::load)
            .transpose()
            .context("--encryption-provider-config")?;
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        let tls = match (&self.etcd_cafile, &self.etcd_certfile, &self.etcd_keyfile) {
            (Some(ca), Some(cert), Some(key)) => Some(skiff_control::store::EtcdTls {
                ca: read(ca)?,
                cert: read(cert)?,
                key: read(key)?,
            }),
            _ => None,
        };
        Ok(Store::encrypted(
            Arc::new(skiff_control::store::EtcdStorage::with_tls(
                self.etcd.clone(),
                tls,
            )),
            encryption,
        ))
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// HTTPS listen addresses (repeatable).
    #[arg(long = "listen", default_value = "127.0.0.1:6443")]
    listen: Vec<SocketAddr>,
    /// Extra names and addresses for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Also answer /healthz, /livez and /readyz (and nothing else) over plain HTTP on this
    /// loopback address, for process supervisors without a TLS client.
    #[arg(long)]
    healthz_listen: Option<SocketAddr>,
    /// Authorizers, in order (kube's --authorization-mode): Node, RBAC, AlwaysAllow.
    #[arg(long, default_value = "Node,RBAC")]
    authorization_mode: String,
    /// Issuer of ServiceAccount tokens (the `iss` claim; OIDC discovery is served when it
    /// is an https URL).
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    service_account_issuer: String,
    /// ES256 (P-256) private key ServiceAccount tokens are signed with (PEM). Created,
    /// 0600, if missing; every replica of a cluster must be given the same key.
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    /// More public keys tokens are verified with (PEM; repeatable), for key rotation.
    #[arg(long = "service-account-key-file")]
    service_account_key_files: Vec<PathBuf>,
    /// Audiences the API accepts in tokens (default: the issuer), comma separated.
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// Bearer token file (CSV: token,user,uid,"groups").
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Directory for this server's local state (its serving certificate).
    #[arg(long)]
    data_dir: PathBuf,
    /// Seconds a node's Lease may go unrenewed before the node is marked unreachable.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// tolerationSeconds of the not-ready/unreachable NoExecute tolerations every pod gets.
    #[arg(long, default_value_t = 300)]
    default_toleration_seconds: i64,
    /// CIDR Service cluster IPs are allocated from (its first address is the
    /// `kubernetes` Service's).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Range NodePorts are allocated from.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Cluster IP of the `kube-dns` Service (the agents' node-local resolvers answer it).
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: std::net::Ipv4Addr,
    /// Address this server advertises in the `kubernetes` Service's endpoints (default:
    /// the first non-loopback --listen address; none: this server is not listed).
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// LoadBalancer address pool (`first-last`), assigned by the service-lb controller.
    #[arg(long, default_value = "")]
    load_balancer_pool: String,
}

#[derive(Args, Debug)]
struct KubeconfigArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// API server URL written into the kubeconfig.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    server: String,
    /// User name (certificate CN).
    #[arg(long)]
    user: String,
    /// Groups (certificate O), repeatable.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Where to write the kubeconfig.
    #[arg(long)]
    out: PathBuf,
}

/// Stack of each runtime worker. Decoding and patching the larger built-in types
/// (Deployment, StatefulSet, Pod) nests serde visitors and typed k8s-openapi values deeply;
/// unoptimised builds overflowed tokio's default 2 MiB during a strategic merge patch of a
/// Deployment. Stacks are reserved, not committed, so this costs no resident memory.
const WORKER_STACK_BYTES: usize = 16 << 20;

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(WORKER_STACK_BYTES)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(serve_or_write())
}

async fn serve_or_write() -> Result<()> {
    skiff_daemon::init_logging();
    match Cli::parse().command {
        Command::Serve(args) => run_server(*args).await,
        Command::Kubeconfig(args) => write_kubeconfig(args).await,
        Command::ServingCert(args) => write_serving_cert(args).await,
        Command::EtcdPki(args) => skiff_control::etcd_pki::EtcdPki::at(&args.dir)
            .ensure(&args.names)
            .context("writing etcd's PKI"),
    }
}

/// Load (or create) the CA, retrying while etcd comes up.
async fn load_ca(store: &Store) -> Result<Ca> {
    let mut last = None;
    for _ in 0..50 {
        match Ca::load_or_create(store).await {
            Ok(ca) => return Ok(ca),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.map_or_else(|| anyhow::anyhow!("etcd unavailable"), anyhow::Error::from))
        .context("loading the cluster CA from etcd")
}

/// Every watch is a socket: raise the open-files limit to the hard limit, as
/// kube-apiserver deployments do.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        warn!(error = %e, "could not raise the open-files limit");
    }
}

async fn run_server(args: ServeArgs) -> Result<()> {
    raise_open_files_limit();
    if let Some(addr) = args.healthz_listen
        && !addr.ip().is_loopback()
    {
        anyhow::bail!("--healthz-listen {addr} is not a loopback address");
    }
    let modes = authz::modes::parse(&args.authorization_mode)
        .map_err(anyhow::Error::msg)
        .context("--authorization-mode")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let tokens = match &args.token_auth_file {
        Some(path) => Tokens::load(path).map_err(anyhow::Error::msg)?,
        None => Tokens::default(),
    };
    let ranges = skiff_control::resources::ServiceRanges::parse(
        &args.service_cluster_ip_range,
        &args.service_node_port_range,
    )
    .map_err(anyhow::Error::msg)
    .context("--service-cluster-ip-range / --service-node-port-range")?;
    skiff_control::resources::set_service_ranges(ranges);
    let store = args.etcd.store()?;
    let ca = load_ca(&store).await?;
    if let Err(e) = bootstrap::ensure_namespaces(&store).await {
        warn!(error = %e, "could not create the system namespaces yet");
    }
    if let Err(e) = bootstrap::ensure_priority_classes(&store).await {
        warn!(error = %e, "could not create the system PriorityClasses yet");
    }
    if let Err(e) = bootstrap::ensure_storage_classes(&store).await {
        warn!(error = %e, "could not create the default StorageClass yet");
    }
    let advertise = args
        .advertise_address
        .or_else(|| {
            args.listen
                .iter()
                .map(SocketAddr::ip)
                .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
        })
        .map(|ip| SocketAddr::new(ip, args.listen[0].port()));
    let api_port = advertise.map_or(args.listen[0].port(), |a| a.port());
    if let Err(e) =
        bootstrap::services::ensure_services(&store, api_port, &args.cluster_dns.to_string()).await
    {
        warn!(error = %e, "could not create the system services");
    }
    // Every replica serves the established CRDs' resources.
    let custom_resources = tokio::spawn(skiff_control::crd::serve::run(store.clone()));
    // …and proxies the APIServices of extension API servers.
    let (front_proxy_ca, front_proxy_client) = aggregator::front_proxy::client_identity(&store)
        .await
        .context("loading the front-proxy CA from etcd")?;
    if let Err(e) = aggregator::front_proxy::publish_authentication(
        &store,
        &ca.pem.cert,
        &front_proxy_ca.pem.cert,
    )
    .await
    {
        warn!(error = %e, "could not publish kube-system/extension-apiserver-authentication");
    }
    let aggregator = aggregator::Aggregator::new(&store, front_proxy_client);
    let discovery_refresh = tokio::spawn(std::sync::Arc::clone(&aggregator).run());
    let endpoint_reconciler = match advertise {
        Some(address) => Some(tokio::spawn(bootstrap::services::reconcile_api_endpoints(
            store.clone(),
            address,
        ))),
        None => {
            warn!(
                "no non-loopback listen address: this server is not listed in the kubernetes service's endpoints"
            );
            None
        }
    };
    let mut names: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
        "10.96.0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.extend(args.listen.iter().map(|a| a.ip().to_string()));
    names.extend(args.tls_san.iter().cloned());
    names.sort();
    names.dedup();
    let serving = ca.serving(&names)?;
    std::fs::write(args.data_dir.join("ca.crt"), &ca.pem.cert).context("writing ca.crt")?;
    std::fs::write(args.data_dir.join("serving.crt"), &serving.cert)
        .context("writing serving.crt")?;
    let tls = serve::tls_config(&ca.pem.cert, &serving)?;
    let agent_identity = ca.client(
        "kube-apiserver-kubelet-client",
        &["system:masters".to_owned()],
    )?;
    let authorization = authz::modes::build(&store, &modes);
    let issuer = service_account_issuer(&args)?;
    let external_address = advertise.map(|a| a.to_string());
    let service_accounts = Arc::new(authn::ServiceAccountTokens::new(
        issuer,
        &store,
        external_address.as_deref(),
    ));
    let state = api::AppState::new(Arc::clone(&store), tokens)
        .with_agent_tls(api::agent_client::config(&ca.pem.cert, &agent_identity)?)
        .with_authorization(
            &authorization,
            &AdmissionSettings {
                default_toleration_seconds: args.default_toleration_seconds,
                ..AdmissionSettings::default()
            },
        )
        .with_service_accounts(service_accounts)
        .with_aggregator(std::sync::Arc::clone(&aggregator));
    reconcile_rbac(&state.registry).await;
    if let Some(rbac) = &authorization.rbac {
        wait_for_rbac(rbac).await;
    }
    let health = api::health_router(state.clone());
    let app = api::router(state);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut servers = Vec::new();
    for addr in &args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        info!(listen = %addr, "serving HTTPS");
        servers.push(tokio::spawn(serve::serve_tls(
            listener,
            tls.clone(),
            app.clone(),
            stopped(stop_rx.clone()),
        )));
    }
    if let Some(addr) = args.healthz_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        info!(listen = %addr, "serving health checks over plain HTTP");
        servers.push(tokio::spawn(serve::serve_plain(
            listener,
            health,
            stopped(stop_rx.clone()),
        )));
    }
    let load_balancer_pool = if args.load_balancer_pool.is_empty() {
        None
    } else {
        Some(
            skiff_control::controllers::service_lb::AddressPool::parse(&args.load_balancer_pool)
                .map_err(anyhow::Error::msg)?,
        )
    };
    let config = skiff_control::controllers::ControllerConfig {
        node_monitor_grace: std::time::Duration::from_secs(args.node_monitor_grace_period),
        load_balancer_pool,
        root_ca: Some(ca.pem.cert.clone()),
        signing_ca: Some(ca.pem.clone()),
        aggregator: Some(aggregator),
    };
    let (controllers_stop, controllers_stopped) = tokio::sync::watch::channel(false);
    let mut controllers = tokio::spawn(run_controllers(
        args.listen[0],
        ca,
        config,
        controllers_stopped,
    ));
    skiff_daemon::shutdown_signal().await;
    // The controllers stop first, while the server still answers their last request: the
    // leader Lease handed back.
    let _ = controllers_stop.send(true);
    if tokio::time::timeout(CONTROLLERS_STOP, &mut controllers)
        .await
        .is_err()
    {
        warn!("controllers did not stop in time; the leader lease will expire instead");
        controllers.abort();
    }
    if let Some(reconciler) = endpoint_reconciler {
        reconciler.abort();
    }
    custom_resources.abort();
    discovery_refresh.abort();
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    info!("stopped");
    Ok(())
}

/// How long a stopping server waits for its controllers to hand the leader Lease back.
const CONTROLLERS_STOP: std::time::Duration = std::time::Duration::from_secs(3);

/// The ServiceAccount token issuer: the signing key from its file (created 0600 when
/// missing), extra verification keys, issuer and audiences from the flags.
fn service_account_issuer(args: &ServeArgs) -> Result<authn::TokenIssuer> {
    let path = args
        .service_account_signing_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("service-account.key"));
    let key = match std::fs::read(&path) {
        Ok(pem) => authn::SigningKey::from_pem(&pem)
            .with_context(|| format!("reading the signing key {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = authn::SigningKey::generate().context("generating a signing key")?;
            write_private(&path, key.to_pem().as_bytes())?;
            info!(path = %path.display(), "generated the ServiceAccount signing key");
            key
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut extra = Vec::new();
    for file in &args.service_account_key_files {
        let pem = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        extra.extend(
            authn::PublicKey::parse_pem(&pem)
                .with_context(|| format!("parsing {}", file.display()))?,
        );
    }
    Ok(authn::TokenIssuer::new(
        key,
        args.service_account_issuer.clone(),
        args.api_audiences.clone(),
    )
    .with_verification_keys(extra))
}

/// Write a file only its owner may read (keys, kubeconfigs).
fn write_private(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // An existing file keeps its mode on open: narrow it too.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// Reconcile the bootstrap RBAC policy, retrying while etcd comes up.
async fn reconcile_rbac(registry: &skiff_control::registry::Registry) {
    for attempt in 0..30 {
        match bootstrap::rbac::reconcile_policy(registry).await {
            Ok(_) => return,
            Err(e) if attempt < 29 => {
                tracing::debug!(error = %e, "bootstrap RBAC policy not reconciled yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => warn!(error = %e, "could not reconcile the bootstrap RBAC policy"),
        }
    }
}

/// Serve only once RBAC's caches hold the policy (requests would be denied before).
async fn wait_for_rbac(rbac: &authz::rbac_source::RbacAuthorizer) {
    for _ in 0..100 {
        if rbac.synced() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warn!("the RBAC caches have not synced; serving anyway (requests may be denied)");
}

/// The controllers, each with its own identity, against this server.
async fn run_controllers(
    listen: SocketAddr,
    ca: Ca,
    config: skiff_control::controllers::ControllerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        listen.ip().to_string()
    };
    let server = format!("https://{host}:{}", listen.port());
    match skiff_control::identities::controller_clients(&server, &ca).await {
        Ok(clients) => {
            let identity = format!(
                "{}_{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .unwrap_or_default()
                    .trim(),
                std::process::id()
            );
            skiff_control::controllers::run(clients, identity, config, stop).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "controllers cannot reach the API server; they are not running")
        }
    }
}

async fn write_serving_cert(args: ServingCertArgs) -> Result<()> {
    let store = args.etcd.store()?;
    let ca = load_ca(&store).await?;
    let pem = ca.serving(&args.names)?;
    std::fs::write(&args.cert_out, &pem.cert)
        .with_context(|| format!("writing {}", args.cert_out.display()))?;
    write_private(&args.key_out, pem.key.as_bytes())
}

async fn write_kubeconfig(args: KubeconfigArgs) -> Result<()> {
    let store = args.etcd.store()?;
    let ca = load_ca(&store).await?;
    let client = ca.client(&args.user, &args.groups)?;
    let text = skiff_control::pki::kubeconfig(&args.server, &ca.pem, &args.user, &client);
    write_private(&args.out, text.as_bytes())?;
    Ok(())
}
