//! Pod address allocation from the node's pod CIDR, persisted to a JSON file after every
//! change, so an agent restart never hands out an address a live pod still holds.

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use tokio::sync::Mutex;

use super::{Cidr, NetworkError, io};

/// The allocator.
pub struct Ipam {
    cidr: Cidr,
    file: PathBuf,
    /// Address → owner (pod UID).
    leases: Mutex<BTreeMap<Ipv4Addr, String>>,
}

impl Ipam {
    /// Load the allocations in `file` (none if it does not exist).
    pub fn load(cidr: Cidr, file: PathBuf) -> Result<Self, NetworkError> {
        let leases = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), error = %e, "IPAM file unreadable; starting empty");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(format!("reading {}", file.display()))(e)),
        };
        Ok(Self {
            cidr,
            file,
            leases: Mutex::new(leases),
        })
    }

    /// The address `owner` holds, or a new one.
    pub async fn allocate(&self, owner: &str) -> Result<Ipv4Addr, NetworkError> {
        let mut leases = self.leases.lock().await;
        if let Some((ip, _)) = leases.iter().find(|(_, o)| o.as_str() == owner) {
            return Ok(*ip);
        }
        let ip = self
            .cidr
            .pod_addresses()
            .find(|ip| !leases.contains_key(ip))
            .ok_or_else(|| NetworkError::Exhausted(self.cidr.to_string()))?;
        leases.insert(ip, owner.to_owned());
        self.save(&leases)?;
        Ok(ip)
    }

    /// Give back whatever `owner` holds.
    pub async fn release(&self, owner: &str) -> Result<(), NetworkError> {
        let mut leases = self.leases.lock().await;
        let before = leases.len();
        leases.retain(|_, o| o != owner);
        if leases.len() != before {
            self.save(&leases)?;
        }
        Ok(())
    }

    /// Owners holding addresses.
    pub async fn owners(&self) -> Vec<String> {
        self.leases.lock().await.values().cloned().collect()
    }

    fn save(&self, leases: &BTreeMap<Ipv4Addr, String>) -> Result<(), NetworkError> {
        let tmp = self.file.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(leases).unwrap_or_default();
        std::fs::write(&tmp, bytes).map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &self.file).map_err(io(format!("replacing {}", self.file.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn allocations_survive_a_restart_and_are_never_shared() {
        let dir = std::env::temp_dir().join(format!("skiff-ipam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("ipam.json");
        let cidr = Cidr::parse("10.244.3.0/24").expect("cidr");
        let ipam = Ipam::load(cidr, file.clone()).expect("load");
        let a = ipam.allocate("a").await.expect("a");
        let b = ipam.allocate("b").await.expect("b");
        assert_ne!(a, b);
        assert_eq!(ipam.allocate("a").await.expect("a again"), a);
        let reloaded = Ipam::load(cidr, file).expect("reload");
        let c = reloaded.allocate("c").await.expect("c");
        assert!(c != a && c != b);
        reloaded.release("a").await.expect("release");
        assert_eq!(reloaded.allocate("d").await.expect("d"), a);
        let _ = std::fs::remove_dir_all(dir);
    }
}
