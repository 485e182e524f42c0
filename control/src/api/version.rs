//! /version: what `kubectl version` reads. Skiff serves the v1.33 API.

use axum::Json;
use serde_json::{Value, json};

/// Kubernetes version Skiff's API corresponds to.
pub const GIT_VERSION: &str = "v1.33.0-skiff";

/// The version.Info object kube-apiserver returns.
pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "33",
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}
