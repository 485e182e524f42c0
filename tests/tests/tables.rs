//! `kubectl get` prints the columns a real cluster shows (server-side Tables), `-o wide`
//! adds the wide ones, and `get all` lists the workload kinds.

use skiff_tests::Lab;

fn header(output: &str) -> Vec<String> {
    let line = output.lines().next().unwrap_or_default();
    // Column names are separated by two or more spaces ("NOMINATED NODE" is one column).
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn get_prints_kube_columns_and_wide_columns() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("tables");
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: web, image: \"nginx:1.25\"}}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  type: NodePort\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{a: b}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: solo, namespace: {ns}}}\nspec:\n  nodeSelector: {{skiff.io/no-such-node: \"true\"}}\n  containers: [{{name: a, image: busybox}}, {{name: b, image: busybox}}]\n"
    );
    assert_eq!(lab.kubectl_stdin(&["create", "-f", "-"], &manifest).code, 0);

    let cases: &[(&[&str], &[&str])] = &[
        (
            &["get", "pods"],
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        ),
        (
            &["get", "pods", "-o", "wide"],
            &[
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES",
            ],
        ),
        (
            &["get", "deployments"],
            &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ),
        (
            &["get", "deployments", "-o", "wide"],
            &[
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
        ),
        (
            &["get", "services"],
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
        ),
        (&["get", "configmaps"], &["NAME", "DATA", "AGE"]),
    ];
    for (args, expected) in cases {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-n", &ns]);
        let out = lab.kubectl_ok(&full);
        assert_eq!(
            header(&out),
            *expected,
            "kubectl {}:\n{out}",
            args.join(" ")
        );
    }
    let pods = lab.kubectl_ok(&["get", "pods", "-n", &ns]);
    let solo = pods
        .lines()
        .find(|l| l.starts_with("solo "))
        .expect("solo row");
    let cells: Vec<&str> = solo.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["0/2", "Pending", "0"], "{solo}");
    let wide = lab.kubectl_ok(&["get", "deployments", "-n", &ns, "-o", "wide"]);
    assert!(
        wide.lines().any(|l| l.starts_with("web ")
            && l.contains("0/2")
            && l.contains("nginx:1.25")
            && l.contains("app=web")),
        "{wide}"
    );

    let all = lab.kubectl_ok(&["get", "all", "-n", &ns]);
    for expected in ["pod/solo", "service/web", "deployment.apps/web"] {
        assert!(all.contains(expected), "get all lacks {expected}:\n{all}");
    }
    assert!(
        !all.contains("configmap/"),
        "get all lists only the `all` category:\n{all}"
    );
}

#[test]
fn newer_kinds_print_kube_columns() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("tables-kinds");
    let suffix = std::process::id();
    let manifest = format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  maxUnavailable: 25%\n  selector: {{matchLabels: {{app: web}}}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  rules: [{{host: web.example, http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}}}]\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: tables-{suffix}}}\nvalue: 1000\npreemptionPolicy: Never\n---\n\
         apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: tables-{suffix}}}\nprovisioner: example.com/none\n"
    );
    let created = lab.kubectl_stdin(&["create", "-f", "-"], &manifest);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["get", "pdb", "-n", &ns],
            &[
                "NAME",
                "MIN AVAILABLE",
                "MAX UNAVAILABLE",
                "ALLOWED DISRUPTIONS",
                "AGE",
            ],
            &["web", "N/A", "25%"],
        ),
        (
            &["get", "networkpolicies", "-n", &ns],
            &["NAME", "POD-SELECTOR", "AGE"],
            &["web", "app=web"],
        ),
        (
            &["get", "ingresses", "-n", &ns],
            &["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
            &["web", "<none>", "web.example", "80"],
        ),
    ];
    let priority = format!("tables-{suffix}");
    let storage = format!("tables-{suffix}");
    let cluster_cases: Vec<(Vec<&str>, &[&str], Vec<&str>)> = vec![
        (
            vec!["get", "priorityclass", &priority],
            &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
            vec![&priority, "1000", "false"],
        ),
        (
            vec!["get", "storageclass", &storage],
            &[
                "NAME",
                "PROVISIONER",
                "RECLAIMPOLICY",
                "VOLUMEBINDINGMODE",
                "ALLOWVOLUMEEXPANSION",
                "AGE",
            ],
            vec![&storage, "example.com/none", "Delete", "Immediate", "false"],
        ),
    ];
    let all = cases
        .iter()
        .map(|(a, h, c)| (a.to_vec(), *h, c.to_vec()))
        .chain(cluster_cases);
    for (args, expected, cells) in all {
        let out = lab.kubectl_ok(&args);
        assert_eq!(header(&out), expected, "kubectl {}:\n{out}", args.join(" "));
        let row: Vec<&str> = out
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            row.get(..cells.len()),
            Some(&cells[..]),
            "kubectl {}:\n{out}",
            args.join(" ")
        );
    }
    let _ = lab.kubectl(&["delete", "priorityclass", &priority]);
    let _ = lab.kubectl(&["delete", "storageclass", &storage]);
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
