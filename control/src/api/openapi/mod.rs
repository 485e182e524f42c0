//! OpenAPI documents generated from the resource registry, in both forms kube-apiserver
//! serves:
//!
//! - v3 ([`v3`]): a root index and one document per group-version, which kubectl reads to
//!   learn that the server validates fields (`fieldValidation`) and `kubectl explain` walks;
//! - v2 ([`v2`]): one swagger 2.0 document for every group, as JSON or as gnostic's
//!   protobuf ([`v2_proto`]), which kubectl reads to validate `kind: List` items on the
//!   client side (and to check `fieldValidation` support when v3 cannot tell).
//!
//! Both describe the same paths and operations ([`endpoints`]) and the same schemas
//! ([`schemas`]: k8s-openapi's, with kube's names and descriptions; a CRD version's own
//! schema). Documents are built on first use and cached until the served set changes.

mod v2;
mod v2_proto;
mod v3;

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

pub use v2::serve as serve_v2;
pub use v3::{group_version, root};

use crate::resources::{ResourceInfo, Subresource};

/// A document built from the served resources, rebuilt when they change (a CRD
/// established, updated or deleted).
struct Cached<T> {
    slot: Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Cached<T> {
    const fn new() -> Self {
        Self {
            slot: Mutex::new(None),
        }
    }

    /// The document of the current served set, built by `build` if it is not cached.
    fn get(&self, build: impl FnOnce() -> T) -> Arc<T> {
        let generation = crate::resources::custom::generation();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some((built, document)) if *built == generation => Arc::clone(document),
            _ => {
                let document = Arc::new(build());
                *slot = Some((generation, Arc::clone(&document)));
                document
            }
        }
    }
}

/// The extension naming the kind a schema or an operation is about.
const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// One operation on a path, independent of the OpenAPI version that renders it.
#[derive(Debug)]
struct Operation {
    /// The HTTP method, lower case (`get`, `post`…).
    method: &'static str,
    /// kube's `x-kubernetes-action` (`get`, `list`, `post`, `put`, `patch`, `delete`,
    /// `deletecollection`).
    action: &'static str,
    /// `operationId`, kube's spelling (`readDeploymentv1`…).
    id: String,
    /// The kind the operation takes or returns: `{"group", "version", "kind"}`.
    gvk: Value,
    /// Takes the write parameters (`dryRun`, `fieldManager`, `fieldValidation`).
    writes: bool,
}

/// A path and its operations.
#[derive(Debug)]
struct Endpoint {
    /// `/apis/apps/v1/namespaces/{namespace}/deployments/{name}`…
    path: String,
    /// The operations, in kube's order.
    operations: Vec<Operation>,
}

/// The paths one resource is served at and their operations.
fn endpoints(r: &ResourceInfo) -> Vec<Endpoint> {
    let gv = gv_path(r.group, r.version);
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let base = if r.namespaced {
        format!("/{gv}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("/{gv}/{}", r.plural)
    };
    let id = format!("{}{}", r.kind, r.version);
    let op = |method, action, id: String, gvk: &Value, writes| Operation {
        method,
        action,
        id,
        gvk: gvk.clone(),
        writes,
    };
    if !r.stored() {
        return vec![Endpoint {
            path: base,
            operations: vec![op("post", "post", format!("create{id}"), &gvk, true)],
        }];
    }
    let mut out = vec![
        Endpoint {
            path: base.clone(),
            operations: vec![
                op("get", "list", format!("list{id}"), &gvk, false),
                op("post", "post", format!("create{id}"), &gvk, true),
                op(
                    "delete",
                    "deletecollection",
                    format!("deletecollection{id}"),
                    &gvk,
                    false,
                ),
            ],
        },
        Endpoint {
            path: format!("{base}/{{name}}"),
            operations: vec![
                op("get", "get", format!("read{id}"), &gvk, false),
                op("put", "put", format!("replace{id}"), &gvk, true),
                op("patch", "patch", format!("patch{id}"), &gvk, true),
                op("delete", "delete", format!("delete{id}"), &gvk, false),
            ],
        },
    ];
    let scale = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
    for (sub, name, gvk) in [
        (Subresource::Status, "Status", &gvk),
        (Subresource::Scale, "Scale", &scale),
    ] {
        if r.has(sub) {
            out.push(Endpoint {
                path: format!("{base}/{{name}}/{}", name.to_lowercase()),
                operations: vec![
                    op("get", "get", format!("read{id}{name}"), gvk, false),
                    op("put", "put", format!("replace{id}{name}"), gvk, true),
                    op("patch", "patch", format!("patch{id}{name}"), gvk, true),
                ],
            });
        }
    }
    out
}

/// The schemas of `resources`' kinds and of everything they reference, by kube's
/// definition names, with OpenAPI v3 references (`#/components/schemas/<name>`); each
/// kind's schema lists its kinds in `x-kubernetes-group-version-kind`. Also returns the
/// definition name of each resource's kind.
fn schemas<'a>(
    resources: impl IntoIterator<Item = &'a ResourceInfo>,
) -> (Map<String, Value>, Vec<(String, &'a ResourceInfo)>) {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let kinds: Vec<_> = resources
        .into_iter()
        .map(|r| (r.strategy.add_schema(&mut generator), r))
        .collect();
    let mut definitions = generator.take_definitions(true);
    for (name, r) in &kinds {
        let Some(Value::Object(schema)) = definitions.get_mut(name) else {
            continue;
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let listed = schema
            .entry(GVK_EXTENSION)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = listed
            && !list.contains(&gvk)
        {
            list.push(gvk);
        }
    }
    (definitions, kinds)
}
