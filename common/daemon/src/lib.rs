//! What every Skiff daemon (skiff-control, skiff-agent) does the same way: log with
//! `tracing` to stderr, filtered by `RUST_LOG`, and shut down cleanly on SIGTERM or SIGINT.

use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

/// Install the process's tracing subscriber: stderr, `RUST_LOG` (default `info`), colours
/// only on a terminal. Call once, early in `main`.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or SIGINT, after logging which one came. If SIGTERM cannot be
/// listened for, says so and waits for SIGINT alone.
pub async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops this process");
            let _ = tokio::signal::ctrl_c().await;
            info!("SIGINT received, shutting down");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, shutting down"),
    }
}
