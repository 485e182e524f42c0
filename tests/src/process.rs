//! Running commands from tests with useful failure messages.

use std::process::{Command, Output, Stdio};

/// Output of a finished command.
#[derive(Debug)]
pub struct Finished {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// stdout as text.
    pub stdout: String,
    /// stderr as text.
    pub stderr: String,
}

impl From<Output> for Finished {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Run a command to completion (stdin closed) and return its output, whatever its exit code.
pub fn output(cmd: &mut Command) -> Finished {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"))
        .into()
}

/// Run `program args…`; Ok(stdout) if it exits 0, Err(description) otherwise.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = output(Command::new(program).args(args));
    if out.code == 0 {
        Ok(out.stdout)
    } else {
        Err(format!(
            "`{program} {}` exited {}: {}",
            args.join(" "),
            out.code,
            out.stderr.trim()
        ))
    }
}
