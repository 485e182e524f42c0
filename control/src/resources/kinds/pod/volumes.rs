//! Pod volume validation as kube-apiserver's (pkg/apis/core/validation): one source per
//! volume, and every path a volume writes or mounts stays inside the volume — item paths
//! (configMap, secret, downwardAPI, projected) and subPath/subPathExpr must be relative and
//! free of `..` elements, so a pod cannot make the agent write outside its volume (issue 21:
//! an item path `/tmp/x` was written on the host). Field paths are kube's, quirks included
//! (downwardAPI items and volumeMounts' subPath carry no index; a projected token's path is
//! reported at `projected.path`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, ProjectedVolumeSource, Volume, VolumeMount,
};
use serde_json::Value;

use crate::model::validation::{ErrorList, FieldError};

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MORE_THAN_ONE: &str = "may not specify more than 1 volume type";
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// Volume sources in the order kube checks them: (JSON field, the name kube's "more than 1
/// volume type" error uses for it — its spelling, typos included).
const SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// kube's validateLocalDescendingPath: relative, and no `..` element.
pub(crate) fn local_descending_path(path: &str, field: &str, errors: &mut ErrorList) {
    if path.starts_with('/') {
        errors.push(FieldError::invalid(field, path, "must be a relative path"));
    }
    no_backsteps(path, field, errors);
}

/// kube's validatePathNoBacksteps (one error even for `../../..`).
fn no_backsteps(path: &str, field: &str, errors: &mut ErrorList) {
    if path.split('/').any(|element| element == "..") {
        errors.push(FieldError::invalid(field, path, "must not contain '..'"));
    }
}

/// kube's ValidateLocalNonReservedPath: a descending path that also does not start with
/// `..` (reserved for the atomic writer's `..data` links).
fn local_non_reserved_path(path: &str, field: &str, errors: &mut ErrorList) {
    local_descending_path(path, field, errors);
    if path.starts_with("..") && !path.starts_with("../") {
        errors.push(FieldError::invalid(field, path, "must not start with '..'"));
    }
}

fn file_mode(mode: Option<i32>, field: &str, errors: &mut ErrorList) {
    if let Some(mode) = mode
        && !(0..=0o777).contains(&mode)
    {
        errors.push(FieldError::invalid(field, mode, FILE_MODE_ERROR));
    }
}

fn required_text(value: Option<&str>, field: &str, errors: &mut ErrorList) {
    if value.is_none_or(str::is_empty) {
        errors.push(FieldError::required(field, ""));
    }
}

/// kube's validateKeyToPath.
fn key_to_path(item: &KeyToPath, field: &str, errors: &mut ErrorList) {
    if item.key.is_empty() {
        errors.push(FieldError::required(format!("{field}.key"), ""));
    }
    if item.path.is_empty() {
        errors.push(FieldError::required(format!("{field}.path"), ""));
    }
    local_non_reserved_path(&item.path, &format!("{field}.path"), errors);
    file_mode(item.mode, &format!("{field}.mode"), errors);
}

fn key_to_paths(items: Option<&Vec<KeyToPath>>, field: &str, errors: &mut ErrorList) {
    for (i, item) in items.into_iter().flatten().enumerate() {
        key_to_path(item, &format!("{field}.items[{i}]"), errors);
    }
}

/// kube's validateDownwardAPIVolumeFile; `field` is the source's path (kube adds no index).
fn downward_api_file(file: &DownwardAPIVolumeFile, field: &str, errors: &mut ErrorList) {
    if file.path.is_empty() {
        errors.push(FieldError::required(format!("{field}.path"), ""));
    }
    local_non_reserved_path(&file.path, &format!("{field}.path"), errors);
    match (&file.field_ref, &file.resource_field_ref) {
        (Some(_), Some(_)) => errors.push(FieldError::invalid(
            field,
            "resource",
            "fieldRef and resourceFieldRef can not be specified simultaneously",
        )),
        (None, None) => errors.push(FieldError::required(
            field,
            "one of fieldRef and resourceFieldRef is required",
        )),
        _ => {}
    }
    file_mode(file.mode, &format!("{field}.mode"), errors);
}

/// kube's validateProjectionSources.
fn projected(projection: &ProjectedVolumeSource, field: &str, errors: &mut ErrorList) {
    file_mode(
        projection.default_mode,
        &format!("{field}.defaultMode"),
        errors,
    );
    let mut all_paths = BTreeSet::new();
    let mut claim = |path: &str, reported: &str, errors: &mut ErrorList| {
        if !path.is_empty() && !all_paths.insert(path.to_owned()) {
            errors.push(FieldError::invalid(
                field,
                reported,
                "conflicting duplicate paths",
            ));
        }
    };
    for (i, source) in projection.sources.iter().flatten().enumerate() {
        let source_field = format!("{field}.sources[{i}]");
        let mut kinds = 0;
        if let Some(secret) = &source.secret {
            kinds += 1;
            let at = format!("{source_field}.secret");
            required_text(Some(&secret.name), &format!("{at}.name"), errors);
            for (j, item) in secret.items.iter().flatten().enumerate() {
                key_to_path(item, &format!("{at}.items[{j}]"), errors);
                claim(&item.path, &secret.name, errors);
            }
        }
        if let Some(config_map) = &source.config_map {
            kinds += 1;
            let at = format!("{source_field}.configMap");
            required_text(Some(&config_map.name), &format!("{at}.name"), errors);
            for (j, item) in config_map.items.iter().flatten().enumerate() {
                key_to_path(item, &format!("{at}.items[{j}]"), errors);
                claim(&item.path, &config_map.name, errors);
            }
        }
        if let Some(downward) = &source.downward_api {
            kinds += 1;
            let at = format!("{source_field}.downwardAPI");
            for file in downward.items.iter().flatten() {
                downward_api_file(file, &at, errors);
                claim(&file.path, &file.path, errors);
            }
        }
        if let Some(token) = &source.service_account_token {
            kinds += 1;
            let at = format!("{source_field}.serviceAccountToken");
            if let Some(seconds) = token.expiration_seconds {
                if seconds < 10 * 60 {
                    errors.push(FieldError::invalid(
                        format!("{at}.expirationSeconds"),
                        seconds,
                        "may not specify a duration less than 10 minutes",
                    ));
                }
                if seconds > 1 << 32 {
                    errors.push(FieldError::invalid(
                        format!("{at}.expirationSeconds"),
                        seconds,
                        "may not specify a duration larger than 2^32 seconds",
                    ));
                }
            }
            // kube reports the token's path at the projected volume's `path`.
            if token.path.is_empty() {
                errors.push(FieldError::required(format!("{field}.path"), ""));
            } else {
                local_non_reserved_path(&token.path, &format!("{field}.path"), errors);
            }
        }
        if let Some(bundle) = &source.cluster_trust_bundle {
            kinds += 1;
            let at = format!("{source_field}.clusterTrustBundlePEM");
            if bundle.path.is_empty() {
                errors.push(FieldError::required(format!("{at}.path"), ""));
            }
            local_non_reserved_path(&bundle.path, &format!("{at}.path"), errors);
            claim(&bundle.path, &bundle.path, errors);
        }
        if kinds > 1 {
            errors.push(FieldError::forbidden(&source_field, MORE_THAN_ONE));
        }
    }
}

/// Validate the source of `volume` (the volume at `field`, `spec.volumes[0]`).
pub(crate) fn volume_source(volume: &Volume, field: &str, errors: &mut ErrorList) {
    let as_json = serde_json::to_value(volume).unwrap_or(Value::Null);
    let mut present = SOURCES
        .iter()
        .filter(|(json, _)| as_json.get(json).is_some_and(|v| !v.is_null()));
    let first = present.next().map(|(json, _)| *json);
    // Every source after the first is refused (and not validated further).
    for (_, reported) in present {
        errors.push(FieldError::forbidden(
            format!("{field}.{reported}"),
            MORE_THAN_ONE,
        ));
    }
    match first {
        Some("emptyDir") => {
            let size = volume
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref());
            if size.is_some_and(|q| {
                skiff_quantity::Quantity::parse(&q.0).is_ok_and(|q| q.is_negative())
            }) {
                errors.push(FieldError::forbidden(
                    format!("{field}.emptyDir.sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
        }
        Some("hostPath") => {
            let Some(host) = &volume.host_path else {
                return;
            };
            let at = format!("{field}.hostPath");
            if host.path.is_empty() {
                errors.push(FieldError::required(format!("{at}.path"), ""));
                return;
            }
            no_backsteps(&host.path, &format!("{at}.path"), errors);
            if let Some(kind) = &host.type_
                && !HOST_PATH_TYPES.contains(&kind.as_str())
            {
                errors.push(FieldError::not_supported(
                    format!("{at}.type"),
                    kind,
                    HOST_PATH_TYPES,
                ));
            }
        }
        Some("gitRepo") => {
            let Some(git) = &volume.git_repo else { return };
            let at = format!("{field}.gitRepo");
            if git.repository.is_empty() {
                errors.push(FieldError::required(format!("{at}.repository"), ""));
            }
            let directory = git.directory.as_deref().unwrap_or_default();
            local_descending_path(directory, &format!("{at}.directory"), errors);
        }
        Some("secret") => {
            let Some(secret) = &volume.secret else { return };
            let at = format!("{field}.secret");
            required_text(
                secret.secret_name.as_deref(),
                &format!("{at}.secretName"),
                errors,
            );
            file_mode(secret.default_mode, &format!("{at}.defaultMode"), errors);
            key_to_paths(secret.items.as_ref(), &at, errors);
        }
        Some("configMap") => {
            let Some(config_map) = &volume.config_map else {
                return;
            };
            let at = format!("{field}.configMap");
            required_text(Some(&config_map.name), &format!("{at}.name"), errors);
            file_mode(
                config_map.default_mode,
                &format!("{at}.defaultMode"),
                errors,
            );
            key_to_paths(config_map.items.as_ref(), &at, errors);
        }
        Some("downwardAPI") => {
            let Some(downward) = &volume.downward_api else {
                return;
            };
            let at = format!("{field}.downwardAPI");
            file_mode(downward.default_mode, &format!("{at}.defaultMode"), errors);
            for file in downward.items.iter().flatten() {
                downward_api_file(file, &at, errors);
            }
        }
        Some("projected") => {
            if let Some(projection) = &volume.projected {
                projected(projection, &format!("{field}.projected"), errors);
            }
        }
        Some("persistentVolumeClaim")
            if volume
                .persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name.is_empty()) =>
        {
            errors.push(FieldError::required(
                format!("{field}.persistentVolumeClaim.claimName"),
                "",
            ));
        }
        _ => {}
    }
}

/// The path checks of one container's volume mounts (`field`: `spec.containers[0]`).
pub(crate) fn mount_paths(mounts: &[VolumeMount], field: &str, errors: &mut ErrorList) {
    // kube reports subPath errors at `volumeMounts.subPath`, without the mount's index.
    let list = format!("{field}.volumeMounts");
    for (i, mount) in mounts.iter().enumerate() {
        let sub_path = mount.sub_path.as_deref().unwrap_or_default();
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &format!("{list}.subPath"), errors);
        }
        let expression = mount.sub_path_expr.as_deref().unwrap_or_default();
        if !expression.is_empty() {
            if !sub_path.is_empty() {
                errors.push(FieldError::invalid(
                    format!("{list}[{i}].subPathExpr"),
                    expression,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(expression, &format!("{list}.subPathExpr"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use crate::resources::strategy::{Strategy, Typed};

    fn errors_of(volumes: serde_json::Value, mounts: serde_json::Value) -> Vec<String> {
        let body = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": mounts}],
            "volumes": volumes}});
        Typed::<Pod>::new()
            .prepare(&body, None)
            .expect("decodes")
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn volume_errors(volume: serde_json::Value) -> Vec<String> {
        errors_of(json!([volume]), json!([]))
    }

    #[test]
    fn item_paths_stay_inside_the_volume() {
        // Issue 21: this item path was written on the host.
        assert_eq!(
            volume_errors(json!({"name": "v", "configMap": {"name": "cm", "items": [
                {"key": "a", "path": "/tmp/x"}, {"key": "b", "path": "x/../../y"},
                {"key": "c", "path": "..data"}, {"key": "d", "path": "ok/file"}]}})),
            [
                "spec.volumes[0].configMap.items[0].path: Invalid value: \"/tmp/x\": must be a relative path",
                "spec.volumes[0].configMap.items[1].path: Invalid value: \"x/../../y\": must not contain '..'",
                "spec.volumes[0].configMap.items[2].path: Invalid value: \"..data\": must not start with '..'",
            ]
        );
        assert_eq!(
            volume_errors(
                json!({"name": "v", "secret": {"secretName": "s", "defaultMode": 1024,
                "items": [{"key": "", "path": "", "mode": -1}]}})
            ),
            [
                "spec.volumes[0].secret.defaultMode: Invalid value: 1024: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[0].secret.items[0].key: Required value",
                "spec.volumes[0].secret.items[0].path: Required value",
                "spec.volumes[0].secret.items[0].mode: Invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive",
            ]
        );
        // kube reports downwardAPI items without their index.
        assert_eq!(
            volume_errors(json!({"name": "v", "downwardAPI": {"items": [
                {"path": "../up", "fieldRef": {"fieldPath": "metadata.name"}}]}})),
            ["spec.volumes[0].downwardAPI.path: Invalid value: \"../up\": must not contain '..'"]
        );
    }

    #[test]
    fn projected_sources_are_checked_like_kube() {
        assert_eq!(
            volume_errors(json!({"name": "v", "projected": {"sources": [
                {"configMap": {"name": "a", "items": [{"key": "k", "path": "same"}]}},
                {"secret": {"name": "b", "items": [{"key": "k", "path": "same"}]},
                 "serviceAccountToken": {"path": "/token", "expirationSeconds": 60}}]}})),
            [
                "spec.volumes[0].projected: Invalid value: \"b\": conflicting duplicate paths",
                "spec.volumes[0].projected.sources[1].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
                "spec.volumes[0].projected.path: Invalid value: \"/token\": must be a relative path",
                "spec.volumes[0].projected.sources[1]: Forbidden: may not specify more than 1 volume type",
            ]
        );
    }

    #[test]
    fn one_source_per_volume_and_sane_host_paths() {
        assert_eq!(
            volume_errors(
                json!({"name": "v", "emptyDir": {}, "hostPath": {"path": "/var/../etc"},
                                 "downwardAPI": {}})
            ),
            [
                "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
                "spec.volumes[0].downwarAPI: Forbidden: may not specify more than 1 volume type",
            ]
        );
        assert_eq!(
            volume_errors(
                json!({"name": "v", "hostPath": {"path": "/var/../etc", "type": "Pipe"}})
            ),
            [
                "spec.volumes[0].hostPath.path: Invalid value: \"/var/../etc\": must not contain '..'",
                "spec.volumes[0].hostPath.type: Unsupported value: \"Pipe\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
            ]
        );
        assert_eq!(
            volume_errors(json!({"name": "v", "emptyDir": {"sizeLimit": "-1Gi"}})),
            [
                "spec.volumes[0].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity"
            ]
        );
        assert!(volume_errors(json!({"name": "v", "hostPath": {"path": "/var/log"}})).is_empty());
    }

    #[test]
    fn sub_paths_are_relative_and_descending() {
        let volumes = json!([{"name": "v", "emptyDir": {}}]);
        assert_eq!(
            errors_of(
                volumes.clone(),
                json!([
                    {"name": "v", "mountPath": "/a", "subPath": "/etc"},
                    {"name": "v", "mountPath": "/b", "subPathExpr": "$(POD)/../.."},
                    {"name": "v", "mountPath": "/c", "subPath": "x", "subPathExpr": "y"},
                    {"name": "v", "mountPath": "/d", "subPath": "logs/..x"}])
            ),
            [
                "spec.containers[0].volumeMounts.subPath: Invalid value: \"/etc\": must be a relative path",
                "spec.containers[0].volumeMounts.subPathExpr: Invalid value: \"$(POD)/../..\": must not contain '..'",
                "spec.containers[0].volumeMounts[2].subPathExpr: Invalid value: \"y\": subPathExpr and subPath are mutually exclusive",
            ]
        );
    }
}
