//! The payload of the volumes whose files come from the API: configMap and secret keys
//! (all of them, or the listed items), downwardAPI fields, and projected volumes combining
//! those with ServiceAccount tokens. Paths are checked later, all at once (see
//! [`super::payload::checked`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret,
};
use kube::{Api, Client};

use super::{
    payload::{FileProjection, Ownership, Payload, mode_bits},
    token::{TokenProjection, TokenSource, token_file_mode},
};

/// A key's bytes by key.
pub type KeyData = BTreeMap<String, Vec<u8>>;

/// The keys of ConfigMap `name` (`data` and `binaryData`); none for a missing optional one.
pub async fn config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<KeyData, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => {
            let mut data: KeyData = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            Ok(data)
        }
        Ok(None) if optional == Some(true) => Ok(KeyData::new()),
        Ok(None) => Err(format!("configmap \"{name}\" not found")),
        Err(e) => Err(format!("reading configmap \"{name}\": {e}")),
    }
}

/// The keys of Secret `name`; none for a missing optional one.
pub async fn secret(
    client: &Client,
    namespace: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<KeyData, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => {
            let mut data: KeyData = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            Ok(data)
        }
        Ok(None) if optional == Some(true) => Ok(KeyData::new()),
        Ok(None) => Err(format!("secret \"{name}\" not found")),
        Err(e) => Err(format!("reading secret \"{name}\": {e}")),
    }
}

/// Keys to files: all keys, or the listed items with their paths and modes.
pub fn project(
    data: &KeyData,
    items: Option<&[KeyToPath]>,
    mode: u32,
    payload: &mut Payload,
    source: &str,
    kind: &str,
) -> Result<(), String> {
    let file = |value: &Vec<u8>, mode: u32| FileProjection {
        data: value.clone(),
        mode,
        uid: None,
    };
    match items {
        None => {
            for (key, value) in data {
                payload.insert(key.clone(), file(value, mode));
            }
        }
        Some(items) => {
            for item in items {
                let value = data
                    .get(&item.key)
                    .ok_or_else(|| format!("{kind} \"{source}\" has no key \"{}\"", item.key))?;
                let mode = item.mode.map_or(mode, mode_bits);
                payload.insert(item.path.clone(), file(value, mode));
            }
        }
    }
    Ok(())
}

/// downwardAPI items with a fieldRef to files.
pub fn downward(pod: &Pod, items: &[DownwardAPIVolumeFile], mode: u32, payload: &mut Payload) {
    for item in items {
        if let Some(field) = &item.field_ref {
            let value = super::super::env::field_value(pod, &field.field_path).unwrap_or_default();
            payload.insert(
                item.path.clone(),
                FileProjection {
                    data: value.into_bytes(),
                    mode: item.mode.map_or(mode, mode_bits),
                    uid: None,
                },
            );
        }
    }
}

/// A projected ServiceAccount token: where it goes and the token first issued.
#[derive(Debug, Clone)]
pub struct ProjectedToken {
    /// Path in the volume.
    pub path: String,
    /// File mode (kubelet's rule for token files).
    pub mode: u32,
    /// The request, for refreshes.
    pub projection: TokenProjection,
    /// The token issued now.
    pub issued: super::token::IssuedToken,
}

/// Everything a projected volume holds: its payload (tokens included) and its tokens.
pub async fn projected(
    client: &Client,
    tokens: &dyn TokenSource,
    pod: &Pod,
    projected: &ProjectedVolumeSource,
    ownership: Ownership,
    fs_user: Option<u32>,
) -> Result<(Payload, Vec<ProjectedToken>), String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mode = projected.default_mode.map_or(0o644, mode_bits);
    let mut payload = Payload::new();
    let mut issued = Vec::new();
    for source in projected.sources.as_deref().unwrap_or_default() {
        if let Some(cm) = &source.config_map {
            let data = config_map(client, &namespace, &cm.name, cm.optional).await?;
            project(
                &data,
                cm.items.as_deref(),
                mode,
                &mut payload,
                &cm.name,
                "configmap",
            )?;
        }
        if let Some(s) = &source.secret {
            let data = secret(client, &namespace, &s.name, s.optional).await?;
            project(
                &data,
                s.items.as_deref(),
                mode,
                &mut payload,
                &s.name,
                "secret",
            )?;
        }
        if let Some(d) = &source.downward_api {
            downward(
                pod,
                d.items.as_deref().unwrap_or_default(),
                mode,
                &mut payload,
            );
        }
        if let Some(t) = &source.service_account_token {
            // The path is checked before the API is asked for anything.
            super::payload::validate_path(&t.path)?;
            let projection = TokenProjection::new(pod, t);
            let token = tokens
                .request(&projection)
                .await
                .map_err(|e| format!("failed to fetch token: {e}"))?;
            let file_mode = token_file_mode(mode, fs_user, ownership.fs_group);
            payload.insert(
                t.path.clone(),
                FileProjection {
                    data: token.token.as_bytes().to_vec(),
                    mode: file_mode,
                    uid: fs_user,
                },
            );
            issued.push(ProjectedToken {
                path: super::payload::clean_path(&t.path),
                mode: file_mode,
                projection,
                issued: token,
            });
        }
        if source.cluster_trust_bundle.is_some() {
            return Err("clusterTrustBundle projections are not supported by skiff-agent".into());
        }
    }
    Ok((payload, issued))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_to_path(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn items_pick_keys_paths_and_modes() {
        let data = KeyData::from([
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
        ]);
        let mut payload = Payload::new();
        project(
            &data,
            Some(&[key_to_path("a", "dir/a.txt", Some(0o4700))]),
            0o644,
            &mut payload,
            "cm",
            "configmap",
        )
        .expect("project");
        assert_eq!(payload.len(), 1);
        let file = &payload["dir/a.txt"];
        assert_eq!((file.data.as_slice(), file.mode), (b"1".as_slice(), 0o700));
        let err = project(
            &data,
            Some(&[key_to_path("z", "z", None)]),
            0o644,
            &mut payload,
            "cm",
            "configmap",
        )
        .expect_err("missing key");
        assert_eq!(err, "configmap \"cm\" has no key \"z\"");
        let mut all = Payload::new();
        project(&data, None, 0o600, &mut all, "cm", "configmap").expect("all");
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(all["b"].mode, 0o600);
    }
}
