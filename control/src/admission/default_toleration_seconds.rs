//! DefaultTolerationSeconds, as kube-apiserver's plugin: a new pod that does not tolerate
//! the `node.kubernetes.io/not-ready` and `…/unreachable` NoExecute taints gets tolerations
//! for them, for `--default-toleration-seconds` (300 s): its node may be gone that long
//! before the pod is evicted and replaced elsewhere.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin};
use crate::model::ApiError;

/// The taints a node gets when it stops being ready or reachable.
const TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// The DefaultTolerationSeconds admission plugin.
pub struct DefaultTolerationSeconds {
    seconds: i64,
}

impl DefaultTolerationSeconds {
    /// The plugin adding tolerations for `seconds` (negative counts as 0).
    pub fn new(seconds: i64) -> Self {
        Self {
            seconds: seconds.max(0),
        }
    }
}

/// True if `toleration` tolerates `key`'s NoExecute taint (as kube's plugin asks).
fn tolerates(toleration: &Value, key: &str) -> bool {
    let effect = toleration
        .get("effect")
        .and_then(Value::as_str)
        .unwrap_or("");
    let its_key = toleration.get("key").and_then(Value::as_str).unwrap_or("");
    let operator = toleration
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or("Equal");
    (effect.is_empty() || effect == "NoExecute")
        && (its_key == key || (its_key.is_empty() && operator == "Exists"))
}

#[async_trait]
impl Plugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        pod: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if attributes.operation != Operation::Create || !attributes.is("", "pods") {
            return Ok(());
        }
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
        let Some(tolerations) = tolerations.as_array_mut() else {
            return Ok(());
        };
        for key in TAINTS {
            if !tolerations.iter().any(|t| tolerates(t, key)) {
                tolerations.push(json!({
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": self.seconds,
                }));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::user::UserInfo;

    async fn admitted(pod: Value) -> Value {
        let user = UserInfo::authenticated("u", vec![]);
        let attributes = Attributes {
            operation: Operation::Create,
            resource: crate::resources::find("", "v1", "pods").expect("pods"),
            subresource: "",
            namespace: "ns",
            name: "p",
            user: &user,
            dry_run: false,
        };
        let mut pod = pod;
        DefaultTolerationSeconds::new(120)
            .admit(&attributes, &mut pod, None, &mut Vec::new())
            .await
            .expect("admitted");
        pod
    }

    #[tokio::test]
    async fn pods_tolerate_a_lost_node_for_the_default_time() {
        let pod = admitted(json!({"spec": {"containers": [{"name": "c"}]}})).await;
        let tolerations = pod["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0]["tolerationSeconds"], 120);
        // A pod's own toleration (any NoExecute one for the key, or a blanket Exists) wins.
        let own = admitted(json!({"spec": {"containers": [{"name": "c"}], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
        ]}}))
        .await;
        let tolerations = own["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0]["tolerationSeconds"], 5);
        let blanket =
            admitted(json!({"spec": {"containers": [{"name": "c"}], "tolerations": [{"operator": "Exists"}]}}))
                .await;
        assert_eq!(
            blanket["spec"]["tolerations"].as_array().map(Vec::len),
            Some(1)
        );
    }
}
