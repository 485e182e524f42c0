//! A container's environment as kubelet builds it: image ENV, then envFrom, then env (with
//! valueFrom fieldRef / configMapKeyRef / secretKeyRef / resourceFieldRef), with `$(VAR)`
//! references expanded (Service variables are references too), then the Service variables
//! the container does not set itself; and `$(VAR)` expansion in command and args.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};

/// Why the environment could not be built (CreateContainerConfigError).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// The value of a downward-API field path of `pod`.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let label_or_annotation = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        map?.get(key).cloned()
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec?.node_name.clone(),
        "spec.serviceAccountName" => spec?.service_account_name.clone(),
        "status.podIP" => status?.pod_ip.clone(),
        "status.hostIP" => status?.host_ip.clone(),
        "status.podIPs" => status?.pod_ip.clone(),
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" {
                meta.labels.as_ref()
            } else {
                meta.annotations.as_ref()
            };
            Some(
                map.map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}=\"{v}\"\n"))
                        .collect::<String>()
                })
                .unwrap_or_default(),
            )
        }
        _ => label_or_annotation("metadata.labels['", meta.labels.as_ref())
            .or_else(|| label_or_annotation("metadata.annotations['", meta.annotations.as_ref())),
    }
}

/// kubelet's `expansion.Expand`: `$(NAME)` is replaced by `mapping(NAME)`, `$$` is a `$`,
/// and anything else (a lone `$`, an unclosed `$(`) stays as written.
fn expand_with(text: &str, mut mapping: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            out.push_str(&mapping(&inner[..end]));
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Expand `$(NAME)` from `vars`; `$$` escapes; unknown references stay as written.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    expand_with(text, |name| match vars.get(name) {
        Some(value) => value.clone(),
        None => format!("$({name})"),
    })
}

/// kubelet's `ExpandContainerVolumeMounts`: a volumeMount's `subPathExpr` expanded from
/// the container's environment as kubelet resolved it (`vars`); a reference to a variable
/// that is missing or empty is an error, with kubelet's wording.
pub fn expand_sub_path(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut missing = std::collections::BTreeSet::new();
    let expanded = expand_with(expr, |name| match vars.get(name) {
        Some(value) if !value.is_empty() => value.clone(),
        _ => {
            missing.insert(name.to_owned());
            String::new()
        }
    });
    if missing.is_empty() {
        Ok(expanded)
    } else {
        let names: Vec<String> = missing.into_iter().collect();
        Err(format!("missing value for {}", names.join(", ")))
    }
}

/// A container's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// Every variable in order, as `(name, value)`: the image's ENV first.
    pub vars: Vec<(String, String)>,
    /// The variables kubelet itself defines (env, envFrom, Service variables; not the
    /// image's, which only the runtime sees): what `subPathExpr` is expanded from.
    pub kubelet: BTreeMap<String, String>,
}

/// The environment of `container` in `pod`.
pub async fn build(
    client: &Client,
    pod: &Pod,
    container: &Container,
    image_env: &[String],
    service_env: &BTreeMap<String, String>,
) -> Result<ContainerEnv, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for entry in image_env {
        if let Some((k, v)) = entry.split_once('=') {
            if !vars.contains_key(k) {
                order.push(k.to_owned());
            }
            vars.insert(k.to_owned(), v.to_owned());
        }
    }
    // From here on, what kubelet defines.
    let mut kubelet_names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut set = |vars: &mut BTreeMap<String, String>, name: String, value: String| {
        if !vars.contains_key(&name) {
            order.push(name.clone());
        }
        kubelet_names.insert(name.clone());
        vars.insert(name, value);
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for from in container.env_from.as_deref().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(source) = &from.config_map_ref {
            match configmaps.get_opt(&source.name).await {
                Ok(Some(cm)) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                Ok(None) if source.optional == Some(true) => {}
                Ok(None) => {
                    return Err(EnvError(format!("configmap \"{}\" not found", source.name)));
                }
                Err(e) => {
                    return Err(EnvError(format!(
                        "reading configmap \"{}\": {e}",
                        source.name
                    )));
                }
            }
        }
        if let Some(source) = &from.secret_ref {
            match secrets.get_opt(&source.name).await {
                Ok(Some(s)) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        set(
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                Ok(None) if source.optional == Some(true) => {}
                Ok(None) => return Err(EnvError(format!("secret \"{}\" not found", source.name))),
                Err(e) => return Err(EnvError(format!("reading secret \"{}\": {e}", source.name))),
            }
        }
    }
    for var in container.env.as_deref().unwrap_or_default() {
        let value = if let Some(value) = &var.value {
            let mut sources = service_env.clone();
            sources.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            expand(value, &sources)
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                field_value(pod, &field.field_path).unwrap_or_default()
            } else if let Some(key) = &from.config_map_key_ref {
                let cm = configmaps
                    .get_opt(&key.name)
                    .await
                    .map_err(|e| EnvError(format!("reading configmap \"{}\": {e}", key.name)))?;
                match cm.and_then(|cm| cm.data?.get(&key.key).cloned()) {
                    Some(v) => v,
                    None if key.optional == Some(true) => continue,
                    None => {
                        return Err(EnvError(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            key.key, key.name
                        )));
                    }
                }
            } else if let Some(key) = &from.secret_key_ref {
                let secret = secrets
                    .get_opt(&key.name)
                    .await
                    .map_err(|e| EnvError(format!("reading secret \"{}\": {e}", key.name)))?;
                match secret.and_then(|s| s.data?.get(&key.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if key.optional == Some(true) => continue,
                    None => {
                        return Err(EnvError(format!(
                            "couldn't find key {} in Secret {namespace}/{}",
                            key.key, key.name
                        )));
                    }
                }
            } else if let Some(resource) = &from.resource_field_ref {
                resource_value(container, &resource.resource)
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut vars, var.name.clone(), value);
    }
    for (name, value) in service_env {
        if !vars.contains_key(name) {
            set(&mut vars, name.clone(), value.clone());
        }
    }
    let kubelet = kubelet_names
        .into_iter()
        .filter_map(|name| {
            let value = vars.get(&name)?.clone();
            Some((name, value))
        })
        .collect();
    let vars = order
        .into_iter()
        .map(|name| {
            let value = vars.get(&name).cloned().unwrap_or_default();
            (name, value)
        })
        .collect();
    Ok(ContainerEnv { vars, kubelet })
}

fn resource_value(container: &Container, resource: &str) -> String {
    let resources = container.resources.as_ref();
    let (map, name) = match resource.split_once('.') {
        Some(("limits", name)) => (resources.and_then(|r| r.limits.as_ref()), name),
        Some(("requests", name)) => (resources.and_then(|r| r.requests.as_ref()), name),
        _ => return String::new(),
    };
    let Some(quantity) = map.and_then(|m| m.get(name)) else {
        return String::new();
    };
    match name {
        "cpu" => skiff_quantity::millicores(&quantity.0)
            .map(|m| (m.saturating_add(999) / 1000).to_string())
            .unwrap_or_default(),
        _ => skiff_quantity::bytes(&quantity.0)
            .map(|b| b.to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_matches_kubelet() {
        let vars = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5", &vars), "cost $5");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("end$", &vars), "end$");
    }

    #[test]
    fn sub_path_expressions_expand_as_kubelets() {
        let vars = BTreeMap::from([
            ("POD_NAME".to_owned(), "web-0".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]);
        assert_eq!(
            expand_sub_path("logs/$(POD_NAME)", &vars).as_deref(),
            Ok("logs/web-0")
        );
        assert_eq!(
            expand_sub_path("$$(POD_NAME)", &vars).as_deref(),
            Ok("$(POD_NAME)")
        );
        assert_eq!(
            expand_sub_path("$(ZZ)/$(EMPTY)/$(AA)/$(ZZ)", &vars),
            Err("missing value for AA, EMPTY, ZZ".to_owned())
        );
        assert_eq!(expand_sub_path("plain", &vars).as_deref(), Ok("plain"));
    }

    #[test]
    fn downward_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"podIP": "10.244.1.2"}
        }))
        .expect("pod");
        assert_eq!(field_value(&pod, "metadata.name").as_deref(), Some("p"));
        assert_eq!(
            field_value(&pod, "spec.nodeName").as_deref(),
            Some("node-1")
        );
        assert_eq!(
            field_value(&pod, "status.podIP").as_deref(),
            Some("10.244.1.2")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['app']").as_deref(),
            Some("web")
        );
    }
}
