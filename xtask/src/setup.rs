//! `cargo xtask setup`: install only what is missing, then check the host.
//!
//! Idempotent: every step first looks whether its work is already done.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{Progress, command, output, run_cmd, succeeds},
    host,
};

/// Debian packages the lab, the builds and the tests need.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "etcd-server",       // the control plane's store
    "etcd-client",       // etcdctl, for people inspecting the lab
    "containerd",        // the container runtime
    "runc",              // the OCI runtime containerd drives
    "crun",              // a second OCI runtime, the RuntimeClass `crun`
    "iproute2",          // `ip` for the lab's namespaces and links
    "bpftool",           // inspecting the datapath's programs and maps
    "busybox-static",    // the busybox test image and in-namespace probes
    "iptables",          // kube-proxy comparison in the benchmarks (iptables mode)
    "nftables",          // kube-proxy comparison in the benchmarks (nftables mode)
    "kubectl",           // the stock client the e2e tests drive
    "protobuf-compiler", // etcd-client's and containerd-client's build scripts
    "libprotobuf-dev",   // google/protobuf/*.proto that protoc needs for those builds
    "pkg-config",
    "util-linux", // setpriv, nsenter
    "procps",     // ps, pkill for humans debugging the lab
    "ca-certificates",
    "curl",              // probing HTTP endpoints in tests and by hand; pushing lab images
    "docker-registry",   // the lab's image registry (every node's mirror)
    "iputils-ping",      // reachability of lab addresses (LoadBalancer announcements)
    "ethtool",           // the lab's underlay: complete checksums on the wire side
    "tcpdump",           // watching packet paths in the lab
    "wrk",               // the network benchmark's cross-check
    "fonts-dejavu-core", // text in the benchmark plots
    "redis-tools",       // the guestbook's redis image (redis-server is redis-check-rdb)
    "php8.2-cli",        // the guestbook frontend image
    "php8.2-redis",      // its redis client extension
    "python3-venv",      // the virtualenv of the Python tools from PyPI (kopf)
];

/// Python packages from PyPI the end-to-end tests run (an operator framework and the
/// official client, which nobody here wrote), pinned, installed into [`python_env`].
pub const PYPI_PACKAGES: &[&str] = &["kopf==1.45.2", "kubernetes==37.0.3"];

/// The virtualenv holding [`PYPI_PACKAGES`] (`target/py`).
pub fn python_env() -> PathBuf {
    crate::cmd::workspace_root().join("target").join("py")
}

/// Entry point of `cargo xtask setup`.
pub fn run() -> Result<()> {
    host::require_root("setup")?;
    ensure()
}

/// Install what is missing and check the host; used by `setup`, `up` and `test`.
pub fn ensure() -> Result<()> {
    let mut progress = Progress::new("setup", 5);
    progress.step("Debian packages", install_debian_packages)?;
    progress.step(
        "Python tools from PyPI (kopf) in target/py",
        install_python_tools,
    )?;
    progress.step(
        "nightly toolchain with rust-src (eBPF builds)",
        install_rust_src,
    )?;
    progress.step(
        "bpf-linker (built against rustc's LLVM)",
        install_bpf_linker,
    )?;
    progress.step(
        "host: kernel ≥ 5.10, BTF, cgroup2 (crun-ready), bpffs",
        host::check_kernel_features,
    )?;
    Ok(())
}

fn package_installed(name: &str) -> bool {
    output(&mut command("dpkg-query", ["-W", "-f=${Status}", name]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}

fn install_debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("      all {} packages present", DEBIAN_PACKAGES.len());
        return Ok(());
    }
    eprintln!("      installing: {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    // Package lists may be absent on a fresh machine: update first, once.
    run_cmd(apt(&["update", "-qq"]).stdout(std::process::Stdio::null()))
        .context("apt-get update failed: check that Debian's package mirror is reachable")?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing).stdout(std::process::Stdio::null());
    run_cmd(&mut install).with_context(|| {
        format!(
            "could not install {}: run `apt-get install {}` to see why",
            missing.join(" "),
            missing.join(" ")
        )
    })?;
    let still: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    if !still.is_empty() {
        bail!(
            "apt-get reported success but {} are still not installed",
            still.join(" ")
        );
    }
    Ok(())
}

/// Create the virtualenv with Debian's python3 and install the pinned PyPI packages that
/// are missing.
fn install_python_tools() -> Result<()> {
    let env = python_env();
    let python_path = env.join("bin").join("python");
    let python = python_path.to_string_lossy().into_owned();
    if !python_path.exists() {
        run_cmd(command("/usr/bin/python3", ["-m", "venv"]).arg(&env))
            .context("could not create the Python virtualenv (Debian's python3-venv)")?;
    }
    let missing: Vec<&str> = PYPI_PACKAGES
        .iter()
        .copied()
        .filter(|requirement| {
            let (name, version) = requirement.split_once("==").unwrap_or((requirement, ""));
            let shown = output(&mut command(&python, ["-m", "pip", "show", name]));
            !shown.is_ok_and(|text| text.lines().any(|l| l == format!("Version: {version}")))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("      all {} packages present", PYPI_PACKAGES.len());
        return Ok(());
    }
    eprintln!("      installing from PyPI: {}", missing.join(" "));
    run_cmd(
        command(
            &python,
            [
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ],
        )
        .args(&missing),
    )
    .with_context(|| {
        format!(
            "pip could not install {}: check that PyPI is reachable",
            missing.join(" ")
        )
    })
}

fn install_rust_src() -> Result<()> {
    if !succeeds(&mut command(
        "rustup",
        ["run", "nightly", "rustc", "--version"],
    )) {
        run_cmd(&mut command(
            "rustup",
            [
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ],
        ))
        .context(
            "the nightly toolchain is missing and `rustup toolchain install nightly` failed",
        )?;
    }
    let installed = output(&mut command(
        "rustup",
        ["component", "list", "--toolchain", "nightly", "--installed"],
    ))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("      rust-src present");
        return Ok(());
    }
    run_cmd(&mut command(
        "rustup",
        ["component", "add", "rust-src", "--toolchain", "nightly"],
    ))
    .context("`rustup component add rust-src --toolchain nightly` failed")
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// cargo-fuzz (for `cargo xtask fuzz`), installed from crates.io when missing.
pub fn ensure_cargo_fuzz() -> Result<()> {
    if succeeds(&mut command("cargo", ["fuzz", "--version"])) {
        return Ok(());
    }
    eprintln!("      installing cargo-fuzz");
    run_cmd(&mut command("cargo", ["install", "--locked", "cargo-fuzz"]))
        .context("installing cargo-fuzz failed")
}

/// bpf-linker works when it runs and links against the LLVM it was built for.
fn bpf_linker_works() -> bool {
    succeeds(&mut command(
        "rustup",
        ["run", "nightly", "bpf-linker", "--version"],
    ))
}

fn install_bpf_linker() -> Result<()> {
    if bpf_linker_works() {
        eprintln!("      bpf-linker present");
        return Ok(());
    }
    // Build against the LLVM that ships inside the nightly sysroot, so the bitcode rustc
    // emits and the LLVM bpf-linker links with are the same version.
    let sysroot = output(&mut command("rustc", ["+nightly", "--print", "sysroot"]))?;
    let sysroot = PathBuf::from(sysroot.trim());
    let libllvm = find_rust_libllvm(&sysroot.join("lib")).with_context(|| {
        format!(
            "no libLLVM.so.*-rust-* in {}/lib: is the nightly toolchain complete?",
            sysroot.display()
        )
    })?;
    let version = output(&mut command("rustc", ["+nightly", "-vV"]))?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("`rustc +nightly -vV` printed no LLVM version")?
        .to_owned();
    // The prefix must outlive this checkout: bpf-linker loads libLLVM from it at run time.
    let prefix = cargo_home().join("skiff-llvm-prefix");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let link = lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {} to {}", link.display(), libllvm.display()))?;
    eprintln!(
        "      building bpf-linker with llvm-{major} from {}",
        libllvm.display()
    );
    let mut install = Command::new("cargo");
    install
        .args([
            "install",
            "--locked",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix)
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", sysroot.join("lib").display()),
        );
    run_cmd(&mut install).context("building bpf-linker failed")?;
    if !bpf_linker_works() {
        bail!(
            "bpf-linker was installed but does not run: check `rustup run nightly bpf-linker --version`"
        );
    }
    Ok(())
}

fn find_rust_libllvm(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains("-rust-"))
        })
}
