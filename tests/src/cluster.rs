//! Talking to the lab's API server: kube-rs clients, the kubectl on PATH, a namespace per
//! test, and controlling lab components.

use std::{path::Path, process::Command};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::{Lab, process};

impl Lab {
    /// A kube-rs client from the admin kubeconfig.
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig()).await
    }

    /// A kube-rs client that reports 429/503/504 at once instead of retrying them.
    pub async fn client_without_retries(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig()).expect("reading the kubeconfig");
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        config.default_retry = false;
        Client::try_from(config).expect("kube client")
    }

    /// Run the kubectl on PATH with the lab's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> process::Finished {
        process::output(
            Command::new(&self.kubectl)
                .env("KUBECONFIG", self.kubeconfig())
                .args(args),
        )
    }

    /// Run kubectl with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> process::Finished {
        use std::io::Write as _;
        let mut child = Command::new(&self.kubectl)
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting kubectl");
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .expect("writing kubectl stdin");
        }
        child.wait_with_output().expect("kubectl").into()
    }

    /// Run kubectl and require success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_eq!(
            out.code,
            0,
            "kubectl {} failed: {}",
            args.join(" "),
            out.stderr
        );
        out.stdout
    }

    /// Create a namespace unique to this test run (`<prefix>-<pid>`).
    pub fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", std::process::id());
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }

    /// `cargo xtask component <action> <name> [--kill]`.
    pub fn component(&self, action: &str, name: &str, kill: bool) {
        let mut cmd = Command::new(&self.xtask);
        cmd.args(["component", action, name]);
        if kill {
            cmd.arg("--kill");
        }
        let out = process::output(&mut cmd);
        assert_eq!(
            out.code, 0,
            "xtask component {action} {name} failed: {}",
            out.stderr
        );
    }
}

/// Cluster objects a test made, deleted when the guard drops — also when the test fails —
/// in the reverse order they were named (`kubectl delete <kind> <name> --ignore-not-found
/// --wait=false`).
pub struct DeleteOnDrop<'a> {
    lab: &'a Lab,
    objects: Vec<(String, String)>,
}

impl Lab {
    /// A guard deleting `objects` (kind, name) when it drops.
    pub fn delete_on_drop(&self, objects: &[(&str, &str)]) -> DeleteOnDrop<'_> {
        DeleteOnDrop {
            lab: self,
            objects: objects
                .iter()
                .map(|(kind, name)| ((*kind).to_owned(), (*name).to_owned()))
                .collect(),
        }
    }
}

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        for (kind, name) in self.objects.iter().rev() {
            let _ = self
                .lab
                .kubectl(&["delete", kind, name, "--ignore-not-found", "--wait=false"]);
        }
    }
}

/// A kube-rs client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("kube client")
}

impl Lab {
    /// `kubectl get <what…> -n <ns> -o jsonpath=<path>` (empty string on failure); `what`
    /// is split on whitespace (`"pods -l app=web"`).
    pub fn jsonpath(&self, ns: &str, what: &str, path: &str) -> String {
        let output = format!("jsonpath={path}");
        let mut args = vec!["get"];
        args.extend(what.split_whitespace());
        args.extend(["-n", ns, "-o", &output]);
        let out = self.kubectl(&args);
        if out.code == 0 {
            out.stdout
        } else {
            String::new()
        }
    }

    /// `kubectl get events` about the object `name` in `ns` (kubectl's table).
    pub fn events_of(&self, ns: &str, name: &str) -> String {
        let selector = format!("involvedObject.name={name}");
        self.kubectl_ok(&["get", "events", "-n", ns, "--field-selector", &selector])
    }

    /// Apply a manifest in a namespace.
    pub fn apply(&self, ns: &str, manifest: &str) {
        let out = self.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], manifest);
        assert_eq!(
            out.code, 0,
            "kubectl apply failed: {}\n{manifest}",
            out.stderr
        );
    }

    /// Poll `check` every 250 ms until it returns `Some`, or panic with `what` and the last
    /// observation after `limit`.
    pub fn eventually<T>(
        &self,
        what: &str,
        limit: std::time::Duration,
        mut check: impl FnMut() -> Result<T, String>,
    ) -> T {
        let started = std::time::Instant::now();
        loop {
            match check() {
                Ok(value) => return value,
                Err(last) if started.elapsed() > limit => {
                    panic!(
                        "{what}: not true after {} s; last seen: {last}",
                        limit.as_secs()
                    )
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
            }
        }
    }

    /// Wait until a pod is Running with every container ready.
    pub fn wait_running(&self, ns: &str, pod: &str) {
        let limit = std::time::Duration::from_secs(60);
        self.eventually(&format!("pod {ns}/{pod} running and ready"), limit, || {
            let phase = self.jsonpath(ns, &format!("pod/{pod}"), "{.status.phase}");
            let ready = self.jsonpath(
                ns,
                &format!("pod/{pod}"),
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            );
            if phase == "Running" && ready == "True" {
                Ok(())
            } else {
                Err(format!(
                    "phase={phase} ready={ready} statuses={}",
                    self.jsonpath(ns, &format!("pod/{pod}"), "{.status.containerStatuses}")
                ))
            }
        });
    }
}
