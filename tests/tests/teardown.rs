//! After `cargo xtask down`: nothing of the lab is left — no network namespace, link,
//! cgroup, bpffs pin, OCI runtime state or process. Then `up` recovers by itself from a
//! stale lab (debris of a killed run) and `down` cleans that too. `cargo xtask test` runs
//! this target last, with `SKIFF_LAB_TORN_DOWN=1`.

use std::{path::Path, process::Command};

use skiff_tests::{Lab, cannot_run, cgroup_mounts, cgroup2_mount, oci_runtime, process};

fn torn_down_lab() -> Option<Lab> {
    let lab = Lab::from_env()?;
    if std::env::var("SKIFF_LAB_TORN_DOWN").as_deref() != Ok("1") {
        cannot_run("the after-down checks run only after `down` (SKIFF_LAB_TORN_DOWN=1)");
        return None;
    }
    Some(lab)
}

/// Everything of a lab still present, as readable items.
fn leftovers(lab: &Lab) -> Vec<String> {
    let mut found = Vec::new();
    let netns = process::run("ip", &["netns", "list"]).unwrap_or_default();
    found.extend(
        netns
            .lines()
            .filter(|l| l.starts_with("skiff-node-"))
            .map(|l| format!("netns {l}")),
    );
    let links = process::run("ip", &["-o", "link", "show"]).unwrap_or_default();
    for link in links.lines().filter_map(|l| l.split(": ").nth(1)) {
        let name = link.split('@').next().unwrap_or(link);
        if name == "skiff0" || name.starts_with("skiff-n") {
            found.push(format!("link {name}"));
        }
    }
    for mount in cgroup_mounts() {
        let dir = mount.join("skiff");
        if dir.exists() {
            found.push(format!("cgroup {}", dir.display()));
        }
    }
    if Path::new("/sys/fs/bpf/skiff").exists() {
        found.push("bpffs /sys/fs/bpf/skiff".to_owned());
    }
    // The lab containerd's namespaces (nodes, the pod benchmark's floor) keep OCI runtime
    // state outside the lab directory.
    found.extend(
        oci_runtime::namespaces_named("skiff-")
            .into_iter()
            .map(|d| format!("runtime state {}", d.display())),
    );
    let needle = lab.dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if pid != std::process::id()
            && String::from_utf8_lossy(&cmdline).contains(&needle)
            && alive(pid)
        {
            found.push(format!(
                "process {pid} {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    oci_runtime::process_state(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

#[test]
fn down_leaves_nothing_and_up_recovers_from_a_stale_lab() {
    let Some(lab) = torn_down_lab() else { return };
    let left = leftovers(&lab);
    assert!(left.is_empty(), "left behind after down: {left:#?}");
    // Every process the last lab recorded is gone (checked by pid, not only by name).
    let record = std::fs::read(lab.last_record()).expect("down keeps the last lab record in logs/");
    let record: serde_json::Value = serde_json::from_slice(&record).expect("record is JSON");
    let daemons = record["daemons"].as_array().expect("daemons");
    // etcd, containerd, the registry, skiff-control and one agent per node.
    assert_eq!(daemons.len(), 4 + lab.nodes.len(), "{record}");
    for daemon in daemons {
        let pid = daemon["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .expect("pid");
        assert!(!alive(pid), "{} (pid {pid}) still runs", daemon["name"]);
    }

    // Debris of a killed run: a node namespace, a veth on a bridge, a cgroup, a bpffs pin
    // directory, a container's OCI runtime state — with no process behind any of it.
    process::run("ip", &["netns", "add", "skiff-node-7"]).expect("netns");
    process::run("ip", &["link", "add", "skiff0", "type", "bridge"]).expect("bridge");
    process::run(
        "ip",
        &[
            "link",
            "add",
            "skiff-n7",
            "type",
            "veth",
            "peer",
            "name",
            "skiff-n7p",
        ],
    )
    .expect("veth");
    let cgroup = cgroup2_mount()
        .expect("cgroup2")
        .join("skiff")
        .join("skiff-node-7");
    std::fs::create_dir_all(&cgroup).expect("cgroup");
    std::fs::create_dir_all("/sys/fs/bpf/skiff/skiff-node-7").expect("bpffs dir");
    std::fs::create_dir_all(oci_runtime::state_dir("skiff-node-7", "stale-container"))
        .expect("runtime state dir");

    // `--no-build`: this test runs under `cargo test`, which holds the build lock.
    let up = process::output(Command::new(&lab.xtask).args(["up", "--nodes", "1", "--no-build"]));
    let down = process::output(Command::new(&lab.xtask).arg("down"));
    assert_eq!(up.code, 0, "up over a stale lab failed: {up:?}");
    assert!(up.stderr.contains("stale lab"), "{}", up.stderr);
    assert_eq!(down.code, 0, "{down:?}");
    let left = leftovers(&lab);
    assert!(
        left.is_empty(),
        "left behind after the second down: {left:#?}"
    );
}
