//! etcd's own PKI: a CA kept on disk (the cluster CA lives in etcd, so etcd cannot depend
//! on it), a certificate for the etcd member (server and peer) and one for skiff-control as
//! its client. etcd requires client certificates (`--client-cert-auth`), so nothing without
//! one — no pod, no stray local process — reads or writes the cluster's state.

use std::path::{Path, PathBuf};

use crate::pki::{Ca, Pem, PkiError};

/// Why the PKI could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EtcdPkiError {
    /// Generating a certificate failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The files of the PKI, under one directory.
#[derive(Debug, Clone)]
pub struct EtcdPki {
    dir: PathBuf,
}

impl EtcdPki {
    /// The PKI under `dir`.
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The member's certificate and key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("server.crt"), self.dir.join("server.key"))
    }

    /// The client (skiff-control's) certificate and key.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.crt"), self.dir.join("client.key"))
    }

    fn write(&self, path: &Path, contents: &str, private: bool) -> Result<(), EtcdPkiError> {
        use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
        let io = |source| EtcdPkiError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(path)
            .map_err(io)?;
        file.write_all(contents.as_bytes()).map_err(io)
    }

    /// Create the CA and both certificates (the member's valid for `names`) unless the CA
    /// exists already; an existing PKI is kept, so a restarted etcd keeps its identity.
    pub fn ensure(&self, names: &[String]) -> Result<(), EtcdPkiError> {
        if self.ca_cert().exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| EtcdPkiError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let ca = Ca::generate_named("skiff-etcd-ca")?;
        let server = ca.peer("etcd", names)?;
        let client = ca.client("skiff-control", &[])?;
        let write_pair = |(cert, key): (PathBuf, PathBuf), pem: &Pem| -> Result<(), EtcdPkiError> {
            self.write(&cert, &pem.cert, false)?;
            self.write(&key, &pem.key, true)
        };
        write_pair(self.server(), &server)?;
        write_pair(self.client(), &client)?;
        self.write(&self.dir.join("ca.key"), &ca.pem.key, true)?;
        // The CA certificate last: its presence says the PKI is complete.
        self.write(&self.ca_cert(), &ca.pem.cert, false)
    }
}
