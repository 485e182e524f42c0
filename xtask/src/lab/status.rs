//! `cargo xtask status`: every component and node with its health.

use std::net::SocketAddr;

use anyhow::Result;

use super::{
    layout::{Layout, node_cgroup2, node_pin_dir},
    network,
    probe::{alive, http_get},
    record::{Daemon, Record},
    up::ctr,
};

/// Entry point of `cargo xtask status`.
pub fn status() -> Result<()> {
    let layout = Layout::current();
    match Record::load(&layout)? {
        Some(record) => {
            print(&layout, &record);
            if record.daemons.iter().all(|d| alive(d.pid)) {
                Ok(())
            } else {
                anyhow::bail!("the lab is degraded: some components are not running (see above)")
            }
        }
        None => {
            println!("No lab is running. Start one with `cargo xtask up`.");
            Ok(())
        }
    }
}

/// Print the component and node tables of a recorded lab.
pub fn print(layout: &Layout, record: &Record) {
    println!("{:<22} {:>8}  {:<8} HEALTH", "COMPONENT", "PID", "STATE");
    for daemon in &record.daemons {
        let state = if alive(daemon.pid) { "running" } else { "dead" };
        println!(
            "{:<22} {:>8}  {:<8} {}",
            daemon.name,
            daemon.pid,
            state,
            health(layout, daemon)
        );
    }
    println!(
        "\n{:<14} {:<14} {:<8} {:<8} PINS",
        "NODE", "ADDRESS", "NETNS", "CGROUP"
    );
    let namespaces = network::lab_namespaces();
    for index in 1..=record.nodes {
        let node = super::layout::Node::new(index);
        let netns = namespaces.contains(&node.name);
        let address =
            network::node_address(&node.name).map_or_else(|| "-".to_owned(), |a| a.to_string());
        let cgroup = node_cgroup2(&node).is_some_and(|c| c.exists());
        let pins = std::fs::read_dir(node_pin_dir(&node)).map_or(0, |d| d.count());
        println!(
            "{:<14} {:<14} {:<8} {:<8} {pins}",
            node.name,
            address,
            yes(netns),
            yes(cgroup)
        );
    }
    println!("\nlogs: {}", layout.logs().display());
}

fn yes(b: bool) -> &'static str {
    if b { "ok" } else { "missing" }
}

fn health(layout: &Layout, daemon: &Daemon) -> String {
    let result = if daemon.name == "containerd" {
        ctr(&layout.containerd_socket(), &["version"]).map(drop)
    } else if let Some(url) = daemon.health.strip_prefix("http://") {
        let (addr, path) = url.split_once('/').unwrap_or((url, ""));
        match addr.parse::<SocketAddr>() {
            Ok(addr) => http_get(addr, &format!("/{path}")).map(drop),
            Err(e) => Err(e.into()),
        }
    } else {
        Ok(())
    };
    match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("FAILING: {e:#}"),
    }
}
