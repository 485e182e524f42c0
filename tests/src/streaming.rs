//! A long-running `kubectl` (`get -w`, `logs -f`) whose output the test reads line by
//! line as it arrives.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use crate::Lab;

/// A spawned `kubectl` whose stdout lines arrive on a channel; killed when dropped.
pub struct StreamingKubectl {
    child: Child,
    lines: Receiver<String>,
}

impl StreamingKubectl {
    /// Start `kubectl ARGS` against the lab; panics if it cannot be spawned.
    pub fn start(lab: &Lab, args: &[&str]) -> Self {
        let mut child = Command::new(&lab.kubectl)
            .env("KUBECONFIG", lab.kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting kubectl");
        let stdout = child.stdout.take().expect("kubectl stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Add lines to `seen` until `done(seen)` holds (true) or `limit` passes (false).
    pub fn read_until(
        &self,
        seen: &mut Vec<String>,
        limit: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while !done(seen.as_slice()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => return false,
            }
        }
        true
    }
}

impl Drop for StreamingKubectl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
