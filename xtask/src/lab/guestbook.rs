//! The guestbook demo `cargo xtask up` leaves running: the plain manifests of
//! `examples/guestbook/` applied to the `default` namespace, waited for, and checked once
//! through its LoadBalancer address.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Layout, probe::wait_until};
use crate::cmd::{command, output, workspace_root};

/// Where the demo answers.
pub struct Guestbook {
    /// `http://<LoadBalancer address>/`.
    pub url: String,
    /// `http://<first node>:<node port>/`.
    pub node_port_url: String,
}

fn kubectl(layout: &Layout, args: &[&str]) -> Result<String> {
    let kubeconfig = layout.kubeconfig();
    let mut all = vec![
        "--kubeconfig",
        kubeconfig.to_str().context("kubeconfig path")?,
    ];
    all.extend_from_slice(args);
    output(&mut command("kubectl", all))
}

/// Apply the manifests and wait until the guestbook answers through its address.
pub fn deploy(layout: &Layout, first_node: std::net::Ipv4Addr) -> Result<Guestbook> {
    let manifests = workspace_root().join("examples").join("guestbook");
    kubectl(
        layout,
        &[
            "apply",
            "-n",
            "default",
            "-f",
            manifests.to_str().context("manifest path")?,
        ],
    )?;
    for deployment in ["redis-master", "redis-replica", "frontend"] {
        kubectl(
            layout,
            &[
                "rollout",
                "status",
                "-n",
                "default",
                &format!("deployment/{deployment}"),
                "--timeout=240s",
            ],
        )?;
    }
    let mut ip = String::new();
    wait_until(Duration::from_secs(60), || {
        ip = kubectl(
            layout,
            &[
                "get",
                "service",
                "frontend",
                "-n",
                "default",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
        )?;
        if ip.trim().is_empty() {
            bail!("the frontend Service has no LoadBalancer address yet");
        }
        Ok(())
    })?;
    let node_port = kubectl(
        layout,
        &[
            "get",
            "service",
            "frontend",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
    )?;
    let url = format!("http://{}/", ip.trim());
    let check = format!("{url}guestbook.php?cmd=get&key=messages");
    wait_until(Duration::from_secs(60), || {
        let body = output(&mut command("curl", ["-sf", "--max-time", "2", &check]))?;
        if body.contains("\"data\"") {
            Ok(())
        } else {
            bail!("the guestbook answered {body}")
        }
    })
    .context("the guestbook does not answer through its LoadBalancer address")?;
    Ok(Guestbook {
        url,
        node_port_url: format!("http://{first_node}:{}/", node_port.trim()),
    })
}
