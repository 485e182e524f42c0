//! Registry credentials from a pod's imagePullSecrets: `kubernetes.io/dockerconfigjson`
//! (`{"auths": {host: {username, password | auth}}}`) and the legacy
//! `kubernetes.io/dockercfg` (`{host: {…}}`), looked up by the host being contacted.

use std::collections::HashMap;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde_json::Value;

/// Username and password per registry host.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, (String, String)>,
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `host:5000/path` → `host:5000`.
fn host_of(key: &str) -> String {
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    key.split('/').next().unwrap_or(key).to_owned()
}

impl Credentials {
    /// Add the entries of a docker config (either shape).
    pub fn add_docker_config(&mut self, json: &[u8]) -> Result<(), String> {
        let value: Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let auths = value.get("auths").unwrap_or(&value);
        let Some(entries) = auths.as_object() else {
            return Err("no registry entries".to_owned());
        };
        for (key, entry) in entries {
            let text = |f: &str| {
                entry
                    .get(f)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (mut user, mut pass) = (text("username"), text("password"));
            if user.is_empty()
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text("auth"))
                && let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':')
            {
                user = u.to_owned();
                pass = p.to_owned();
            }
            if !user.is_empty() {
                self.by_host.insert(host_of(key), (user, pass));
            }
        }
        Ok(())
    }

    /// The auth to present to `host` (Docker Hub's aliases included).
    pub fn for_host(&self, host: &str) -> RegistryAuth {
        let aliases: &[&str] = if matches!(
            host,
            "docker.io" | "registry-1.docker.io" | "index.docker.io"
        ) {
            &["docker.io", "registry-1.docker.io", "index.docker.io"]
        } else {
            &[]
        };
        std::iter::once(host)
            .chain(aliases.iter().copied())
            .find_map(|h| self.by_host.get(h))
            .map_or(RegistryAuth::Anonymous, |(u, p)| {
                RegistryAuth::Basic(u.clone(), p.clone())
            })
    }

    /// True if no credentials are known.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_secret_shapes_and_docker_hub_aliases() {
        let mut creds = Credentials::default();
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3cret");
        creds
            .add_docker_config(
                format!(r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}}}}}"#)
                    .as_bytes(),
            )
            .expect("dockerconfigjson");
        creds
            .add_docker_config(
                br#"{"registry.example:5000": {"username": "amy", "password": "pw"}}"#,
            )
            .expect("dockercfg");
        assert!(
            matches!(creds.for_host("registry-1.docker.io"), RegistryAuth::Basic(u, p) if u == "bob" && p == "s3cret")
        );
        assert!(
            matches!(creds.for_host("registry.example:5000"), RegistryAuth::Basic(u, _) if u == "amy")
        );
        assert!(matches!(
            creds.for_host("elsewhere.example"),
            RegistryAuth::Anonymous
        ));
        assert!(creds.add_docker_config(b"[]").is_err());
    }
}
