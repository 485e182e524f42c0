//! A second skiff-control on the lab's etcd, for benchmarks that compare two
//! configurations of the API server side by side (authorization on and off). Stopped when
//! dropped.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};

use super::{
    Layout,
    probe::{http_get, wait_until},
};

/// Health port of the extra server (plain HTTP, loopback).
const HEALTH_PORT: u16 = 10259;

/// The running extra server; killed on drop.
pub struct ExtraControl(Child);

impl Drop for ExtraControl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start skiff-control `name` on 127.0.0.1:`port` with the lab's keys and `extra` flags;
/// returns once it answers its health check.
pub fn start_extra_control(
    layout: &Layout,
    name: &str,
    port: u16,
    extra: &[&str],
) -> Result<ExtraControl> {
    let data_dir = layout.root.join(name);
    std::fs::create_dir_all(&data_dir)?;
    let log = std::fs::File::create(layout.logs().join(format!("{name}.log")))?;
    let child = Command::new(layout.bin("skiff-control"))
        .arg("serve")
        .args(layout.etcd_client_args())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--healthz-listen")
        .arg(format!("127.0.0.1:{HEALTH_PORT}"))
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--service-account-signing-key-file")
        .arg(layout.service_account_key())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting skiff-control {name}"))?;
    let server = ExtraControl(child);
    let health = SocketAddrV4::new(Ipv4Addr::LOCALHOST, HEALTH_PORT).into();
    wait_until(Duration::from_secs(60), || http_get(health, "/healthz"))
        .with_context(|| format!("skiff-control {name} did not become healthy"))?;
    Ok(server)
}
