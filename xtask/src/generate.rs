//! `cargo xtask generate-proto-schema`: the table skiff-control uses to decode Kubernetes
//! protobuf request bodies (client-go's typed clients send protobuf).
//!
//! Field numbers and wire types come from k8s-pb's prost definitions; JSON field names come
//! from k8s-openapi's serde code (they keep acronyms such as `hostIP` that a case
//! conversion would lose). Both crates are pinned in Cargo.lock, so the output is
//! reproducible; it is committed at `control/src/protobuf/schema.rs`.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::cmd::{cargo, output, workspace_root};

/// k8s-pb modules (relative to its src/) whose messages are included.
const MODULES: &[&str] = &[
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/coordination/v1",
    "api/discovery/v1",
    "api/events/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/policy/v1",
    "api/networking/v1",
    "api/scheduling/v1",
    "api/storage/v1",
    "api/admissionregistration/v1",
    "api/certificates/v1",
    "api/rbac/v1",
    "api/node/v1",
    "api/authentication/v1",
    "api/authorization/v1",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/runtime",
];

/// The k8s-openapi feature directory matching the API version Skiff serves.
const OPENAPI_VERSION_DIR: &str = "v1_33";

/// Entry point.
pub fn run() -> Result<()> {
    let (pb, openapi) = crate_sources()?;
    let (names, strategies) = json_names(&openapi.join(OPENAPI_VERSION_DIR))?;
    let mut messages = BTreeMap::new();
    for module in MODULES {
        let file = pb.join(module).join("mod.rs");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        parse_module(module, &text, &names, &strategies, &mut messages)?;
    }
    let out = workspace_root().join("control/src/protobuf/schema.rs");
    std::fs::write(&out, render(&messages))
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} messages to {}", messages.len(), out.display());
    Ok(())
}

fn crate_sources() -> Result<(PathBuf, PathBuf)> {
    let metadata = output(cargo().args(["metadata", "--format-version", "1", "--quiet"]))?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    let find = |name: &str| -> Result<PathBuf> {
        metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["manifest_path"].as_str())
            .map(|m| Path::new(m).with_file_name("src"))
            .with_context(|| {
                format!(
                    "{name} is not in the dependency graph (it is a dependency of skiff-control)"
                )
            })
    };
    Ok((find("k8s-pb")?, find("k8s-openapi")?))
}

/// (module path, type name) → rust field name → JSON name, from k8s-openapi's serde code.
type Names = HashMap<(String, String), HashMap<String, String>>;

/// (module path, type name) → rust field name → list merge strategy, from k8s-openapi's
/// DeepMerge impls (generated from the API's list-type and patch-merge-key markers).
type Strategies = HashMap<(String, String), HashMap<String, String>>;

/// Parse `merge_strategies::list::{map,set,atomic}` calls of one file.
fn list_strategies(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::merge_strategies::list::") {
        rest = &rest[at + "crate::merge_strategies::list::".len()..];
        let kind: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let Some(field_at) = rest.find("&mut self.") else {
            break;
        };
        let field: String = rest[field_at + "&mut self.".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let strategy = match kind.as_str() {
            "map" => {
                let key = rest
                    .find("|lhs, rhs| lhs.")
                    .map(|k| {
                        rest[k + "|lhs, rhs| lhs.".len()..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                format!("map:{}", normalize(&key))
            }
            "set" => "set".to_owned(),
            _ => "atomic".to_owned(),
        };
        out.insert(normalize(&field), strategy);
    }
    out
}

fn json_names(root: &Path) -> Result<(Names, Strategies)> {
    let mut names = Names::new();
    let mut strategies = Strategies::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let Some(type_name) = text
                .lines()
                .find_map(|l| l.strip_prefix("pub struct "))
                .and_then(|l| l.split([' ', '<', '{']).next())
            else {
                continue;
            };
            let module = dir
                .strip_prefix(root)
                .unwrap_or(&dir)
                .to_string_lossy()
                .into_owned();
            strategies.insert((module.clone(), squash(type_name)), list_strategies(&text));
            let fields = names.entry((module, squash(type_name))).or_default();
            for line in text.lines() {
                let line = line.trim();
                if let Some((json, rust)) = line.split_once("\" => Field::Key_") {
                    let json = json.trim_start_matches('"');
                    let rust = rust.trim_end_matches(',');
                    fields.insert(squash(rust), json.to_owned());
                }
            }
        }
    }
    Ok((names, strategies))
}

/// `r#type`, `type_` → `type`.
fn normalize(rust: &str) -> String {
    rust.trim_start_matches("r#")
        .trim_end_matches('_')
        .to_owned()
}

/// A Rust field or type name without `r#`, underscores and case, so k8s-pb's names meet
/// k8s-openapi's (`non_resource_ur_ls` and `non_resource_urls`, `u_id` and `uid`,
/// `AwsElasticBlockStoreVolumeSource` and `AWSElasticBlockStoreVolumeSource`).
fn squash(rust: &str) -> String {
    normalize(rust).replace('_', "").to_ascii_lowercase()
}

/// lowerCamelCase fallback for fields k8s-openapi does not have.
fn camel(snake: &str) -> String {
    let mut out = String::new();
    for (i, part) in snake.split('_').enumerate() {
        if i == 0 {
            out.push_str(part);
        } else {
            let mut chars = part.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    out
}

struct FieldDef {
    tag: u32,
    json: String,
    ty: String,
    repeated: bool,
    list: String,
}

fn parse_module(
    module: &str,
    text: &str,
    names: &Names,
    strategies: &Strategies,
    out: &mut BTreeMap<String, Vec<FieldDef>>,
) -> Result<()> {
    let mut current: Option<(String, Vec<FieldDef>)> = None;
    let mut attr: Option<String> = None;
    let mut decl = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("pub struct ") {
            if let Some(name) = rest.strip_suffix(" {") {
                current = Some((name.to_owned(), Vec::new()));
            }
            continue;
        }
        let Some((name, fields)) = current.as_mut() else {
            continue;
        };
        if trimmed == "}" {
            let (name, fields) = current.take().unwrap_or_default();
            out.insert(format!("{module}/{name}"), fields);
            continue;
        }
        if trimmed.starts_with("#[prost(") {
            attr = Some(trimmed.to_owned());
            continue;
        }
        if attr.is_some() && (trimmed.starts_with("pub ") || !decl.is_empty()) {
            decl.push_str(trimmed);
            let balanced = decl.matches('<').count() == decl.matches('>').count();
            if !decl.ends_with(',') || !balanced {
                continue;
            }
            let declaration = std::mem::take(&mut decl);
            let prost = attr.take().unwrap_or_default();
            let (field, rust_type) = declaration
                .trim_start_matches("pub ")
                .trim_end_matches(',')
                .split_once(':')
                .with_context(|| format!("unparsable field {declaration:?} in {module}/{name}"))?;
            let field = normalize(field.trim());
            let json = names
                .get(&(module.to_owned(), squash(name)))
                .and_then(|f| f.get(&squash(&field)))
                .cloned()
                .unwrap_or_else(|| camel(&field));
            let tag = prost
                .split("tag = \"")
                .nth(1)
                .and_then(|t| t.split('"').next())
                .and_then(|t| t.parse().ok())
                .with_context(|| format!("no tag in {prost}"))?;
            let repeated = prost.contains("repeated");
            let ty = field_type(module, &prost, rust_type.trim())?;
            let list = list_merge(module, name, &field, &ty, names, strategies);
            fields.push(FieldDef {
                tag,
                json,
                ty,
                repeated,
                list,
            });
        }
    }
    if current.is_some() {
        bail!("unterminated struct in {module}");
    }
    Ok(())
}

/// Strategic merge of a field: lists are replaced unless the API marks them as a set or as
/// a map keyed by a field (their patch merge key).
fn list_merge(
    module: &str,
    type_name: &str,
    field: &str,
    ty: &str,
    names: &Names,
    strategies: &Strategies,
) -> String {
    let strategy = strategies
        .get(&(module.to_owned(), squash(type_name)))
        .and_then(|s| s.get(field));
    match strategy.map(String::as_str) {
        Some("set") => "ListMerge::Set".to_owned(),
        Some(map) if map.starts_with("map:") => {
            let key_rust = &map["map:".len()..];
            let item = ty
                .strip_prefix("Ty::Message(\"")
                .and_then(|t| t.strip_suffix("\")"))
                .and_then(|t| t.rsplit_once('/'))
                .map(|(m, n)| (m.to_owned(), squash(n)));
            let key_json = item
                .and_then(|k| names.get(&k))
                .and_then(|f| f.get(&squash(key_rust)))
                .cloned()
                .unwrap_or_else(|| camel(key_rust));
            format!("ListMerge::Key(\"{key_json}\")")
        }
        _ => "ListMerge::Replace".to_owned(),
    }
}

/// The schema type expression for a field.
fn field_type(module: &str, prost: &str, rust_type: &str) -> Result<String> {
    let kind = prost
        .trim_start_matches("#[prost(")
        .split([',', ' ', '='])
        .next()
        .unwrap_or_default();
    let scalar = |k: &str| -> Result<String> {
        Ok(match k {
            "string" => "Ty::String",
            "bytes" => "Ty::Bytes",
            "bool" => "Ty::Bool",
            "int32" => "Ty::Int32",
            "int64" => "Ty::Int64",
            "double" => "Ty::Double",
            other => bail!("unsupported scalar {other}"),
        }
        .to_owned())
    };
    match kind {
        "message" => Ok(format!(
            "Ty::Message(\"{}\")",
            resolve(module, innermost(rust_type))?
        )),
        "btree_map" => {
            let spec = prost
                .split("btree_map = \"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .context("map spec")?;
            let (key, value) = spec.split_once(", ").context("map key/value")?;
            let value = if value == "message" {
                let inner = rust_type
                    .trim_end_matches('>')
                    .trim_end_matches(',')
                    .rsplit_once(',')
                    .map(|(_, v)| v.trim())
                    .context("map value type")?;
                format!("Ty::Message(\"{}\")", resolve(module, inner)?)
            } else {
                scalar(value)?
            };
            Ok(format!("Ty::Map(&{}, &{value})", scalar(key)?))
        }
        other => scalar(if other == "bytes" { "bytes" } else { other }),
    }
}

/// `::core::option::Option<super::X>` → `super::X`.
fn innermost(rust_type: &str) -> &str {
    let mut t = rust_type;
    while let Some(open) = t.find('<') {
        t = &t[open + 1..t.rfind('>').unwrap_or(t.len())];
    }
    // A type split over lines keeps the trailing comma of its last generic argument.
    t.trim().trim_end_matches(',').trim()
}

/// Resolve a Rust path relative to `module` into `module/path/Name`.
fn resolve(module: &str, path: &str) -> Result<String> {
    let mut parts: Vec<&str> = module.split('/').collect();
    let mut rest = path;
    while let Some(r) = rest.strip_prefix("super::") {
        parts
            .pop()
            .with_context(|| format!("too many super:: in {path}"))?;
        rest = r;
    }
    let segments: Vec<&str> = rest.split("::").collect();
    let (name, dirs) = segments.split_last().context("empty path")?;
    if dirs.is_empty() {
        return Ok(format!("{}/{name}", parts.join("/")));
    }
    parts.extend(dirs);
    Ok(format!("{}/{name}", parts.join("/")))
}

fn render(messages: &BTreeMap<String, Vec<FieldDef>>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! Generated by `cargo xtask generate-proto-schema` from the pinned k8s-pb and k8s-openapi"
    );
    let _ = writeln!(out, "//! crates. Do not edit by hand.");
    let _ = writeln!(out);
    let _ = writeln!(out, "use super::{{Field, ListMerge, Message, Ty}};");
    let _ = writeln!(out);
    let _ = writeln!(out, "/// Every message, sorted by name.");
    let _ = writeln!(out, "#[rustfmt::skip]");
    let _ = writeln!(out, "pub static MESSAGES: &[Message] = &[");
    for (name, fields) in messages {
        let _ = writeln!(out, "    Message {{ name: \"{name}\", fields: &[");
        for f in fields {
            let _ = writeln!(
                out,
                "        Field {{ tag: {}, json: \"{}\", ty: {}, repeated: {}, list: {} }},",
                f.tag, f.json, f.ty, f.repeated, f.list
            );
        }
        let _ = writeln!(out, "    ] }},");
    }
    let _ = writeln!(out, "];");
    out
}
