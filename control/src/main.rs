//! skiff-control daemon: the Kubernetes API server over etcd (growing; see issue 3).
//!
//! Serves /healthz, /livez, /readyz, /metrics and /version today.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use clap::Parser;
use skiff_control::{api, store::Store};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

/// Command line of skiff-control.
#[derive(Parser, Debug)]
#[command(name = "skiff-control", version, about = "Skiff control plane")]
struct Args {
    /// etcd endpoints, comma separated.
    #[arg(
        long,
        env = "SKIFF_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd: Vec<String>,
    /// Serve plain HTTP on this loopback address (debugging only; never exposed).
    #[arg(long)]
    insecure_listen: SocketAddr,
    /// Directory for this server's local state.
    #[arg(long)]
    data_dir: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.insecure_listen.ip().is_loopback() {
        anyhow::bail!(
            "--insecure-listen {} is not a loopback address: plain HTTP is only for debugging on 127.0.0.1",
            args.insecure_listen
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    let store = Arc::new(Store::new(args.etcd.clone()));
    let app = api::router(api::AppState::new(store));
    let listener = tokio::net::TcpListener::bind(args.insecure_listen)
        .await
        .with_context(|| format!("listening on {}", args.insecure_listen))?;
    info!(listen = %args.insecure_listen, etcd = ?args.etcd, "serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, shutting down"),
    }
}
