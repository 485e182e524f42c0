//! Traffic from inside the lab for the datapath tests: `skiff-load` run in a pod's network
//! namespace and cgroup (so the socket LB and the pod's veth see it exactly as a container's
//! traffic), in a node's namespace, or from the root namespace (outside the cluster, as a
//! NodePort or LoadBalancer client); and the datapath CLI of a node.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::Value;

use crate::{Lab, cgroup2_mount, process};

/// A leaf cgroup for one client process, removed when dropped.
struct ClientCgroup(PathBuf);

impl Drop for ClientCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A skiff-load run in the background.
pub struct Running {
    child: Child,
    _cgroup: Option<ClientCgroup>,
    what: String,
}

impl Running {
    /// Wait for it and parse its report.
    pub fn finish(self) -> Value {
        let what = self.what.clone();
        let out = self
            .child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        parse(&what, &process::Finished::from(out))
    }
}

fn parse(what: &str, out: &process::Finished) -> Value {
    assert_eq!(out.code, 0, "{what} failed: {}{}", out.stdout, out.stderr);
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{what} printed no report ({e}): {}", out.stdout))
}

static CLIENTS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// The node, network namespace path and cgroup directory of a pod.
    pub fn pod_sandbox(&self, ns: &str, pod: &str) -> (String, PathBuf, PathBuf) {
        let node = self.jsonpath(ns, &format!("pod/{pod}"), "{.spec.nodeName}");
        let uid = self.jsonpath(ns, &format!("pod/{pod}"), "{.metadata.uid}");
        assert!(
            !node.is_empty() && !uid.is_empty(),
            "pod {ns}/{pod} not found"
        );
        let netns = self.dir.join("nodes").join(&node).join("netns").join(&uid);
        let cgroup = cgroup2_mount()
            .expect("no cgroup2 hierarchy")
            .join("skiff")
            .join(&node)
            .join(format!("pod{uid}"));
        (node, netns, cgroup)
    }

    fn load_command(&self, netns: Option<&Path>, cgroup: Option<&Path>, args: &[&str]) -> Command {
        let load = self.bin("skiff-load");
        let mut script = String::new();
        if let Some(cgroup) = cgroup {
            script.push_str(&format!(
                "echo $$ > '{}/cgroup.procs' && ",
                cgroup.display()
            ));
        }
        script.push_str("exec ");
        if let Some(netns) = netns {
            script.push_str(&format!("nsenter --net='{}' ", netns.display()));
        }
        script.push_str(&format!("'{}' \"$@\"", load.display()));
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg("skiff-load").args(args);
        cmd
    }

    fn client_cgroup(parent: &std::path::Path) -> ClientCgroup {
        let n = CLIENTS.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("skiff-load-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating client cgroup {}: {e}", dir.display()));
        ClientCgroup(dir)
    }

    /// Start `skiff-load args…` inside pod `ns/pod` (its network namespace and a cgroup
    /// below the pod's).
    pub fn spawn_load_in_pod(&self, ns: &str, pod: &str, args: &[&str]) -> Running {
        let (_, netns, pod_cgroup) = self.pod_sandbox(ns, pod);
        self.spawn_load_in_sandbox(&netns, &pod_cgroup, &format!("pod {ns}/{pod}"), args)
    }

    /// Start `skiff-load args…` in the pod whose network namespace and cgroup
    /// [`Lab::pod_sandbox`] returned (`what` names it in errors): for callers that start
    /// many runs in one pod without asking the API server each time.
    pub fn spawn_load_in_sandbox(
        &self,
        netns: &Path,
        pod_cgroup: &Path,
        what: &str,
        args: &[&str],
    ) -> Running {
        let cgroup = Self::client_cgroup(pod_cgroup);
        let mut cmd = self.load_command(Some(netns), Some(&cgroup.0), args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting skiff-load in {what}: {e}"));
        Running {
            child,
            _cgroup: Some(cgroup),
            what: format!("skiff-load {} in {what}", args.join(" ")),
        }
    }

    /// Run `skiff-load args…` inside pod `ns/pod` and return its report.
    pub fn load_in_pod(&self, ns: &str, pod: &str, args: &[&str]) -> Value {
        self.spawn_load_in_pod(ns, pod, args).finish()
    }

    /// Start `skiff-load args…` in node `node`'s network namespace, in a cgroup below the
    /// node's pod cgroup parent (so the socket LB translates for it as for a pod).
    pub fn spawn_load_in_node(&self, node: &str, args: &[&str]) -> Running {
        let parent = cgroup2_mount()
            .expect("no cgroup2 hierarchy")
            .join("skiff")
            .join(node);
        let cgroup = Self::client_cgroup(&parent);
        let netns = PathBuf::from("/run/netns").join(node);
        let mut cmd = self.load_command(Some(&netns), Some(&cgroup.0), args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting skiff-load on {node}: {e}"));
        Running {
            child,
            _cgroup: Some(cgroup),
            what: format!("skiff-load {} on node {node}", args.join(" ")),
        }
    }

    /// Start `skiff-load args…` in the root namespace (outside the cluster's nodes).
    pub fn spawn_load_from_root(&self, args: &[&str]) -> Running {
        let child = self
            .load_command(None, None, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting skiff-load: {e}"));
        Running {
            child,
            _cgroup: None,
            what: format!("skiff-load {} from the root namespace", args.join(" ")),
        }
    }

    /// Run `skiff-load args…` in the root namespace and return its report.
    pub fn load_from_root(&self, args: &[&str]) -> Value {
        self.spawn_load_from_root(args).finish()
    }

    /// `node`'s Service frontends as `skiff-agent bpf lb list -o json` prints them.
    pub fn frontends(&self, node: &str) -> Value {
        let out = self.bpf(node, &["lb", "list", "-o", "json"]);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("lb list -o json on {node} printed no JSON ({e}): {out}"))
    }

    /// `skiff-agent bpf --node NODE args…` (stdout; panics on failure).
    pub fn bpf(&self, node: &str, args: &[&str]) -> String {
        let agent = self.bin("skiff-agent");
        let mut all = vec!["bpf", "--node", node];
        all.extend_from_slice(args);
        let out = process::output(Command::new(&agent).args(&all));
        assert_eq!(
            out.code,
            0,
            "skiff-agent {} failed: {}",
            all.join(" "),
            out.stderr
        );
        out.stdout
    }

    /// Switch the socket LB on or off on every node (off: east-west traffic goes through
    /// the per-packet tc path).
    pub fn set_socket_lb(&self, on: bool) {
        let switch = if on { "on" } else { "off" };
        for node in &self.nodes {
            self.bpf(&node.name, &["config", "--socket-lb", switch]);
        }
    }
}
