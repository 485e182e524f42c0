//! /version: what `kubectl version` reads. Skiff serves the v1.33 API.

use axum::{http::StatusCode, response::Response};
use serde_json::json;

use super::response;

/// Kubernetes version Skiff's API corresponds to.
pub const GIT_VERSION: &str = "v1.33.0-skiff";

/// The version.Info object kube-apiserver returns.
pub fn version() -> Response {
    response::json(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "33",
            "gitVersion": GIT_VERSION,
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        }),
    )
}
