//! Running external commands with readable errors, and progress lines for long steps.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};

/// Render a command line for messages.
fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Run a command, inheriting stdout/stderr; fail if it exits non-zero.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Run a command and capture stdout; fail with its stderr if it exits non-zero.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a command quietly; true if it exited 0. For probes ("is X there?").
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Shorthand for `Command::new(program).args(args)`.
pub fn command<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// Numbered progress lines for a multi-step task: `[up 3/7] starting etcd … done (1.2 s)`.
pub struct Progress {
    task: &'static str,
    total: usize,
    current: usize,
}

impl Progress {
    /// A progress reporter for `total` steps of `task`.
    pub fn new(task: &'static str, total: usize) -> Self {
        Self {
            task,
            total,
            current: 0,
        }
    }

    /// Run one step, printing its name, then how it ended and how long it took.
    pub fn step<T>(&mut self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.current += 1;
        eprintln!("[{} {}/{}] {what}", self.task, self.current, self.total);
        let started = Instant::now();
        let result = f();
        let took = started.elapsed().as_secs_f32();
        match &result {
            Ok(_) => eprintln!(
                "[{} {}/{}]   ok ({took:.1} s)",
                self.task, self.current, self.total
            ),
            Err(_) => eprintln!(
                "[{} {}/{}]   FAILED ({took:.1} s)",
                self.task, self.current, self.total
            ),
        }
        result
    }
}

/// The workspace root (parent of the xtask crate).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The cargo the xtask was launched with (so `cargo +toolchain xtask` stays consistent).
pub fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}
