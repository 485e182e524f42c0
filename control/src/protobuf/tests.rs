//! Round trips: objects encoded with the real Kubernetes protobuf definitions (k8s-pb)
//! decode to the JSON kube-apiserver would see.

use k8s_pb::{
    api::{apps::v1 as apps, core::v1 as core},
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1 as meta,
        runtime::{TypeMeta, Unknown},
        util::intstr::IntOrString,
    },
};
use prost::Message as _;
use serde_json::json;

use super::{ProtobufError, decode_request};

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn a_deployment_decodes_to_its_json_form() {
    let container = core::Container {
        name: Some("web".into()),
        image: Some("nginx:1.25".into()),
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: [(
                "memory".to_owned(),
                Quantity {
                    string: Some("64Mi".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("web".into()),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_owned(), "web".to_owned())].into(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: [("app".to_owned(), "web".to_owned())].into(),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("25%".into()),
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(-1),
                        str_val: None,
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode_request(&envelope(
        "apps/v1",
        "Deployment",
        deployment.encode_to_vec(),
    ))
    .expect("decodes");
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web", "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {"limits": {"memory": "64Mi"}}
                        }],
                        "hostNetwork": false
                    }
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": -1}}
            }
        })
    );
}

#[test]
fn secrets_carry_bytes_as_base64_and_acronyms_keep_their_case() {
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: Some("s".into()),
            ..Default::default()
        }),
        data: [("key".to_owned(), b"hello".to_vec())].into(),
        ..Default::default()
    };
    let decoded =
        decode_request(&envelope("v1", "Secret", secret.encode_to_vec())).expect("decodes");
    assert_eq!(decoded["data"]["key"], "aGVsbG8=");
    let service = core::Service {
        spec: Some(core::ServiceSpec {
            cluster_ip: Some("10.96.0.5".into()),
            external_ips: vec!["1.2.3.4".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let decoded =
        decode_request(&envelope("v1", "Service", service.encode_to_vec())).expect("decodes");
    assert_eq!(
        decoded["spec"],
        json!({"clusterIP": "10.96.0.5", "externalIPs": ["1.2.3.4"]})
    );
}

#[test]
fn go_zero_values_mean_unset() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            generate_name: Some(String::new()),
            creation_timestamp: Some(meta::Time {
                seconds: Some(-62_135_596_800),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            dns_policy: Some(String::new()),
            host_network: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode_request(&envelope("v1", "Pod", pod.encode_to_vec())).expect("decodes");
    assert_eq!(decoded["metadata"], json!({"name": "p"}));
    assert_eq!(decoded["spec"], json!({"hostNetwork": false}));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(matches!(
        decode_request(b"{\"json\": true}"),
        Err(ProtobufError::NoMagic)
    ));
    let truncated = envelope("v1", "Pod", vec![0x0a, 0x05, 0x01]);
    assert!(matches!(
        decode_request(&truncated),
        Err(ProtobufError::Malformed(_))
    ));
    assert!(matches!(
        decode_request(&envelope("v1", "Bogus", Vec::new())),
        Err(ProtobufError::UnknownKind { .. })
    ));
    for len in 0..64 {
        let noise: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let mut body = b"k8s\0".to_vec();
        body.extend(noise);
        let _ = decode_request(&body);
    }
}

#[test]
fn rbac_and_review_kinds_decode_with_kubes_json_names() {
    use k8s_pb::api::{authorization::v1 as authz, rbac::v1 as rbac};
    // `kubectl create clusterrole r --verb=get --non-resource-url=/healthz` sends this.
    let role = rbac::ClusterRole {
        metadata: Some(meta::ObjectMeta {
            name: Some("r".into()),
            ..Default::default()
        }),
        rules: vec![rbac::PolicyRule {
            verbs: vec!["get".into()],
            non_resource_ur_ls: vec!["/healthz".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let body = envelope(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        role.encode_to_vec(),
    );
    let decoded = decode_request(&body).expect("decodes");
    assert_eq!(decoded["rules"][0]["nonResourceURLs"], json!(["/healthz"]));
    // A SubjectAccessReview's extra values are plain lists in JSON.
    let review = authz::SubjectAccessReview {
        spec: Some(authz::SubjectAccessReviewSpec {
            user: Some("alice".into()),
            extra: [(
                "scopes".to_owned(),
                authz::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let body = envelope(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        review.encode_to_vec(),
    );
    let decoded = decode_request(&body).expect("decodes");
    assert_eq!(decoded["spec"]["extra"]["scopes"], json!(["a", "b"]));
}
