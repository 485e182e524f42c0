//! The xtask commands as a newcomer meets them: `status` on a running lab, a second `up`
//! that leaves the running lab alone, and `up` without root.

use std::{os::unix::fs::PermissionsExt, process::Command};

use skiff_tests::{Lab, process};

fn recorded_pids(lab: &Lab) -> Vec<i64> {
    let record = std::fs::read(lab.dir.join("lab.json")).expect("lab.json");
    let record: serde_json::Value = serde_json::from_slice(&record).expect("lab.json is JSON");
    record["daemons"]
        .as_array()
        .expect("daemons")
        .iter()
        .filter_map(|d| d["pid"].as_i64())
        .collect()
}

#[test]
fn status_lists_every_component_running_and_healthy() {
    let Some(lab) = Lab::from_env() else { return };
    let out = process::output(Command::new(&lab.xtask).arg("status"));
    assert_eq!(out.code, 0, "{out:?}");
    let mut components = vec![
        "etcd".to_owned(),
        "containerd".to_owned(),
        "skiff-control".to_owned(),
    ];
    components.extend(lab.nodes.iter().map(|n| format!("agent/{}", n.name)));
    for component in components {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{component} ")));
        let line =
            line.unwrap_or_else(|| panic!("status does not list {component}:\n{}", out.stdout));
        assert!(
            line.contains("running") && line.trim_end().ends_with("ok"),
            "{line}"
        );
    }
    for node in &lab.nodes {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&node.name) && l.contains(&node.address.to_string()))
        );
    }
}

#[test]
fn second_up_reports_the_running_lab_and_changes_nothing() {
    let Some(lab) = Lab::from_env() else { return };
    let before = recorded_pids(&lab);
    let out = process::output(Command::new(&lab.xtask).arg("up"));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("already running"), "{}", out.stderr);
    assert!(out.stdout.contains("export KUBECONFIG="), "{}", out.stdout);
    assert_eq!(recorded_pids(&lab), before, "a second up restarted daemons");
}

#[test]
fn up_without_root_fails_with_one_clear_sentence() {
    let Some(lab) = Lab::from_env() else { return };
    // A copy the unprivileged user can execute wherever the checkout lives.
    let dir = std::env::temp_dir().join(format!("skiff-xtask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = dir.join("xtask");
    std::fs::copy(&lab.xtask, &copy).expect("copy xtask");
    let out = process::output(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&copy)
            .arg("up")
            .env("HOME", "/nonexistent"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(out.code, 0, "up as nobody succeeded: {out:?}");
    let message = out.stderr.trim();
    assert_eq!(
        message.lines().count(),
        1,
        "expected one line, got:\n{message}"
    );
    assert!(message.contains("must run as root"), "{message}");
    assert!(message.ends_with('.'), "one sentence: {message}");
}
