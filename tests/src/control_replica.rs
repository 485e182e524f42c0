//! A second skiff-control serving the lab's etcd, for tests of several API servers at
//! once (allocation races, leader election, a replica's restart).

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use crate::{Lab, cluster::client_from};

/// A second skiff-control on the lab's etcd, serving on 127.0.0.1:`port`, with a client
/// for it; killed and its data dir removed when dropped.
pub struct Replica {
    process: KillOnDrop,
    /// A client of this replica with the lab's admin identity.
    pub client: Client,
    data_dir: std::path::PathBuf,
}

impl Replica {
    /// Start replica `name` (data dir and log named after it) with `extra` flags and wait
    /// until it serves the API.
    pub async fn start(lab: &Lab, name: &str, port: u16, extra: &[&str]) -> Self {
        let data_dir = lab.dir.join(name);
        std::fs::create_dir_all(&data_dir).expect("dir");
        let log = std::fs::File::create(lab.dir.join(format!("logs/{name}.log"))).expect("log");
        let listen = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(lab.bin("skiff-control"))
            .arg("serve")
            .args(lab.control_etcd_flags())
            .args(["--listen", &listen])
            .args(extra)
            .arg("--data-dir")
            .arg(&data_dir)
            // Tokens any replica issued verify on every replica.
            .arg("--service-account-signing-key-file")
            .arg(lab.dir.join("control").join("service-account.key"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting a second skiff-control");
        // Killed however the test ends: a leftover would hold the port for the next run.
        let process = KillOnDrop(child);
        let mut kubeconfig =
            kube::config::Kubeconfig::read_from(lab.kubeconfig()).expect("kubeconfig");
        for cluster in &mut kubeconfig.clusters {
            if let Some(c) = cluster.cluster.as_mut() {
                c.server = Some(format!("https://{listen}"));
            }
        }
        let path = data_dir.join("kubeconfig");
        std::fs::write(
            &path,
            serde_json::to_string(&kubeconfig).expect("serialize"),
        )
        .expect("write");
        let client: Client = client_from(&path).await;
        // A list, not /version: it needs authentication and etcd, as the tests do.
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut serving = false;
        for _ in 0..100 {
            if maps.list(&Default::default()).await.is_ok() {
                serving = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(serving, "replica {name} never answered on {listen}");
        Self {
            process,
            client,
            data_dir,
        }
    }

    /// The replica's process id (part of its leader-election identity).
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
