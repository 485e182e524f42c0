//! Who may do what, end to end with the stock kubectl: a node's own credentials reach only
//! what its pods need, RBAC grants what its bindings say (as `kubectl auth can-i` reports),
//! nobody grants what they do not hold, an in-cluster client gets exactly its
//! ServiceAccount's rights and loses them with its pod, and Pod Security levels refuse and
//! warn as kube's do.

use std::{path::PathBuf, process::Command, time::Duration};

use skiff_tests::{Lab, manifests::pod_on, process};

const MINUTE: Duration = Duration::from_secs(60);

/// kubectl with another kubeconfig.
fn kubectl_with(lab: &Lab, kubeconfig: &PathBuf, args: &[&str]) -> process::Finished {
    process::output(
        Command::new(&lab.kubectl)
            .env("KUBECONFIG", kubeconfig)
            .args(args),
    )
}

fn node_kubeconfig(lab: &Lab, node: usize) -> PathBuf {
    lab.dir
        .join("nodes")
        .join(&lab.nodes[node].name)
        .join("kubeconfig")
}

#[test]
fn a_node_reads_only_what_its_pods_need_and_writes_only_itself() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("node-authz");
    let node_one = lab.nodes[0].name.clone();
    let node_two = lab.nodes[1].name.clone();
    let one = node_kubeconfig(&lab, 0);
    let two = node_kubeconfig(&lab, 1);
    for secret in ["mounted", "unrelated"] {
        lab.kubectl_ok(&[
            "create",
            "secret",
            "generic",
            secret,
            "-n",
            &ns,
            "--from-literal=k=v",
        ]);
    }
    lab.apply(
        &ns,
        &pod_on(
            "reader",
            &node_one,
            "  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: busybox, command: [sleep, \"3600\"], volumeMounts: [{name: s, mountPath: /s}]}\n  volumes:\n  - {name: s, secret: {secretName: mounted}}\n",
        ),
    );
    lab.wait_running(&ns, "reader");

    // Listing secrets, or reading one no pod of the node uses: 403 in kube's words.
    let list = kubectl_with(&lab, &one, &["get", "secrets", "-n", &ns]);
    assert_ne!(list.code, 0, "{list:?}");
    assert!(
        list.stderr.contains(&format!(
            "secrets is forbidden: User \"system:node:{node_one}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"{ns}\""
        )),
        "{list:?}"
    );
    let unrelated = kubectl_with(&lab, &one, &["get", "secret", "unrelated", "-n", &ns]);
    assert!(
        unrelated
            .stderr
            .contains("no relationship found between node"),
        "{unrelated:?}"
    );
    // The secret of its own pod: allowed; the same secret for another node: refused.
    let mounted = kubectl_with(
        &lab,
        &one,
        &["get", "secret", "mounted", "-n", &ns, "-o", "name"],
    );
    assert_eq!(mounted.code, 0, "{mounted:?}");
    let other = kubectl_with(&lab, &two, &["get", "secret", "mounted", "-n", &ns]);
    assert!(other.stderr.contains("forbidden"), "{other:?}");

    // Another node cannot be deleted or labelled by this one; its own Node it may read.
    let delete = kubectl_with(
        &lab,
        &one,
        &["delete", "node", &node_two, "--dry-run=server"],
    );
    assert_ne!(delete.code, 0, "{delete:?}");
    assert!(delete.stderr.contains("forbidden"), "{delete:?}");
    let label = kubectl_with(
        &lab,
        &one,
        &[
            "label",
            "node",
            &node_one,
            "node-restriction.kubernetes.io/pool=x",
            "--dry-run=server",
        ],
    );
    assert!(
        label.stderr.contains("is not allowed to modify labels"),
        "{label:?}"
    );
    let own = kubectl_with(&lab, &one, &["get", "node", &node_one, "-o", "name"]);
    assert_eq!(own.code, 0, "{own:?}");
    // Pods of other nodes: not listed without its own field selector.
    let pods = kubectl_with(&lab, &one, &["get", "pods", "-A"]);
    assert!(pods.stderr.contains("forbidden"), "{pods:?}");
    let mine = kubectl_with(
        &lab,
        &one,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            &format!("spec.nodeName={node_one}"),
            "-o",
            "name",
        ],
    );
    assert_eq!(mine.code, 0, "{mine:?}");
    assert!(mine.stdout.contains("pod/reader"), "{mine:?}");
}

#[test]
fn rbac_grants_what_bindings_say_and_nobody_grants_what_they_lack() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("rbac");
    let alice = format!("alice-{ns}");
    lab.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        &ns,
        "--verb=get,list,watch",
        "--resource=pods",
    ]);
    lab.kubectl_ok(&[
        "create",
        "rolebinding",
        "alice-reads",
        "-n",
        &ns,
        "--role=pod-reader",
        &format!("--user={alice}"),
    ]);
    lab.kubectl_ok(&["create", "serviceaccount", "app", "-n", &ns]);
    lab.kubectl_ok(&[
        "create",
        "rolebinding",
        "app-views",
        "-n",
        &ns,
        "--clusterrole=view",
        &format!("--serviceaccount={ns}:app"),
    ]);
    lab.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        &format!("{ns}-ops"),
        "--clusterrole=view",
        &format!("--group={ns}-ops"),
    ]);

    let can = |args: &[&str]| {
        let mut full = vec!["auth", "can-i"];
        full.extend_from_slice(args);
        lab.kubectl(&full).stdout.trim().to_owned()
    };
    let as_alice = format!("--as={alice}");
    let as_app = format!("--as=system:serviceaccount:{ns}:app");
    let as_ops = format!("--as-group={ns}-ops");
    assert_eq!(can(&["list", "pods", "-n", &ns, &as_alice]), "yes");
    assert_eq!(can(&["delete", "pods", "-n", &ns, &as_alice]), "no");
    assert_eq!(can(&["list", "pods", "-n", "default", &as_alice]), "no");
    assert_eq!(
        can(&["get", "pods", "--subresource=log", "-n", &ns, &as_alice]),
        "no",
        "a subresource needs its own rule"
    );
    assert_eq!(can(&["list", "configmaps", "-n", &ns, &as_app]), "yes");
    assert_eq!(
        can(&["get", "secrets", "-n", &ns, &as_app]),
        "no",
        "view excludes secrets"
    );
    assert_eq!(
        can(&["list", "deployments.apps", "-A", "--as=someone", &as_ops]),
        "yes"
    );
    let list = lab.kubectl_ok(&["auth", "can-i", "--list", "-n", &ns, &as_alice]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{list}"
    );
    let whoami = lab.kubectl_ok(&[
        "auth",
        "whoami",
        &as_alice,
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(whoami, alice);

    // Denials name who, what and where.
    let denied = lab.kubectl(&["delete", "pod", "x", "-n", &ns, &as_alice]);
    assert!(
        denied.stderr.contains(&format!(
            "pods \"x\" is forbidden: User \"{alice}\" cannot delete resource \"pods\" in API group \"\" in the namespace \"{ns}\""
        )),
        "{denied:?}"
    );

    // Escalation: alice may create roles and bindings here, but not grant what she lacks.
    lab.kubectl_ok(&[
        "create",
        "role",
        "role-writer",
        "-n",
        &ns,
        "--verb=create",
        "--resource=roles,rolebindings",
    ]);
    lab.kubectl_ok(&[
        "create",
        "rolebinding",
        "alice-writes",
        "-n",
        &ns,
        "--role=role-writer",
        &format!("--user={alice}"),
    ]);
    let sneaky = lab.kubectl(&[
        "create",
        "role",
        "sneaky",
        "-n",
        &ns,
        "--verb=get",
        "--resource=secrets",
        &as_alice,
    ]);
    assert_ne!(sneaky.code, 0, "{sneaky:?}");
    assert!(
        sneaky
            .stderr
            .contains("is attempting to grant RBAC permissions not currently held"),
        "{sneaky:?}"
    );
    let held = lab.kubectl(&[
        "create",
        "role",
        "subset",
        "-n",
        &ns,
        "--verb=get",
        "--resource=pods",
        &as_alice,
    ]);
    assert_eq!(held.code, 0, "a role within what she holds: {held:?}");
    let bind_admin = lab.kubectl(&[
        "create",
        "rolebinding",
        "grab",
        "-n",
        &ns,
        "--clusterrole=admin",
        &format!("--user={alice}"),
        &as_alice,
    ]);
    assert_ne!(bind_admin.code, 0, "{bind_admin:?}");
    assert!(bind_admin.stderr.contains("forbidden"), "{bind_admin:?}");

    // `kubectl auth reconcile` brings a manifest's RBAC objects in.
    let manifest = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: reconciled, namespace: {ns}}}\nrules:\n- {{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: reconciled, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reconciled}}\nsubjects:\n- {{kind: User, apiGroup: rbac.authorization.k8s.io, name: bob-{ns}}}\n"
    );
    let reconciled = lab.kubectl_stdin(&["auth", "reconcile", "-f", "-"], &manifest);
    assert_eq!(reconciled.code, 0, "{reconciled:?}");
    assert_eq!(
        can(&["get", "configmaps", "-n", &ns, &format!("--as=bob-{ns}")]),
        "yes"
    );
    lab.kubectl_ok(&["delete", "clusterrolebinding", &format!("{ns}-ops")]);
}

#[test]
fn an_in_cluster_client_gets_its_service_accounts_rights_until_its_pod_goes() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("incluster");
    lab.kubectl_ok(&["create", "serviceaccount", "app", "-n", &ns]);
    lab.kubectl_ok(&[
        "create",
        "role",
        "cm-reader",
        "-n",
        &ns,
        "--verb=get,list",
        "--resource=configmaps",
    ]);
    lab.kubectl_ok(&[
        "create",
        "rolebinding",
        "app-reads",
        "-n",
        &ns,
        "--role=cm-reader",
        &format!("--serviceaccount={ns}:app"),
    ]);
    lab.apply(
        &ns,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n  serviceAccountName: app\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: skiff/kubectl, command: [sleep, \"3600\"]}\n",
    );
    lab.wait_running(&ns, "client");
    let exec = |args: &[&str]| {
        let mut full = vec!["exec", "client", "-n", ns.as_str(), "--"];
        full.extend_from_slice(args);
        lab.kubectl(&full)
    };
    // The projected credentials are where every client looks for them.
    let files = exec(&["ls", "/var/run/secrets/kubernetes.io/serviceaccount"]);
    for file in ["ca.crt", "namespace", "token"] {
        assert!(files.stdout.lines().any(|l| l == file), "{files:?}");
    }
    let namespace = exec(&[
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    ]);
    assert_eq!(namespace.stdout, ns);
    // kubectl inside the pod: in-cluster config, https://kubernetes.default.svc through the
    // Service datapath, TLS verified with the mounted CA.
    let allowed = exec(&["kubectl", "get", "configmaps", "-o", "name"]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert!(
        allowed.stdout.contains("configmap/kube-root-ca.crt"),
        "{allowed:?}"
    );
    let denied = exec(&["kubectl", "get", "secrets"]);
    assert!(
        denied.stderr.contains(&format!(
            "User \"system:serviceaccount:{ns}:app\" cannot list resource \"secrets\""
        )),
        "{denied:?}"
    );
    // By the Service's DNS name, with the mounted credentials given explicitly (kubectl
    // uses the in-cluster configuration only when no server is named).
    let by_dns = exec(&[
        "sh",
        "-c",
        "cd /var/run/secrets/kubernetes.io/serviceaccount && kubectl --server=https://kubernetes.default.svc \
         --certificate-authority=ca.crt --token=\"$(cat token)\" get configmaps -o name",
    ]);
    assert_eq!(by_dns.code, 0, "{by_dns:?}");

    // The token works from outside too, until its pod is deleted.
    let token = exec(&["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]).stdout;
    assert!(token.split('.').count() == 3, "a JWT: {token}");
    let url = format!("https://127.0.0.1:6443/api/v1/namespaces/{ns}/configmaps");
    let status = || {
        process::run(
            "curl",
            &[
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                "-H",
                &format!("Authorization: Bearer {token}"),
                &url,
            ],
        )
        .unwrap_or_default()
    };
    assert_eq!(status(), "200");
    lab.kubectl_ok(&["delete", "pod", "client", "-n", &ns, "--wait=true"]);
    lab.eventually(
        "the deleted pod's token refused",
        MINUTE,
        || match status().as_str() {
            "401" => Ok(()),
            other => Err(other.to_owned()),
        },
    );

    // The issuer's discovery documents name the key tokens are signed with.
    let configuration = lab.kubectl_ok(&["get", "--raw", "/.well-known/openid-configuration"]);
    let configuration: serde_json::Value =
        serde_json::from_str(&configuration).expect("OIDC configuration");
    assert_eq!(
        configuration["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    let jwks = lab.kubectl_ok(&["get", "--raw", "/openid/v1/jwks"]);
    let jwks: serde_json::Value = serde_json::from_str(&jwks).expect("JWKS");
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    // kubectl create token: a token for the ServiceAccount itself.
    let minted = lab.kubectl_ok(&["create", "token", "app", "-n", &ns, "--duration=10m"]);
    let minted = minted.trim();
    let out = process::run(
        "curl",
        &[
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "-H",
            &format!("Authorization: Bearer {minted}"),
            &url,
        ],
    );
    assert_eq!(out.as_deref(), Ok("200"));
}

#[test]
fn pod_security_levels_refuse_and_warn_as_kube_does() {
    let Some(lab) = Lab::from_env() else { return };
    let baseline = lab.namespace("psa-baseline");
    lab.kubectl_ok(&[
        "label",
        "namespace",
        &baseline,
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    let host_path = "apiVersion: v1\nkind: Pod\nmetadata: {name: hostpath}\nspec:\n  containers:\n  - {name: c, image: busybox, command: [sleep, \"1\"], volumeMounts: [{name: h, mountPath: /h}]}\n  volumes:\n  - {name: h, hostPath: {path: /etc}}\n";
    let refused = lab.kubectl_stdin(&["apply", "-n", &baseline, "-f", "-"], host_path);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"h\")"),
        "{refused:?}"
    );
    let sys_admin = "apiVersion: v1\nkind: Pod\nmetadata: {name: admin}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    securityContext: {capabilities: {add: [SYS_ADMIN]}}\n";
    let refused = lab.kubectl_stdin(&["apply", "-n", &baseline, "-f", "-"], sys_admin);
    assert!(
        refused.stderr.contains("non-default capabilities (container \"c\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add)"),
        "{refused:?}"
    );

    let restricted = lab.namespace("psa-restricted");
    lab.kubectl_ok(&[
        "label",
        "namespace",
        &restricted,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let root = "apiVersion: v1\nkind: Pod\nmetadata: {name: root}\nspec:\n  containers:\n  - {name: c, image: busybox, command: [sleep, \"1\"]}\n";
    let refused = lab.kubectl_stdin(&["apply", "-n", &restricted, "-f", "-"], root);
    assert!(
        refused
            .stderr
            .contains("violates PodSecurity \"restricted:latest\""),
        "{refused:?}"
    );
    assert!(
        refused.stderr.contains("runAsNonRoot != true"),
        "{refused:?}"
    );
    let compliant = "apiVersion: v1\nkind: Pod\nmetadata: {name: compliant}\nspec:\n  securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, \"3600\"]\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    let admitted = lab.kubectl_stdin(&["apply", "-n", &restricted, "-f", "-"], compliant);
    assert_eq!(admitted.code, 0, "{admitted:?}");
    lab.wait_running(&restricted, "compliant");
    // The restricted pod really runs confined: seccomp filtering, no new privileges.
    let status = lab.kubectl_ok(&[
        "exec",
        "compliant",
        "-n",
        &restricted,
        "--",
        "cat",
        "/proc/1/status",
    ]);
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NoNewPrivs:", "1"]),
        "{status}"
    );
    // Every pod has a pids limit (the agent's --pod-max-pids, 4096 in the lab).
    let pids = lab.kubectl_ok(&[
        "exec",
        "compliant",
        "-n",
        &restricted,
        "--",
        "sh",
        "-c",
        // cgroup v1's pids hierarchy on hybrid hosts, the unified one elsewhere.
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(pids.trim(), "4096");
    let uid = lab.kubectl_ok(&["exec", "compliant", "-n", &restricted, "--", "id", "-u"]);
    assert_eq!(uid.trim(), "65534");

    let warned = lab.namespace("psa-warn");
    lab.kubectl_ok(&[
        "label",
        "namespace",
        &warned,
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    let out = lab.kubectl_stdin(&["apply", "-n", &warned, "-f", "-"], root);
    assert_eq!(out.code, 0, "warn admits: {out:?}");
    assert!(
        out.stderr
            .contains("Warning: would violate PodSecurity \"restricted:latest\""),
        "{out:?}"
    );
    // Labelling a namespace tighter than its pods warns about them.
    let label = lab.kubectl(&[
        "label",
        "namespace",
        &warned,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    assert!(
        label.stderr.contains("Warning: existing pods in namespace"),
        "{label:?}"
    );
}

#[test]
fn hostile_volume_paths_and_numbers_are_refused_not_obeyed() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("hostile");
    lab.kubectl_ok(&["create", "configmap", "c", "-n", &ns, "--from-literal=k=v"]);
    let escape = "apiVersion: v1\nkind: Pod\nmetadata: {name: escape}\nspec:\n  containers:\n  - {name: c, image: busybox}\n  volumes:\n  - name: v\n    configMap:\n      name: c\n      items: [{key: k, path: /tmp/skiff-escape}]\n";
    let refused = lab.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], escape);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("spec.volumes[0].configMap.items[0].path"),
        "{refused:?}"
    );
    assert!(!std::path::Path::new("/tmp/skiff-escape").exists());
    // A watch asking for the longest timeout there is: answered, nothing panics.
    let out = lab.kubectl(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=9223372036854775807&limit=1"
        ),
        "--request-timeout=2s",
    ]);
    assert!(!out.stderr.contains("EOF"), "{out:?}");
    // A pod asking for 1e30 CPUs fits nowhere and says why; scheduling goes on.
    lab.apply(
        &ns,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: greedy}\nspec:\n  containers:\n  - {name: c, image: busybox, resources: {requests: {cpu: \"1e30\"}}}\n",
    );
    lab.eventually("the greedy pod unschedulable", MINUTE, || {
        let message = lab.jsonpath(
            &ns,
            "pod/greedy",
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        );
        if message.contains("Insufficient cpu") {
            Ok(())
        } else {
            Err(message)
        }
    });
    lab.apply(
        &ns,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: modest}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: busybox, command: [sleep, \"3600\"]}\n",
    );
    lab.wait_running(&ns, "modest");
    let health = process::run(
        "curl",
        &["-sf", "--max-time", "2", "http://127.0.0.1:10257/healthz"],
    );
    assert_eq!(health.as_deref(), Ok("ok"));
}

#[test]
fn secrets_are_encrypted_at_rest() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("at-rest");
    lab.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        &ns,
        "--from-literal=password=hunter2-at-rest",
    ]);
    let key = format!("/registry/core/secrets/{ns}/s");
    let etcdctl = |key: &str| {
        process::output(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(lab.etcdctl_flags())
                .args(["get", key, "--print-value-only"]),
        )
    };
    let stored = etcdctl(&key);
    assert_eq!(stored.code, 0, "{stored:?}");
    assert!(
        stored.stdout.starts_with("k8s:enc:secretbox:v1:"),
        "{stored:?}"
    );
    // Neither the value nor its base64 form is in etcd.
    assert!(!stored.stdout.contains("hunter2"), "{stored:?}");
    assert!(
        !stored.stdout.contains("aHVudGVyMi1hdC1yZXN0"),
        "{stored:?}"
    );
    // Clients see the secret as written.
    let value = lab.kubectl_ok(&[
        "get",
        "secret",
        "s",
        "-n",
        &ns,
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(value, "aHVudGVyMi1hdC1yZXN0");
    // ConfigMaps are not encrypted (the configuration names secrets only).
    lab.kubectl_ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        &ns,
        "--from-literal=k=plain",
    ]);
    let plain = etcdctl(&format!("/registry/core/configmaps/{ns}/c"));
    assert!(plain.stdout.contains("\"k\":\"plain\""), "{plain:?}");
}
