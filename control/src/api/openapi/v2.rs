//! OpenAPI v2 (swagger 2.0): `GET /openapi/v2`, one document for every group, as JSON or as
//! gnostic's protobuf ([`super::v2_proto`]) by the `Accept` header, with an `ETag`.
//!
//! kubectl reads it through client-go's `OpenAPISchema()` (protobuf) to validate the items
//! of a `kind: List` on the client side, finding each item's definition by
//! `x-kubernetes-group-version-kind`, and to learn whether a kind's PATCH takes
//! `fieldValidation` when the v3 documents cannot tell. The definitions are the v3
//! documents' schemas rewritten the way kube publishes them in v2 ([`to_v2`]).

use std::sync::Arc;

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use prost::Message as _;
use serde_json::{Map, Value, json};

use super::{Cached, GVK_EXTENSION, endpoints, schemas, v2_proto};
use crate::resources::served;

/// The JSON media type.
const JSON: &str = "application/json";
/// The protobuf media type kube answers with.
const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The protobuf media type client-go asks for (kube accepts both spellings).
const PROTOBUF_CLIENT_GO: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

const REF_V3: &str = "#/components/schemas/";
const REF_V2: &str = "#/definitions/";

/// Definitions of Go types that choose their own OpenAPI v2 type and format
/// (`OpenAPISchemaType`/`OpenAPISchemaFormat` in apimachinery) where k8s-openapi only says
/// `x-kubernetes-int-or-string`: (name, type, format) as kube publishes them in v2.
const GO_DEFINED: &[(&str, &str, &str)] = &[
    (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "string",
        "int-or-string",
    ),
    (
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
        "string",
        "",
    ),
];

/// One representation of the document and its entity tag.
struct Representation {
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
}

struct Documents {
    json: Representation,
    protobuf: Representation,
}

fn documents() -> Arc<Documents> {
    static DOCS: Cached<Documents> = Cached::new();
    DOCS.get(|| {
        let doc = document();
        let json = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        let protobuf = Bytes::from(v2_proto::document(&doc).encode_to_vec());
        Documents {
            json: representation(JSON, json),
            protobuf: representation(PROTOBUF, protobuf),
        }
    })
}

fn representation(content_type: &'static str, body: Bytes) -> Representation {
    // kube's form of ETag: the quoted upper-case hex SHA-512 of the body. (kube hashes the
    // JSON for both representations; here each has its own, as `Vary: Accept` caches expect.)
    let digest = ring::digest::digest(&ring::digest::SHA512, &body);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    Representation {
        content_type,
        body,
        etag: HeaderValue::from_str(&format!("\"{hex}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
    }
}

/// GET /openapi/v2: the protobuf or the JSON document, whichever the `Accept` header
/// prefers (JSON for `*/*` or no header, 406 for neither), 304 when `If-None-Match` names
/// the current one.
pub fn serve(headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let docs = documents();
    let chosen = negotiate(accept).map(|media| match media {
        Media::Json => &docs.json,
        Media::Protobuf => &docs.protobuf,
    });
    let mut response = Response::new(Body::empty());
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    let Some(chosen) = chosen else {
        *response.status_mut() = StatusCode::NOT_ACCEPTABLE;
        return response;
    };
    let headers_out = response.headers_mut();
    headers_out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(chosen.content_type),
    );
    headers_out.insert(header::ETAG, chosen.etag.clone());
    if none_match(headers, &chosen.etag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
    } else {
        *response.body_mut() = Body::from(chosen.body.clone());
    }
    response
}

/// The two representations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    Protobuf,
}

/// The representation the `Accept` header prefers: clauses by descending `q` (ties in
/// the order given), the first one either representation matches, as kube's handler
/// does (`*/*` and `application/*` pick JSON).
fn negotiate(accept: &str) -> Option<Media> {
    let mut clauses: Vec<(&str, f32)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';').map(str::trim);
            let media = parts.next().filter(|m| !m.is_empty())?;
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((media, q))
        })
        .filter(|(_, q)| *q > 0.0)
        .collect();
    clauses.sort_by(|a, b| b.1.total_cmp(&a.1));
    clauses
        .into_iter()
        .find_map(|(media, _)| match media.to_ascii_lowercase().as_str() {
            "*/*" | "application/*" | JSON => Some(Media::Json),
            PROTOBUF | PROTOBUF_CLIENT_GO => Some(Media::Protobuf),
            _ => None,
        })
}

/// True if `If-None-Match` lists `etag` (or is `*`); weak tags compare equal too.
fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// The swagger 2.0 document of every served resource.
fn document() -> Value {
    let (definitions, kinds) = schemas(served().iter().copied());
    let definitions: Map<String, Value> = definitions
        .into_iter()
        .map(|(name, mut schema)| {
            if let Some((_, ty, format)) = GO_DEFINED.iter().find(|(n, ..)| *n == name)
                && let Value::Object(o) = &mut schema
            {
                o.remove("x-kubernetes-int-or-string");
                o.insert("type".to_owned(), json!(ty));
                if !format.is_empty() {
                    o.insert("format".to_owned(), json!(format));
                }
            }
            if let Value::Object(o) = &mut schema
                && o.contains_key(GVK_EXTENSION)
            {
                not_required(o, "metadata");
            }
            to_v2(&mut schema);
            (name, schema)
        })
        .collect();
    let write_params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation"]
        .iter()
        .map(|name| json!({"name": name, "in": "query", "type": "string", "uniqueItems": true}))
        .collect();
    let mut paths = Map::new();
    for (definition, r) in &kinds {
        let kind_ref = json!({"$ref": format!("{REF_V2}{definition}")});
        for endpoint in endpoints(r) {
            let mut item = Map::new();
            for op in &endpoint.operations {
                let own_kind = op.gvk["kind"] == r.kind;
                let mut parameters = Vec::new();
                if op.writes {
                    let body = if own_kind && op.method != "patch" {
                        kind_ref.clone()
                    } else {
                        json!({"type": "object"})
                    };
                    parameters.push(
                        json!({"name": "body", "in": "body", "required": true, "schema": body}),
                    );
                    parameters.extend(write_params.iter().cloned());
                }
                let mut ok = json!({"description": "OK"});
                if own_kind && op.action != "list" && op.action != "deletecollection" {
                    ok["schema"] = kind_ref.clone();
                }
                // No `consumes` on PATCH: kubectl apply would then compute strategic merge
                // patches from these definitions, which lack kube's patch-merge-key
                // extensions, instead of from its compiled-in types.
                let consumes = (op.method != "patch").then(|| json!(["*/*"]));
                let mut operation = json!({
                    "operationId": op.id,
                    "produces": [JSON],
                    "schemes": ["https"],
                    "parameters": parameters,
                    "responses": {"200": ok, "401": {"description": "Unauthorized"}},
                    "x-kubernetes-action": op.action,
                    GVK_EXTENSION: op.gvk,
                });
                if let Some(consumes) = consumes {
                    operation["consumes"] = consumes;
                }
                item.insert(op.method.to_owned(), operation);
            }
            let mut path_params = Vec::new();
            for name in ["name", "namespace"] {
                if endpoint.path.contains(&format!("{{{name}}}")) {
                    path_params.push(json!({"name": name, "in": "path", "required": true, "type": "string", "uniqueItems": true}));
                }
            }
            if !path_params.is_empty() {
                item.insert("parameters".to_owned(), Value::Array(path_params));
            }
            paths.insert(endpoint.path, Value::Object(item));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

/// Drop `field` from a schema's `required`. k8s-openapi requires every kind's `metadata`
/// (its Rust field is not optional); kube's v2 does not (core/v1 Event aside), and kubectl
/// would refuse a `kind: List` item without one before the server could say what is
/// missing.
fn not_required(schema: &mut Map<String, Value>, field: &str) {
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|r| r != field);
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

/// Rewrite a schema generated for OpenAPI v3 as kube's v2 has it: references into
/// `#/definitions/`, a described reference as `$ref` with siblings (not an `allOf` of one,
/// which kubectl would not follow), no `nullable`/`oneOf`/`anyOf`/`not` (not in swagger
/// 2.0), one non-null type, and an untyped `x-kubernetes-int-or-string` as
/// `type: string, format: int-or-string`.
fn to_v2(schema: &mut Value) {
    let Value::Object(o) = schema else {
        return;
    };
    let single_ref = match o.get("allOf") {
        Some(Value::Array(all)) if all.len() == 1 => all[0]
            .as_object()
            .filter(|only| only.len() == 1)
            .and_then(|only| only.get("$ref"))
            .cloned(),
        _ => None,
    };
    if let Some(reference) = single_ref
        && !o.contains_key("type")
        && !o.contains_key("properties")
        && !o.contains_key("$ref")
    {
        o.remove("allOf");
        o.insert("$ref".to_owned(), reference);
    }
    if let Some(Value::String(reference)) = o.get_mut("$ref")
        && let Some(name) = reference.strip_prefix(REF_V3)
    {
        *reference = format!("{REF_V2}{name}");
    }
    for key in ["nullable", "oneOf", "anyOf", "not"] {
        o.remove(key);
    }
    if let Some(Value::Array(types)) = o.get("type") {
        let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        match types.as_slice() {
            [] => {
                o.remove("type");
            }
            [one] => {
                o.insert("type".to_owned(), one.clone());
            }
            _ => {
                o.insert("type".to_owned(), Value::Array(types));
            }
        }
    }
    if o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && !o.contains_key("type")
        && !o.contains_key("$ref")
    {
        o.insert("type".to_owned(), json!("string"));
        o.insert("format".to_owned(), json!("int-or-string"));
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(children)) = o.get_mut(key) {
            children.values_mut().for_each(to_v2);
        }
    }
    for key in ["items", "additionalProperties"] {
        match o.get_mut(key) {
            Some(child @ Value::Object(_)) => to_v2(child),
            Some(Value::Array(children)) => children.iter_mut().for_each(to_v2),
            _ => {}
        }
    }
    if let Some(Value::Array(all)) = o.get_mut("allOf") {
        all.iter_mut().for_each(to_v2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v2_proto::{Document, NamedAny, Schema};

    fn decoded() -> Document {
        Document::decode(documents().protobuf.body.clone()).expect("the protobuf decodes")
    }

    fn definition<'a>(doc: &'a Document, name: &str) -> &'a Schema {
        doc.definitions
            .iter()
            .flat_map(|d| &d.additional_properties)
            .find(|d| d.name == name)
            .and_then(|d| d.value.as_ref())
            .unwrap_or_else(|| panic!("no definition {name}"))
    }

    /// `schema`, or the definition it refers to.
    fn resolve<'a>(doc: &'a Document, schema: &'a Schema) -> &'a Schema {
        match schema.xref.strip_prefix(REF_V2) {
            Some(name) => definition(doc, name),
            None => schema,
        }
    }

    fn property<'a>(doc: &'a Document, schema: &'a Schema, name: &str) -> &'a Schema {
        let found = resolve(doc, schema)
            .properties
            .iter()
            .flat_map(|p| &p.additional_properties)
            .find(|p| p.name == name)
            .and_then(|p| p.value.as_ref())
            .unwrap_or_else(|| panic!("no property {name}"));
        resolve(doc, found)
    }

    fn extension(extensions: &[NamedAny], name: &str) -> Value {
        let yaml = extensions
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_ref())
            .map(|v| v.yaml.as_str())
            .unwrap_or_else(|| panic!("no extension {name}"));
        serde_json::from_str(yaml).expect("the extension's YAML is JSON")
    }

    fn types(schema: &Schema) -> Vec<&str> {
        schema
            .r#type
            .iter()
            .flat_map(|t| &t.value)
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn the_protobuf_has_deployments_kind_and_int_or_string_max_surge() {
        let doc = decoded();
        assert_eq!(doc.swagger, "2.0");
        let deployment = definition(&doc, "io.k8s.api.apps.v1.Deployment");
        assert_eq!(
            extension(&deployment.vendor_extension, GVK_EXTENSION),
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let spec = property(&doc, deployment, "spec");
        let rolling = property(&doc, property(&doc, spec, "strategy"), "rollingUpdate");
        let max_surge = property(&doc, rolling, "maxSurge");
        assert_eq!(types(max_surge), ["string"]);
        assert_eq!(max_surge.format, "int-or-string");
        let containers = property(&doc, property(&doc, spec, "template"), "spec");
        let containers = property(&doc, containers, "containers");
        assert_eq!(types(containers), ["array"]);
        let container = resolve(&doc, &containers.items.as_ref().expect("items").schema[0]);
        assert!(container.required.contains(&"name".to_owned()));
        let resources = property(&doc, container, "resources");
        let limits = property(&doc, resources, "limits");
        let quantity = match limits
            .additional_properties
            .as_ref()
            .and_then(|a| a.oneof.as_ref())
        {
            Some(v2_proto::AdditionalPropertiesOneof::Schema(s)) => resolve(&doc, s),
            other => panic!("limits' values: {other:?}"),
        };
        assert_eq!(
            (types(quantity), quantity.format.as_str()),
            (vec!["string"], "")
        );
        let time = definition(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.Time");
        assert_eq!(
            (types(time), time.format.as_str()),
            (vec!["string"], "date-time")
        );
    }

    #[test]
    fn patch_operations_name_their_kind_and_take_field_validation() {
        let doc = decoded();
        let path = doc
            .paths
            .iter()
            .flat_map(|p| &p.path)
            .find(|p| p.name == "/api/v1/namespaces/{namespace}/configmaps/{name}")
            .and_then(|p| p.value.as_ref())
            .expect("the configmap path");
        let patch = path.patch.as_ref().expect("patch");
        assert_eq!(
            extension(&patch.vendor_extension, GVK_EXTENSION),
            json!({"group": "", "version": "v1", "kind": "ConfigMap"})
        );
        let names: Vec<&str> = patch
            .parameters
            .iter()
            .filter_map(|p| match p.oneof.as_ref()? {
                v2_proto::ParametersItemOneof::Parameter(p) => match p.oneof.as_ref()? {
                    v2_proto::ParameterOneof::NonBodyParameter(p) => match p.oneof.as_ref()? {
                        v2_proto::NonBodyParameterOneof::Query(q) => Some(q.name.as_str()),
                        _ => None,
                    },
                    v2_proto::ParameterOneof::BodyParameter(_) => None,
                },
                v2_proto::ParametersItemOneof::JsonReference(_) => None,
            })
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
        assert!(patch.consumes.is_empty());
    }

    /// What kube-openapi's `proto.NewOpenAPIData` refuses (any of it fails kubectl's
    /// validation of every object): references outside `#/definitions/` or to nothing,
    /// references with a type or properties, several types, unknown primitive types, and
    /// arrays without exactly one item schema.
    fn check(doc: &Document, path: &str, schema: &Schema, problems: &mut Vec<String>) {
        let types = types(schema);
        let properties = schema
            .properties
            .iter()
            .flat_map(|p| &p.additional_properties);
        if !schema.xref.is_empty() {
            let known = schema.xref.strip_prefix(REF_V2).is_some_and(|name| {
                doc.definitions
                    .iter()
                    .flat_map(|d| &d.additional_properties)
                    .any(|d| d.name == name)
            });
            if !known || !types.is_empty() || properties.clone().next().is_some() {
                problems.push(format!("{path}: bad reference {}", schema.xref));
            }
            return;
        }
        match types.as_slice() {
            [] | ["object"] => {}
            ["array"] => match schema.items.as_ref().map(|i| i.schema.as_slice()) {
                Some([item]) => check(doc, &format!("{path}[]"), item, problems),
                _ => problems.push(format!("{path}: array without one item schema")),
            },
            ["string" | "number" | "integer" | "boolean"] => {}
            other => problems.push(format!("{path}: type {other:?}")),
        }
        for p in properties {
            if let Some(value) = &p.value {
                check(doc, &format!("{path}.{}", p.name), value, problems);
            }
        }
        if let Some(v2_proto::AdditionalPropertiesOneof::Schema(s)) = schema
            .additional_properties
            .as_ref()
            .and_then(|a| a.oneof.as_ref())
        {
            check(doc, &format!("{path}{{}}"), s, problems);
        }
        for e in &schema.vendor_extension {
            let yaml = e.value.as_ref().map_or("", |v| v.yaml.as_str());
            if serde_json::from_str::<Value>(yaml).is_err() {
                problems.push(format!("{path}: extension {} is not JSON", e.name));
            }
        }
    }

    #[test]
    fn kube_openapi_would_parse_every_definition() {
        let doc = decoded();
        let mut problems = Vec::new();
        let definitions = doc
            .definitions
            .iter()
            .flat_map(|d| &d.additional_properties);
        for d in definitions.clone() {
            if let Some(schema) = &d.value {
                check(&doc, &d.name, schema, &mut problems);
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
        // Every served kind is findable by its group-version-kind.
        for r in served().iter() {
            let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
            assert!(
                definitions
                    .clone()
                    .any(|d| d.value.as_ref().is_some_and(|s| {
                        s.vendor_extension.iter().any(|e| {
                            e.name == GVK_EXTENSION
                                && e.value.as_ref().is_some_and(|v| {
                                    serde_json::from_str::<Value>(&v.yaml).is_ok_and(|l| {
                                        l.as_array().is_some_and(|l| l.contains(&gvk))
                                    })
                                })
                        })
                    })),
                "no definition for {gvk}"
            );
        }
    }

    #[test]
    fn the_json_document_is_swagger_with_v2_references() {
        let doc: Value = serde_json::from_slice(&documents().json.body).expect("json");
        assert_eq!(doc["swagger"], "2.0");
        let definitions = &doc["definitions"];
        assert_eq!(
            definitions["io.k8s.api.core.v1.ConfigMap"][GVK_EXTENSION],
            json!([{"group": "", "version": "v1", "kind": "ConfigMap"}])
        );
        let int_or_string = &definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(int_or_string["type"], "string");
        assert_eq!(int_or_string["format"], "int-or-string");
        assert!(int_or_string.get("x-kubernetes-int-or-string").is_none());
        let quantity = &definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"];
        assert_eq!(quantity["type"], "string");
        assert!(quantity.get("format").is_none());
        // Kinds do not require metadata; their other required fields stay.
        assert!(definitions["io.k8s.api.apps.v1.Deployment"]["required"].is_null());
        assert_eq!(
            definitions["io.k8s.api.discovery.v1.EndpointSlice"]["required"],
            json!(["addressType", "endpoints"])
        );
        let metadata = &definitions["io.k8s.api.apps.v1.Deployment"]["properties"]["metadata"];
        assert_eq!(
            metadata["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(metadata["description"].is_string());
        let docs = documents();
        let text = String::from_utf8_lossy(&docs.json.body);
        assert!(!text.contains(REF_V3));
        assert!(
            !text.contains("\"nullable\":true"),
            "v3's nullable keyword is not swagger 2.0"
        );
        let read = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["get"];
        assert_eq!(
            read["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(read[GVK_EXTENSION]["kind"], "Deployment");
    }

    #[test]
    fn accept_picks_the_representation_as_kube_does() {
        assert_eq!(negotiate(PROTOBUF_CLIENT_GO), Some(Media::Protobuf));
        assert_eq!(negotiate(PROTOBUF), Some(Media::Protobuf));
        assert_eq!(negotiate("application/json"), Some(Media::Json));
        assert_eq!(negotiate("*/*"), Some(Media::Json));
        assert_eq!(
            negotiate(&format!("application/json;q=0.5, {PROTOBUF_CLIENT_GO}")),
            Some(Media::Protobuf)
        );
        assert_eq!(negotiate("text/html, application/xml;q=0.9"), None);
        assert_eq!(negotiate("application/json;q=0"), None);
    }

    #[test]
    fn etags_answer_304_and_unacceptable_types_406() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(PROTOBUF_CLIENT_GO));
        let first = serve(&headers);
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[header::CONTENT_TYPE], PROTOBUF);
        let etag = first.headers()[header::ETAG].clone();
        headers.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve(&headers).status(), StatusCode::NOT_MODIFIED);
        headers.insert(header::ACCEPT, HeaderValue::from_static(JSON));
        let json = serve(&headers);
        assert_eq!(json.status(), StatusCode::OK, "JSON has its own ETag");
        assert_eq!(json.headers()[header::CONTENT_TYPE], JSON);
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
        assert_eq!(serve(&headers).status(), StatusCode::NOT_ACCEPTABLE);
    }
}
