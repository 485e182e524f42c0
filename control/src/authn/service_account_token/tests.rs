use super::*;
use crate::authn::{
    binding::{BoundObject, LiveObject, ObjectRef},
    jwt,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jiff::SignedDuration;
use serde_json::json;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const NOW: Timestamp = Timestamp::constant(1_700_000_000, 500_000_000);

/// The ServiceAccount `ns/app` (uid sa-1), the pod `ns/web` (pod-1), the node `n1`.
struct Cluster {
    sa_uid: &'static str,
    pod_uid: Option<&'static str>,
}

impl BoundObjects for Cluster {
    fn service_account(&self, namespace: &str, name: &str) -> Option<LiveObject> {
        (namespace == "ns" && name == "app").then(|| live(self.sa_uid))
    }
    fn pod(&self, namespace: &str, name: &str) -> Option<LiveObject> {
        (namespace == "ns" && name == "web")
            .then_some(self.pod_uid)
            .flatten()
            .map(live)
    }
    fn secret(&self, _: &str, _: &str) -> Option<LiveObject> {
        None
    }
    fn node(&self, name: &str) -> Option<LiveObject> {
        (name == "n1").then(|| live("node-1"))
    }
}

fn live(uid: &str) -> LiveObject {
    LiveObject {
        uid: uid.to_owned(),
        deletion_timestamp: None,
    }
}

const CLUSTER: Cluster = Cluster {
    sa_uid: "sa-1",
    pod_uid: Some("pod-1"),
};

fn issuer() -> TokenIssuer {
    TokenIssuer::new(SigningKey::generate().expect("generate"), ISSUER, vec![])
}

fn pod_request() -> BoundTokenRequest {
    BoundTokenRequest {
        binding: Binding {
            namespace: "ns".into(),
            service_account: ObjectRef::new("app", "sa-1"),
            bound: Some(BoundObject::Pod {
                pod: ObjectRef::new("web", "pod-1"),
                node: Some(ObjectRef::new("n1", "node-1")),
            }),
        },
        audiences: vec![],
        expiration_seconds: None,
    }
}

fn payload(token: &str) -> serde_json::Value {
    serde_json::from_slice(&jwt::unverified_payload(token).expect("payload")).expect("json")
}

fn later(seconds: i64) -> Timestamp {
    NOW + SignedDuration::from_secs(seconds)
}

#[test]
fn round_trip_yields_the_service_account_user() {
    let issuer = issuer();
    let issued = issuer.issue(&pod_request(), NOW).expect("issue");
    assert_eq!(issued.expiration_seconds, DEFAULT_EXPIRATION_SECONDS);
    assert_eq!(
        issued.expiration_timestamp,
        Timestamp::constant(1_700_003_600, 0)
    );
    assert_eq!(issued.audiences, [ISSUER]);
    assert!(issued.warnings.is_empty());
    let claims = payload(&issued.token);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:ns:app");
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(claims["iat"], 1_700_000_000);
    assert_eq!(claims["nbf"], 1_700_000_000);
    assert_eq!(claims["exp"], 1_700_003_600);
    assert_eq!(
        claims["kubernetes.io"],
        json!({
            "namespace": "ns",
            "node": {"name": "n1", "uid": "node-1"},
            "pod": {"name": "web", "uid": "pod-1"},
            "serviceaccount": {"name": "app", "uid": "sa-1"},
        })
    );
    let jti = claims["jti"].as_str().expect("jti");
    assert!(uuid::Uuid::parse_str(jti).is_ok());
    assert_eq!(issued.credential_id, format!("JTI={jti}"));

    let unchecked = issuer.verify(&issued.token, later(10)).expect("verify");
    assert_eq!(unchecked.binding(), &pod_request().binding);
    let verified = unchecked.check(&CLUSTER, later(10)).expect("check");
    assert_eq!(verified.audiences, [ISSUER]);
    assert_eq!(
        verified.key_id,
        issuer.verification_keys().keys()[0].key_id()
    );
    let user = verified.user;
    assert_eq!(user.name, "system:serviceaccount:ns:app");
    assert_eq!(user.uid, "sa-1");
    assert_eq!(
        user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:ns",
            "system:authenticated"
        ]
    );
    assert_eq!(user.service_account(), Some(("ns", "app")));
    let extra = |key: &str| user.extra.get(key).cloned().unwrap_or_default();
    assert_eq!(extra(POD_NAME_KEY), ["web"]);
    assert_eq!(extra(POD_UID_KEY), ["pod-1"]);
    assert_eq!(extra(NODE_NAME_KEY), ["n1"]);
    assert_eq!(extra(NODE_UID_KEY), ["node-1"]);
    assert_eq!(extra(CREDENTIAL_ID_KEY), [issued.credential_id.as_str()]);
    assert_eq!(user.extra.len(), 5);
}

#[test]
fn unbound_token_user_has_no_pod_or_node() {
    let issuer = issuer();
    let mut request = pod_request();
    request.binding.bound = None;
    request.audiences = vec!["vault".into(), ISSUER.into()];
    let issued = issuer.issue(&request, NOW).expect("issue");
    assert_eq!(payload(&issued.token)["aud"], json!(["vault", ISSUER]));
    let verified = issuer
        .verify(&issued.token, NOW)
        .expect("verify")
        .check(&CLUSTER, NOW)
        .expect("check");
    assert_eq!(verified.audiences, [ISSUER], "only the wanted audiences");
    let keys: Vec<&str> = verified.user.extra.keys().map(String::as_str).collect();
    assert_eq!(keys, [CREDENTIAL_ID_KEY]);
}

#[test]
fn expiration_is_validated_and_capped_as_kube() {
    let issuer = issuer();
    let mut request = pod_request();
    request.expiration_seconds = Some(599);
    let Err(IssueError::Invalid(errors)) = issuer.issue(&request, NOW) else {
        panic!("599 s accepted");
    };
    assert_eq!(
        errors[0].to_string(),
        "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
    );
    request.expiration_seconds = Some(0);
    assert!(matches!(
        issuer.issue(&request, NOW),
        Err(IssueError::Invalid(_))
    ));
    request.expiration_seconds = Some((1 << 32) + 1);
    let Err(IssueError::Invalid(errors)) = issuer.issue(&request, NOW) else {
        panic!("2^32+1 s accepted");
    };
    assert!(errors[0].to_string().ends_with("larger than 2^32 seconds"));
    request.expiration_seconds = Some(600);
    assert_eq!(
        issuer
            .issue(&request, NOW)
            .expect("600 s")
            .expiration_seconds,
        600
    );

    request.expiration_seconds = Some(7 * 24 * 3600);
    let issued = issuer.issue(&request, NOW).expect("a week");
    assert_eq!(
        issued.expiration_seconds,
        DEFAULT_MAX_TOKEN_EXPIRATION_SECONDS
    );
    assert_eq!(
        issued.warnings,
        ["requested expiration of 604800 seconds shortened to 172800 seconds"]
    );
    assert_eq!(payload(&issued.token)["exp"], 1_700_000_000 + 172_800);

    let unlimited = issuer.clone().with_max_expiration_seconds(None);
    let issued = unlimited.issue(&request, NOW).expect("a week");
    assert_eq!(issued.expiration_seconds, 7 * 24 * 3600);
    assert!(issued.warnings.is_empty());
}

#[test]
fn projected_token_extension_when_enabled() {
    let mut request = pod_request();
    request.expiration_seconds = Some(WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS);
    let plain = issuer().issue(&request, NOW).expect("issue");
    assert_eq!(payload(&plain.token)["exp"], 1_700_003_607);
    assert!(
        payload(&plain.token)["kubernetes.io"]
            .get("warnafter")
            .is_none()
    );

    let extending = issuer().with_extended_expiration(true);
    let issued = extending.issue(&request, NOW).expect("issue");
    assert_eq!(
        issued.expiration_seconds, 3607,
        "the status reports the request"
    );
    let claims = payload(&issued.token);
    assert_eq!(
        claims["exp"],
        1_700_000_000 + DEFAULT_MAX_TOKEN_EXPIRATION_SECONDS
    );
    assert_eq!(claims["kubernetes.io"]["warnafter"], 1_700_003_607);
    let verified = extending
        .verify(&issued.token, later(4000))
        .expect("still valid past warnafter")
        .check(&CLUSTER, later(4000))
        .expect("check");
    assert_eq!(
        verified.warn_after,
        Some(Timestamp::constant(1_700_003_607, 0))
    );

    // Not for other audiences, nor for tokens not bound to a pod.
    request.audiences = vec!["vault".into()];
    let other = extending.issue(&request, NOW).expect("issue");
    assert_eq!(payload(&other.token)["exp"], 1_700_003_607);
}

#[test]
fn validity_period_with_leeway() {
    let issuer = issuer();
    let issued = issuer.issue(&pod_request(), NOW).expect("issue");
    // exp = 1_700_003_600: accepted up to 60 s after it.
    let exp = Timestamp::constant(1_700_003_600, 0);
    assert!(
        issuer
            .verify(&issued.token, exp + SignedDuration::from_secs(60))
            .is_ok()
    );
    assert_eq!(
        issuer
            .verify(&issued.token, exp + SignedDuration::from_secs(61))
            .map(|_| ()),
        Err(TokenError::Expired)
    );
    // nbf = iat = 1_700_000_000: accepted from 60 s before it.
    let nbf = Timestamp::constant(1_700_000_000, 0);
    assert!(
        issuer
            .verify(&issued.token, nbf - SignedDuration::from_secs(60))
            .is_ok()
    );
    assert_eq!(
        issuer
            .verify(&issued.token, nbf - SignedDuration::from_secs(61))
            .map(|_| ()),
        Err(TokenError::NotValidYet)
    );
    assert_eq!(
        TokenError::Expired.to_string(),
        "service account token has expired"
    );
}

/// A token signed by `issuer`'s key with arbitrary claims.
fn signed(issuer: &TokenIssuer, claims: &serde_json::Value) -> String {
    jwt::encode(&issuer.key, claims).expect("encode")
}

fn good_claims() -> serde_json::Value {
    json!({
        "aud": [ISSUER], "exp": 1_700_003_600, "iat": 1_700_000_000, "nbf": 1_700_000_000,
        "iss": ISSUER, "jti": "j", "sub": "system:serviceaccount:ns:app",
        "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "app", "uid": "sa-1"}},
    })
}

#[test]
fn issuer_audience_and_claims_are_checked() {
    let issuer = issuer();
    assert!(issuer.verify(&signed(&issuer, &good_claims()), NOW).is_ok());

    let mut foreign = good_claims();
    foreign["iss"] = json!("https://elsewhere");
    assert_eq!(
        issuer.verify(&signed(&issuer, &foreign), NOW).map(|_| ()),
        Err(TokenError::NotServiceAccountToken)
    );
    let also = issuer
        .clone()
        .with_accepted_issuers(vec!["https://elsewhere".into()]);
    assert!(also.verify(&signed(&issuer, &foreign), NOW).is_ok());

    let mut vault = good_claims();
    vault["aud"] = json!(["vault"]);
    let err = issuer.verify(&signed(&issuer, &vault), NOW).map(|_| ());
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err(format!(
            "token audiences [\"vault\"] is invalid for the target audiences [\"{ISSUER}\"]"
        ))
    );
    assert!(
        issuer
            .verify_for_audiences(&signed(&issuer, &vault), &["vault".into()], NOW)
            .is_ok()
    );
    // A token without aud is for the API server (kube's legacy rule).
    let mut no_aud = good_claims();
    no_aud.as_object_mut().expect("object").remove("aud");
    assert!(issuer.verify(&signed(&issuer, &no_aud), NOW).is_ok());

    let broken = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut claims = good_claims();
        edit(&mut claims);
        issuer.verify(&signed(&issuer, &claims), NOW).map(|_| ())
    };
    let invalid = |r: Result<(), TokenError>| matches!(r, Err(TokenError::InvalidClaims { .. }));
    assert!(invalid(broken(&|c| {
        c.as_object_mut().expect("object").remove("exp");
    })));
    assert!(invalid(broken(&|c| {
        c.as_object_mut().expect("object").remove("kubernetes.io");
    })));
    assert!(invalid(broken(
        &|c| c["sub"] = json!("system:serviceaccount:ns:admin")
    )));
    assert!(invalid(broken(
        &|c| c["kubernetes.io"]["namespace"] = json!("")
    )));
    assert!(invalid(broken(&|c| {
        c["kubernetes.io"]["pod"] = json!({"name": "p", "uid": "u"});
        c["kubernetes.io"]["secret"] = json!({"name": "s", "uid": "u"});
    })));
    assert!(invalid(broken(&|c| c["exp"] = json!("soon"))));
    assert_eq!(
        broken(&|c| c["iat"] = json!(1_700_000_100)),
        Err(TokenError::IssuedInTheFuture)
    );
}

#[test]
fn forged_and_foreign_tokens_are_refused() {
    let issuer = issuer();
    let issued = issuer.issue(&pod_request(), NOW).expect("issue");
    let (head, rest) = issued.token.split_once('.').expect("parts");
    let (_, signature) = rest.split_once('.').expect("parts");
    let mut claims = payload(&issued.token);
    claims["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    claims["sub"] = json!("system:serviceaccount:ns:admin");
    let forged = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"))
    );
    assert_eq!(
        issuer.verify(&forged, NOW).map(|_| ()),
        Err(TokenError::Jwt(jwt::JwtError::BadSignature))
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"))
    );
    assert!(issuer.verify(&none, NOW).is_err());
    let other = TokenIssuer::new(SigningKey::generate().expect("generate"), ISSUER, vec![]);
    let theirs = other.issue(&pod_request(), NOW).expect("issue");
    assert_eq!(
        issuer.verify(&theirs.token, NOW).map(|_| ()),
        Err(TokenError::Jwt(jwt::JwtError::NoKeys))
    );
    for garbage in ["", "Bearer x", "{\"iss\":\"x\"}", "a.b.c", "abc"] {
        assert_eq!(
            issuer.verify(garbage, NOW).map(|_| ()),
            Err(TokenError::NotServiceAccountToken)
        );
    }
}

#[test]
fn a_rotated_out_key_still_verifies() {
    let old = issuer();
    let token = old.issue(&pod_request(), NOW).expect("issue").token;
    let new = TokenIssuer::new(SigningKey::generate().expect("generate"), ISSUER, vec![])
        .with_verification_keys(vec![old.key.public_key().clone()]);
    let verified = new
        .verify(&token, NOW)
        .expect("old key listed")
        .check(&CLUSTER, NOW)
        .expect("check");
    assert_eq!(verified.key_id, old.key.key_id());
    let without = TokenIssuer::new(SigningKey::generate().expect("generate"), ISSUER, vec![]);
    assert!(without.verify(&token, NOW).is_err());
}

#[test]
fn deleted_pod_or_service_account_invalidates_the_token() {
    let issuer = issuer();
    let token = issuer.issue(&pod_request(), NOW).expect("issue").token;
    let check = |cluster: &Cluster| {
        issuer
            .verify(&token, NOW)
            .expect("verify")
            .check(cluster, NOW)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(check(&CLUSTER), Ok(()));
    let pod_gone = Cluster {
        sa_uid: "sa-1",
        pod_uid: None,
    };
    assert_eq!(
        check(&pod_gone),
        Err("service account token has been invalidated".into())
    );
    let pod_recreated = Cluster {
        sa_uid: "sa-1",
        pod_uid: Some("pod-2"),
    };
    assert_eq!(
        check(&pod_recreated),
        Err("pod UID (pod-2) does not match service account pod ref claim (pod-1)".into())
    );
    let sa_recreated = Cluster {
        sa_uid: "sa-2",
        pod_uid: Some("pod-1"),
    };
    assert_eq!(
        check(&sa_recreated),
        Err("service account UID (sa-2) does not match claim (sa-1)".into())
    );
}

#[test]
fn go_quoting() {
    assert_eq!(go_quoted(&[]), "[]");
    assert_eq!(go_quoted(&["a".into(), "b c".into()]), r#"["a" "b c"]"#);
}
