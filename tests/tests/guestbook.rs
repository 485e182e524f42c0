//! The guestbook end to end: the plain manifests of `examples/guestbook` (Redis master,
//! two replicas, three PHP frontends behind a LoadBalancer Service) on images built from
//! Debian's packages; an entry written through one frontend is read back through another
//! and is on both replicas; a frontend and a replica killed under load come back while the
//! guestbook keeps answering; scaled to six frontends, the new ones get traffic.
//! Requests come from the root namespace (outside the cluster) to the LoadBalancer address.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use skiff_tests::Lab;

const MINUTE: Duration = Duration::from_secs(60);

/// One answer of the guestbook.
#[derive(Debug)]
struct Answer {
    status: u16,
    served_by: String,
    body: String,
}

/// `GET path` on `address` (one connection per request, as browsers' first visits).
fn get(address: SocketAddr, path: &str) -> Result<Answer, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: guestbook\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no headers: {text}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status: {head}"))?;
    let served_by = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-served-by")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Ok(Answer {
        status,
        served_by,
        body: body.to_owned(),
    })
}

fn ready_pods(lab: &Lab, ns: &str, selector: &str) -> BTreeSet<String> {
    lab.jsonpath(
        ns,
        &format!("pods -l {selector}"),
        "{range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    )
    .lines()
    .filter_map(|l| {
        let mut words = l.split_whitespace();
        let name = words.next()?;
        (words.next()? == "True" && words.next().is_none()).then(|| name.to_owned())
    })
    .collect()
}

fn wait_ready(lab: &Lab, ns: &str, selector: &str, count: usize) -> BTreeSet<String> {
    lab.eventually(
        &format!("{count} ready pods {selector}"),
        3 * MINUTE,
        || {
            let pods = ready_pods(lab, ns, selector);
            if pods.len() == count {
                Ok(pods)
            } else {
                Err(format!("{pods:?}"))
            }
        },
    )
}

#[test]
fn the_guestbook_stores_replicates_survives_kills_and_scales() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("guestbook");
    let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/guestbook");
    lab.kubectl_ok(&["apply", "-n", &ns, "-f", &manifests.to_string_lossy()]);
    wait_ready(&lab, &ns, "role=master", 1);
    let replicas = wait_ready(&lab, &ns, "role=replica", 2);
    let frontends = wait_ready(&lab, &ns, "tier=frontend", 3);
    let ip = lab.eventually("the frontend's LoadBalancer address", MINUTE, || {
        let ip = lab.jsonpath(
            &ns,
            "service/frontend",
            "{.status.loadBalancer.ingress[0].ip}",
        );
        if ip.is_empty() {
            Err("none yet".to_owned())
        } else {
            Ok(ip)
        }
    });
    let address: SocketAddr = format!("{ip}:80").parse().expect("address");
    // Write through one frontend, read back through another.
    let entry = format!("hello-from-{ns}");
    let written = lab.eventually("an entry is written", MINUTE, || {
        let answer = get(
            address,
            &format!("/guestbook.php?cmd=set&key=messages&value={entry}"),
        )?;
        if answer.status == 200 && answer.body.contains("\"message\":\"Updated\"") {
            Ok(answer)
        } else {
            Err(format!("{answer:?}"))
        }
    });
    assert!(
        frontends.contains(&written.served_by),
        "{written:?} {frontends:?}"
    );
    let read = lab.eventually("the entry read through another frontend", MINUTE, || {
        let answer = get(address, "/guestbook.php?cmd=get&key=messages")?;
        if answer.status == 200
            && answer.body.contains(&entry)
            && answer.served_by != written.served_by
        {
            Ok(answer)
        } else {
            Err(format!("{answer:?}"))
        }
    });
    eprintln!(
        "written by {}, read by {}",
        written.served_by, read.served_by
    );
    // Both replicas hold it.
    for replica in &replicas {
        lab.eventually(&format!("{replica} has the entry"), MINUTE, || {
            let out = lab.kubectl(&[
                "exec",
                "-n",
                &ns,
                replica,
                "--",
                "redis-cli",
                "get",
                "messages",
            ]);
            if out.stdout.trim() == entry {
                Ok(())
            } else {
                Err(format!("{out:?}"))
            }
        });
    }
    // Kill a frontend and a replica under a steady load of reads.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                match get(address, "/guestbook.php?cmd=get&key=messages") {
                    Ok(answer) if answer.status == 200 => ok += 1,
                    Ok(answer) => failed.push(format!(
                        "{} from {}: {}",
                        answer.status, answer.served_by, answer.body
                    )),
                    Err(e) => failed.push(e),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let victim = frontends.iter().next().cloned().expect("a frontend");
    let replica = replicas.iter().next().cloned().expect("a replica");
    lab.kubectl_ok(&[
        "delete",
        "pod",
        "-n",
        &ns,
        &victim,
        &replica,
        "--wait=false",
    ]);
    let frontends = lab.eventually("the killed pods are replaced", 3 * MINUTE, || {
        let frontends = ready_pods(&lab, &ns, "tier=frontend");
        let replicas = ready_pods(&lab, &ns, "role=replica");
        if frontends.len() == 3
            && !frontends.contains(&victim)
            && replicas.len() == 2
            && !replicas.contains(&replica)
        {
            Ok(frontends)
        } else {
            Err(format!("frontends {frontends:?}, replicas {replicas:?}"))
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.join().expect("load thread");
    eprintln!(
        "reads while a frontend and a replica were killed: {ok} answered, {} failed {failed:?}",
        failed.len()
    );
    assert!(ok > 100, "too few reads: {ok}");
    assert!(
        failed.is_empty(),
        "reads failed while pods were replaced: {failed:?}"
    );
    // Six frontends: the new ones get traffic too.
    lab.kubectl_ok(&["scale", "deployment/frontend", "-n", &ns, "--replicas=6"]);
    let six = wait_ready(&lab, &ns, "tier=frontend", 6);
    let new: BTreeSet<String> = six.difference(&frontends).cloned().collect();
    let served = lab.eventually("every frontend gets requests", MINUTE, || {
        let mut served = BTreeSet::new();
        for _ in 0..200 {
            if let Ok(answer) = get(address, "/guestbook.php?cmd=get&key=messages") {
                served.insert(answer.served_by);
            }
        }
        if new.is_subset(&served) {
            Ok(served)
        } else {
            Err(format!("served by {served:?}, new {new:?}"))
        }
    });
    eprintln!("200 requests over 6 frontends reached {served:?}");
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
