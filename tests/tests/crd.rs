//! CustomResourceDefinitions through stock kubectl, as a chart or operator uses them: a
//! definition is applied and becomes Established, its objects are created, listed with
//! their printer columns and short names, patched (merge and JSON; strategic merge is 415
//! as kube answers), have a status and a scale subresource, are explained from the
//! published schema, and go with their definition.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::{
    Lab,
    https_echo::{self, Certificates},
};

/// The conversion webhook's Service.
const SERVICE: &str = "hook";

/// A definition of `crontabs.<group>` in the style of kube's documentation example.
fn definition(group: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("crontabs.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                      "shortNames": ["ct"], "categories": ["all"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas",
                              "statusReplicasPath": ".status.replicas",
                              "labelSelectorPath": ".status.selector"},
                },
                "additionalPrinterColumns": [
                    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "description": "What the cron tab runs and when.",
                            "x-kubernetes-validations": [
                                {"rule": "self.replicas <= 10", "message": "at most 10 replicas"},
                            ],
                            "properties": {
                                "cronSpec": {"type": "string", "description": "The schedule, in cron format."},
                                "image": {"type": "string"},
                                "replicas": {"type": "integer", "minimum": 0, "default": 1},
                            },
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "replicas": {"type": "integer"},
                                "selector": {"type": "string"},
                            },
                        },
                    },
                }},
            }],
        },
    })
}

fn crontab(name: &str, group: &str, spec: Value) -> String {
    json!({"apiVersion": format!("{group}/v1"), "kind": "CronTab",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

#[test]
fn a_custom_resource_lives_and_dies_with_its_definition() {
    let Some(lab) = Lab::from_env() else { return };
    let group = format!("e2e{}.skiff.test", std::process::id());
    let crd = format!("crontabs.{group}");
    let ns = lab.namespace("crd");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns), ("crd", &crd)]);

    let applied = lab.kubectl_stdin(&["apply", "-f", "-"], &definition(&group).to_string());
    assert_eq!(applied.code, 0, "{applied:?}");
    lab.kubectl_ok(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout=30s",
        &format!("crd/{crd}"),
    ]);
    let accepted = lab.kubectl_ok(&[
        "get",
        "crd",
        &crd,
        "-o",
        "jsonpath={.status.acceptedNames.kind}",
    ]);
    assert_eq!(accepted, "CronTab");

    // Created, defaulted by the schema, listed with the printer columns and short name.
    let resource = format!("crontabs.{group}");
    let created = lab.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &crontab(
            "nightly",
            &group,
            json!({"cronSpec": "0 3 * * *", "image": "busybox"}),
        ),
    );
    assert_eq!(created.code, 0, "{created:?}");
    let table = lab.kubectl_ok(&["get", "ct", "-n", &ns]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..6], ["nightly", "0", "3", "*", "*", "*"], "{table}");
    assert_eq!(row[6], "1", "the schema's default: {table}");
    // The schema refuses what it does not allow, with the field at fault; CEL rules too.
    for (spec, field, message) in [
        (
            json!({"cronSpec": 5}),
            "spec.cronSpec",
            "must be of type string",
        ),
        (
            json!({"cronSpec": "x", "replicas": -1}),
            "spec.replicas",
            "should be greater than or equal to 0",
        ),
        (
            json!({"cronSpec": "x", "replicas": 11}),
            "spec",
            "at most 10 replicas",
        ),
    ] {
        let refused = lab.kubectl_stdin(
            &["create", "-n", &ns, "-f", "-"],
            &crontab("bad", &group, spec),
        );
        assert_ne!(refused.code, 0, "{refused:?}");
        assert!(
            refused.stderr.contains(field) && refused.stderr.contains(message),
            "{field}: {refused:?}"
        );
    }
    // Unknown fields are pruned, and reported under fieldValidation=Strict (kubectl's default).
    let unknown = lab.kubectl_stdin(
        &["create", "-n", &ns, "-f", "-"],
        &crontab("extra", &group, json!({"cronSpec": "x", "colour": "blue"})),
    );
    assert_ne!(unknown.code, 0, "{unknown:?}");
    assert!(
        unknown.stderr.contains("unknown field \"spec.colour\""),
        "{unknown:?}"
    );
    let all = lab.kubectl_ok(&["get", "all", "-n", &ns, "-o", "name"]);
    assert!(
        all.contains(&format!("crontab.{group}/nightly")),
        "category all: {all}"
    );

    // Merge and JSON patches; strategic merge is refused as kube refuses it.
    lab.kubectl_ok(&[
        "patch",
        &resource,
        "nightly",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"alpine"}}"#,
    ]);
    lab.kubectl_ok(&[
        "patch",
        &resource,
        "nightly",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/cronSpec","value":"*/5 * * * *"}]"#,
    ]);
    let spec = lab.kubectl_ok(&[
        "get",
        &resource,
        "nightly",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.image} {.spec.cronSpec}",
    ]);
    assert_eq!(spec, "alpine */5 * * * *");
    let strategic = lab.kubectl(&[
        "patch",
        &resource,
        "nightly",
        "-n",
        &ns,
        "--type=strategic",
        "-p",
        r#"{"spec":{"image":"x"}}"#,
    ]);
    assert_ne!(strategic.code, 0, "{strategic:?}");
    assert!(
        strategic.stderr.contains("UnsupportedMediaType")
            || strategic.stderr.contains("unknown format")
            || strategic.stderr.contains("not supported"),
        "{strategic:?}"
    );

    // The status subresource: status changes only through it.
    lab.kubectl_ok(&[
        "patch",
        &resource,
        "nightly",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"selector":"app=nightly"}}"#,
    ]);
    lab.kubectl_ok(&[
        "patch",
        &resource,
        "nightly",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":7}}"#,
    ]);
    let status = lab.kubectl_ok(&[
        "get",
        &resource,
        "nightly",
        "-n",
        &ns,
        "-o",
        "jsonpath={.status.replicas}",
    ]);
    assert_eq!(status, "1", "the main resource does not write status");

    // The scale subresource reads and writes the declared paths.
    lab.kubectl_ok(&["scale", &resource, "nightly", "-n", &ns, "--replicas=3"]);
    let replicas = lab.kubectl_ok(&[
        "get",
        &resource,
        "nightly",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "3");
    let scale = lab.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/apis/{group}/v1/namespaces/{ns}/crontabs/nightly/scale"),
    ]);
    let scale: Value = serde_json::from_str(&scale).expect("a Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=nightly");

    // kubectl explain walks the published schema.
    let explained = lab.kubectl_ok(&["explain", &format!("{resource}.spec")]);
    assert!(
        explained.contains("cronSpec") && explained.contains("The schedule, in cron format."),
        "{explained}"
    );

    // Deleting the definition deletes its objects, then the definition.
    lab.kubectl_ok(&["delete", "crd", &crd, "--timeout=60s"]);
    lab.eventually(
        "the crontabs resource is no longer served",
        Duration::from_secs(30),
        || {
            let out = lab.kubectl(&[
                "get",
                "--raw",
                &format!("/apis/{group}/v1/namespaces/{ns}/crontabs"),
            ]);
            if out.code == 0 {
                Err(out.stdout)
            } else {
                Ok(())
            }
        },
    );
    let gone = lab.kubectl(&["get", "crd", &crd]);
    assert_ne!(gone.code, 0, "{gone:?}");
}

#[test]
fn conflicting_names_are_not_accepted() {
    let Some(lab) = Lab::from_env() else { return };
    let group = format!("names{}.skiff.test", std::process::id());
    // Short names of their own, so `kubectl get ct` in the other test stays unambiguous.
    let mut first = definition(&group);
    first["spec"]["names"]["shortNames"] = json!(["ctx"]);
    // No category either: `kubectl get all` in the other test must not see a definition
    // this test deletes meanwhile.
    first["spec"]["names"]["categories"] = json!([]);
    let mut second = definition(&group);
    second["metadata"]["name"] = json!(format!("crontables.{group}"));
    second["spec"]["names"] =
        json!({"plural": "crontables", "kind": "CronTable", "shortNames": ["ctx"]});
    let (first_name, second_name) = (format!("crontabs.{group}"), format!("crontables.{group}"));
    let _cleanup = lab.delete_on_drop(&[("crd", &first_name), ("crd", &second_name)]);
    lab.kubectl_stdin(&["apply", "-f", "-"], &first.to_string());
    lab.kubectl_ok(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout=30s",
        &format!("crd/crontabs.{group}"),
    ]);
    lab.kubectl_stdin(&["apply", "-f", "-"], &second.to_string());
    let reason = lab.eventually(
        "the second definition's names are refused",
        Duration::from_secs(30),
        || {
            let reason = lab.kubectl_ok(&[
                "get",
                "crd",
                &format!("crontables.{group}"),
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].reason}",
            ]);
            if reason.is_empty() {
                Err("no condition yet".to_owned())
            } else {
                Ok(reason)
            }
        },
    );
    assert_eq!(reason, "ShortNamesConflict");
    let established = lab.kubectl_ok(&[
        "get",
        "crd",
        &format!("crontables.{group}"),
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
    ]);
    assert_eq!(established, "False");
}

#[test]
fn an_invalid_definition_is_refused_with_its_field() {
    let Some(lab) = Lab::from_env() else { return };
    let mut bad = definition("nodots");
    bad["metadata"]["name"] = json!("crontabs.nodots");
    bad["spec"]["scope"] = json!("Galaxy");
    let out = lab.kubectl_stdin(&["create", "-f", "-"], &bad.to_string());
    assert_ne!(out.code, 0, "{out:?}");
    for field in ["spec.group", "spec.scope"] {
        assert!(out.stderr.contains(field), "{field}: {out:?}");
    }
}

/// Gizmos of `group` in two versions: v1beta1 (`spec.size`, deprecated) and v1
/// (`spec.sizeInches`), both served; `storage` is stored; converted under `conversion`.
fn gizmos(group: &str, storage: &str, conversion: Value) -> Value {
    let schema = |field: &str| {
        json!({"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                field: {"type": "integer"}, "size": {"type": "integer"}}}}}})
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gizmos.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            // Names of their own, so the other tests' `kubectl get` stay unambiguous.
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "conversion": conversion,
            "versions": [
                {"name": "v1beta1", "served": true, "storage": storage == "v1beta1",
                 "deprecated": true, "schema": schema("size")},
                {"name": "v1", "served": true, "storage": storage == "v1",
                 "schema": schema("sizeInches")},
            ],
        },
    })
}

fn gizmo(name: &str, group: &str, version: &str, spec: Value) -> String {
    json!({"apiVersion": format!("{group}/{version}"), "kind": "Gizmo",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

fn established(lab: &Lab, crd: &str) {
    lab.kubectl_ok(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout=30s",
        &format!("crd/{crd}"),
    ]);
}

#[test]
fn objects_are_served_in_every_version_and_stored_in_one() {
    let Some(lab) = Lab::from_env() else { return };
    let group = format!("versions{}.skiff.test", std::process::id());
    let crd = format!("gizmos.{group}");
    let ns = lab.namespace("crd-versions");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns), ("crd", &crd)]);
    let none = json!({"strategy": "None"});
    let applied = lab.kubectl_stdin(
        &["apply", "-f", "-"],
        &gizmos(&group, "v1", none.clone()).to_string(),
    );
    assert_eq!(applied.code, 0, "{applied:?}");
    established(&lab, &crd);

    // Discovery prefers v1 and lists both.
    let preferred = lab.kubectl_ok(&["api-versions"]);
    for version in ["v1", "v1beta1"] {
        assert!(
            preferred.lines().any(|l| l == format!("{group}/{version}")),
            "{group}/{version}: {preferred}"
        );
    }

    // Written through v1beta1 (with its deprecation warning), read through both.
    let created = lab.kubectl_stdin(
        &["create", "-n", &ns, "-f", "-"],
        &gizmo("old", &group, "v1beta1", json!({"size": 3})),
    );
    assert_eq!(created.code, 0, "{created:?}");
    assert!(
        created.stderr.contains(&format!(
            "{group}/v1beta1 Gizmo is deprecated; use {group}/v1 Gizmo"
        )),
        "{created:?}"
    );
    let read = |version: &str, name: &str, path: &str| {
        lab.kubectl_ok(&[
            "get",
            &format!("gizmos.{version}.{group}"),
            name,
            "-n",
            &ns,
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(read("v1", "old", "{.apiVersion}"), format!("{group}/v1"));
    assert_eq!(
        read("v1beta1", "old", "{.apiVersion}"),
        format!("{group}/v1beta1")
    );
    assert_eq!(
        read("v1", "old", "{.spec.size}"),
        "3",
        "None converts nothing else"
    );
    // Lists (the preferred version, and a named one) and tables convert too.
    let listed = lab.kubectl_ok(&[
        "get",
        &format!("gizmos.v1beta1.{group}"),
        "-n",
        &ns,
        "-o",
        "jsonpath={.items[*].apiVersion}",
    ]);
    assert_eq!(listed, format!("{group}/v1beta1"));
    let table = lab.kubectl_ok(&["get", &format!("gizmos.{group}"), "-n", &ns]);
    assert!(table.contains("old"), "{table}");
    let stored_versions = || {
        lab.kubectl_ok(&[
            "get",
            "crd",
            &crd,
            "-o",
            "jsonpath={.status.storedVersions}",
        ])
    };
    assert_eq!(stored_versions(), "[\"v1\"]");

    // The storage version changes: storedVersions grows; old objects still read in both.
    let applied = lab.kubectl_stdin(
        &["apply", "-f", "-"],
        &gizmos(&group, "v1beta1", none).to_string(),
    );
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(stored_versions(), "[\"v1\",\"v1beta1\"]");
    let created = lab.kubectl_stdin(
        &["create", "-n", &ns, "-f", "-"],
        &gizmo("new", &group, "v1", json!({"size": 5})),
    );
    assert_eq!(created.code, 0, "{created:?}");
    for version in ["v1", "v1beta1"] {
        let listed = lab.kubectl_ok(&[
            "get",
            &format!("gizmos.{version}.{group}"),
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].apiVersion}",
        ]);
        assert_eq!(listed, format!("{group}/{version} {group}/{version}"));
    }
    assert_eq!(read("v1beta1", "old", "{.spec.size}"), "3");
    assert_eq!(read("v1", "new", "{.spec.size}"), "5");

    // A version still in storedVersions cannot be dropped from spec.versions.
    let mut dropped = gizmos(&group, "v1", json!({"strategy": "None"}));
    if let Some(versions) = dropped["spec"]["versions"].as_array_mut() {
        versions.remove(0);
    }
    let refused = lab.kubectl_stdin(&["apply", "-f", "-"], &dropped.to_string());
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("must appear in spec.versions"),
        "{refused:?}"
    );
}

#[test]
fn a_conversion_webhook_converts_between_versions() {
    let Some(lab) = Lab::from_env() else { return };
    let group = format!("convert{}.skiff.test", std::process::id());
    let crd = format!("gizmos.{group}");
    let ns = lab.namespace("crd-convert");
    // The definition goes first, while its webhook still answers.
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns), ("crd", &crd)]);

    // The conversion webhook: skiff/echo's /convert behind a Service, trusted by caBundle.
    let certificates = Certificates::for_service(SERVICE, &ns);
    https_echo::deploy(&lab, SERVICE, &ns, &certificates);
    let conversion = json!({"strategy": "Webhook", "webhook": {
        "clientConfig": {"service": {"name": SERVICE, "namespace": ns, "path": "/convert"},
                         "caBundle": certificates.ca_bundle()},
        "conversionReviewVersions": ["v1"]}});
    let applied = lab.kubectl_stdin(
        &["apply", "-f", "-"],
        &gizmos(&group, "v1", conversion).to_string(),
    );
    assert_eq!(applied.code, 0, "{applied:?}");
    established(&lab, &crd);

    // Written through v1beta1 (spec.size): the webhook renames it for storage in v1.
    lab.eventually(
        "a write through the webhook",
        Duration::from_secs(30),
        || {
            let created = lab.kubectl_stdin(
                &["create", "-n", &ns, "-f", "-"],
                &gizmo("g", &group, "v1beta1", json!({"size": 7})),
            );
            if created.code == 0 {
                Ok(())
            } else {
                Err(format!("{created:?}"))
            }
        },
    );
    let read = |version: &str, path: &str| {
        lab.kubectl_ok(&[
            "get",
            &format!("gizmos.{version}.{group}"),
            "g",
            "-n",
            &ns,
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(read("v1", "{.spec.sizeInches}"), "7");
    assert_eq!(read("v1", "{.spec.size}"), "");
    assert_eq!(read("v1", "{.metadata.labels.converted-by}"), "skiff-echo");
    assert_eq!(read("v1beta1", "{.apiVersion}"), format!("{group}/v1beta1"));
    assert_eq!(read("v1beta1", "{.spec.size}"), "7");
    let listed = lab.kubectl_ok(&[
        "get",
        &format!("gizmos.v1beta1.{group}"),
        "-n",
        &ns,
        "-o",
        "jsonpath={.items[*].spec.size}",
    ]);
    assert_eq!(listed, "7");

    // The webhook gone: reads in the other version are kube's 500; the storage version's
    // are not converted at all.
    lab.kubectl_ok(&[
        "scale",
        "-n",
        &ns,
        &format!("deployment/{SERVICE}"),
        "--replicas=0",
    ]);
    let failed = lab.eventually("the webhook gone", Duration::from_secs(60), || {
        let out = lab.kubectl(&["get", &format!("gizmos.v1beta1.{group}"), "g", "-n", &ns]);
        if out.code == 0 {
            Err("still converted".to_owned())
        } else {
            Ok(out.stderr)
        }
    });
    assert!(
        failed.contains(&format!(
            "conversion webhook for {group}/v1, Kind=Gizmo failed"
        )),
        "{failed}"
    );
    assert_eq!(read("v1", "{.spec.sizeInches}"), "7");
}

/// A definition of `widgets.<group>` whose JSON is over 1 MiB: 1,500 documented fields.
fn large_definition(group: &str) -> Value {
    let description = "A field of a large generated schema, documented at length as operator \
        CRDs document theirs. "
        .repeat(8);
    let properties: serde_json::Map<String, Value> = (0..1500)
        .map(|i| {
            (
                format!("field{i:04}"),
                json!({"type": "string", "description": format!("{i}: {description}")}),
            )
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": properties}}}}}],
        },
    })
}

#[test]
fn a_definition_of_more_than_a_mebibyte_applies_server_side() {
    let Some(lab) = Lab::from_env() else { return };
    let group = format!("large{}.skiff.test", std::process::id());
    let crd = format!("widgets.{group}");
    let ns = lab.namespace("crd-large");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns), ("crd", &crd)]);
    let definition = large_definition(&group).to_string();
    assert!(definition.len() > 1024 * 1024, "{} bytes", definition.len());

    // Client-side apply would keep the whole definition in an annotation: refused, as kube
    // refuses annotations over 256 kB.
    let client_side = lab.kubectl_stdin(&["apply", "-f", "-"], &definition);
    assert_ne!(client_side.code, 0, "{client_side:?}");
    assert!(
        client_side.stderr.contains("metadata.annotations")
            && client_side.stderr.contains("Too long"),
        "{client_side:?}"
    );

    let applied = lab.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &definition);
    assert_eq!(applied.code, 0, "{applied:?}");
    lab.kubectl_ok(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout=30s",
        &format!("crd/{crd}"),
    ]);
    let widget = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"field1499": "last"}});
    let created = lab.kubectl_stdin(
        &["apply", "--server-side", "-n", &ns, "-f", "-"],
        &widget.to_string(),
    );
    assert_eq!(created.code, 0, "{created:?}");
    let spec = lab.kubectl_ok(&["get", &crd, "w", "-n", &ns, "-o", "jsonpath={.spec}"]);
    assert_eq!(spec, r#"{"field1499":"last"}"#);
    // Applying the same definition again changes nothing.
    let again = lab.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &definition);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("serverside-applied"), "{again:?}");
}

#[test]
fn dependents_of_a_custom_resource_go_with_it() {
    let Some(lab) = Lab::from_env() else { return };
    let group = format!("gc{}.skiff.test", std::process::id());
    let crd = format!("crontabs.{group}");
    let ns = lab.namespace("crd-gc");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns), ("crd", &crd)]);
    let applied = lab.kubectl_stdin(&["apply", "-f", "-"], &definition(&group).to_string());
    assert_eq!(applied.code, 0, "{applied:?}");
    lab.kubectl_ok(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout=30s",
        &format!("crd/{crd}"),
    ]);
    // Two owners: one deleted in the background, one in the foreground.
    for name in ["background", "foreground"] {
        let created = lab.kubectl_stdin(
            &["apply", "-n", &ns, "-f", "-"],
            &crontab(
                name,
                &group,
                json!({"cronSpec": "* * * * */5", "image": "img"}),
            ),
        );
        assert_eq!(created.code, 0, "{created:?}");
    }
    // What an operator creates for each: a ConfigMap and a Service owned by it (the
    // ConfigMap blocks its owner's foreground deletion).
    for name in ["background", "foreground"] {
        let uid = lab.kubectl_ok(&[
            "get",
            &crd,
            name,
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        let owner = json!({"apiVersion": format!("{group}/v1"), "kind": "CronTab",
            "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true});
        let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": format!("{name}-config"), "ownerReferences": [owner]},
             "data": {"a": "b"}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": format!("{name}-svc"), "ownerReferences": [owner]},
             "spec": {"ports": [{"port": 80}]}}]});
        let out = lab.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &objects.to_string());
        assert_eq!(out.code, 0, "{out:?}");
    }
    let gone = |name: &str| {
        lab.eventually(
            &format!("{name}'s dependents collected"),
            Duration::from_secs(60),
            || {
                let left = lab.kubectl_ok(&["get", "configmaps,services", "-n", &ns, "-o", "name"]);
                if left.contains(&format!("{name}-config")) || left.contains(&format!("{name}-svc"))
                {
                    Err(left)
                } else {
                    Ok(())
                }
            },
        );
    };
    lab.kubectl_ok(&["delete", &crd, "background", "-n", &ns, "--wait=false"]);
    gone("background");
    // Foreground: kubectl waits for the blocking dependents, then the owner is gone.
    lab.kubectl_ok(&[
        "delete",
        &crd,
        "foreground",
        "-n",
        &ns,
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    gone("foreground");
    let owners = lab.kubectl_ok(&["get", &crd, "-n", &ns, "-o", "name"]);
    assert!(owners.trim().is_empty(), "{owners}");
}
