//! Files opened strictly beneath a directory: every path the agent writes or reads inside a
//! pod volume, a subPath or an image's root filesystem is resolved by the kernel with
//! `openat2(2)` relative to that directory, so neither an absolute path, nor `..`, nor a
//! symlink a container planted can lead the agent (root on the host) outside it.
//!
//! Two resolutions are offered, as `openat2(2)` defines them:
//! - [`Resolve::Beneath`] (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`): a path that would
//!   leave the directory, by `..`, an absolute path or a symlink, is refused (`EXDEV`).
//!   For volumes: what a pod names must lie inside its volume.
//! - [`Resolve::InRoot`] (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`): the directory is the
//!   root; absolute symlinks and `..` resolve inside it, as they would in a chroot. For an
//!   image's root filesystem (its `/etc/passwd` may be a symlink to `/usr/lib/passwd`).
//!
//! Directories are made as kubelet's `doSafeMakeDir` makes them: one name at a time, each
//! opened relative to its parent's descriptor without following a symlink, and set up
//! through that descriptor, so a container racing the agent cannot redirect a chmod or
//! chown. `openat2` is retried a few times when the kernel answers `EAGAIN` (a rename
//! raced the lookup).
//!
//! The syscall wrappers are nix's (safe); this module holds no `unsafe`.

use std::{
    io::{Read, Write},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use nix::{
    errno::Errno,
    fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2, renameat},
    sys::stat::{Mode, SFlag, fchmod, fstat, fstatat, mkdirat},
    unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat},
};

/// A refused or failed operation beneath a directory.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    /// The path is not a relative path of plain names (absolute, or with `..`).
    #[error("path {path:?} must be a relative path without '..'")]
    NotRelative {
        /// The path as given.
        path: String,
    },
    /// The kernel refused to resolve the path without leaving the directory.
    #[error("{path:?} resolves outside {root}")]
    Escapes {
        /// The path as given.
        path: String,
        /// The directory it had to stay in.
        root: PathBuf,
    },
    /// The path names something other than what was expected (a directory where a file
    /// was meant, a FIFO or device where a regular file was meant).
    #[error("{path:?} in {root} is not a {expected}")]
    WrongType {
        /// The path as given.
        path: String,
        /// The directory it is in.
        root: PathBuf,
        /// What it should have been.
        expected: &'static str,
    },
    /// A directory to make or walk through is a symbolic link (never followed there).
    #[error("{path:?} in {root} is a symbolic link, which is not followed when making directories")]
    Symlink {
        /// The path as given, up to the link.
        path: String,
        /// The directory it is in.
        root: PathBuf,
    },
    /// The file is larger than the reader accepts.
    #[error("{path:?} in {root} is larger than {limit} bytes")]
    TooLarge {
        /// The path as given.
        path: String,
        /// The directory it is in.
        root: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A syscall failed.
    #[error("{op} {path:?} in {root}: {errno}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The path as given.
        path: String,
        /// The directory.
        root: PathBuf,
        /// The error.
        errno: Errno,
    },
}

impl BeneathError {
    /// True if the path does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Sys {
                errno: Errno::ENOENT,
                ..
            }
        )
    }
}

/// How a path is resolved relative to the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Stay beneath the directory; anything leading out is refused.
    Beneath,
    /// Treat the directory as `/`.
    InRoot,
}

impl Resolve {
    fn flags(self) -> ResolveFlag {
        let scope = match self {
            Self::Beneath => ResolveFlag::RESOLVE_BENEATH,
            Self::InRoot => ResolveFlag::RESOLVE_IN_ROOT,
        };
        scope | ResolveFlag::RESOLVE_NO_MAGICLINKS
    }
}

/// Owner and permission bits of a file or directory the agent makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits (0o644, 0o2775…).
    pub mode: u32,
    /// Owner to set (`None`: leave the agent's, root).
    pub uid: Option<u32>,
    /// Group to set (`None`: leave the agent's).
    pub gid: Option<u32>,
}

impl Attrs {
    /// Just these permission bits, owned by the agent.
    pub fn mode(mode: u32) -> Self {
        Self {
            mode,
            uid: None,
            gid: None,
        }
    }
}

/// The plain names of a relative path (`a/./b/` → `a`, `b`); absolute paths and `..` are
/// refused before any syscall.
pub fn relative_names(path: &str) -> Result<Vec<&str>, BeneathError> {
    if path.starts_with('/') || path.split('/').any(|name| name == "..") {
        return Err(BeneathError::NotRelative {
            path: path.to_owned(),
        });
    }
    Ok(path
        .split('/')
        .filter(|name| !name.is_empty() && *name != ".")
        .collect())
}

/// A directory every path is resolved against.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Distinguishes the temporary names of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many times `openat2` is tried when the kernel answers `EAGAIN` (it does when a
/// rename or mount changed the tree during a `RESOLVE_BENEATH`/`RESOLVE_IN_ROOT` lookup).
const OPENAT2_ATTEMPTS: u32 = 8;

/// Run `open` again while it fails with `EAGAIN`, at most [`OPENAT2_ATTEMPTS`] times.
fn retry_eagain<T>(mut open: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    let mut attempt = 1;
    loop {
        match open() {
            Err(Errno::EAGAIN) if attempt < OPENAT2_ATTEMPTS => attempt += 1,
            result => return result,
        }
    }
}

/// `openat2(2)`, retried on `EAGAIN`.
fn openat2_retrying(dir: BorrowedFd<'_>, path: &str, how: OpenHow) -> Result<OwnedFd, Errno> {
    retry_eagain(|| openat2(dir, path, how))
}

/// A temporary name beside the file being written: fixed length (whatever the final name's
/// length, which may be the 255-byte maximum), unique within the process.
fn temporary_name() -> String {
    format!(
        ".skiff-{:08x}-{:016x}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Dir {
    /// Open `path` (a directory the agent trusts: a volume's or a rootfs's top).
    pub fn open(path: &Path) -> Result<Self, BeneathError> {
        let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
        let fd = retry_eagain(|| openat2(nix::fcntl::AT_FDCWD, path, how)).map_err(|errno| {
            BeneathError::Sys {
                op: "opening directory",
                path: path.display().to_string(),
                root: PathBuf::from("/"),
                errno,
            }
        })?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn error(&self, op: &'static str, path: &str) -> impl FnOnce(Errno) -> BeneathError + '_ {
        let path = path.to_owned();
        move |errno| match errno {
            Errno::EXDEV => BeneathError::Escapes {
                path,
                root: self.path.clone(),
            },
            errno => BeneathError::Sys {
                op,
                path,
                root: self.path.clone(),
                errno,
            },
        }
    }

    /// Open `path` with `flags`, resolved as `resolve` says. An empty path is the
    /// directory itself.
    pub fn open_at(
        &self,
        path: &str,
        flags: OFlag,
        resolve: Resolve,
    ) -> Result<OwnedFd, BeneathError> {
        if resolve == Resolve::Beneath {
            relative_names(path)?;
        }
        let target = if path.is_empty() { "." } else { path };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(resolve.flags());
        openat2_retrying(self.fd.as_fd(), target, how).map_err(self.error("opening", path))
    }

    /// The directory `path` beneath this one, which must exist.
    pub fn sub_dir(&self, path: &str) -> Result<Dir, BeneathError> {
        let fd = self.open_at(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Resolve::Beneath)?;
        Ok(Dir {
            fd,
            path: self.path.join(path),
        })
    }

    /// Make every directory of `path` that is missing (with `attrs`), as kubelet's
    /// `doSafeMakeDir`: one name at a time, each made (`mkdirat`) and opened relative to its
    /// parent's descriptor without following a symlink (`RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS`), and a directory made here is set up through the descriptor
    /// just opened, never by a path resolved again. A symlink anywhere in `path` is
    /// refused; returns the last directory.
    pub fn create_dir_all(&self, path: &str, attrs: Attrs) -> Result<Dir, BeneathError> {
        let names = relative_names(path)?;
        let mut current = Dir {
            fd: self.fd.try_clone().map_err(|e| BeneathError::Sys {
                op: "duplicating",
                path: String::new(),
                root: self.path.clone(),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            })?,
            path: self.path.clone(),
        };
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let mut walked = String::new();
        for name in names {
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(name);
            let created = match mkdirat(current.fd.as_fd(), name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(errno) => return Err(self.error("creating directory", &walked)(errno)),
            };
            let fd = openat2_retrying(current.fd.as_fd(), name, how).map_err(|errno| {
                match errno {
                    // What is there is no directory: a symlink (ELOOP, or ENOTDIR since
                    // O_DIRECTORY is checked first) or another kind of file.
                    Errno::ELOOP | Errno::ENOTDIR => {
                        let link = fstatat(current.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                            .is_ok_and(|s| {
                                SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT
                                    == SFlag::S_IFLNK
                            });
                        if link {
                            BeneathError::Symlink {
                                path: walked.clone(),
                                root: self.path.clone(),
                            }
                        } else {
                            BeneathError::WrongType {
                                path: walked.clone(),
                                root: self.path.clone(),
                                expected: "directory",
                            }
                        }
                    }
                    errno => self.error("opening directory", &walked)(errno),
                }
            })?;
            if created {
                apply_attrs(fd.as_fd(), attrs).map_err(self.error("setting up", &walked))?;
            }
            current = Dir {
                fd,
                path: current.path.join(name),
            };
        }
        Ok(current)
    }

    /// Set `attrs` on the directory itself.
    pub fn set_attrs(&self, attrs: Attrs) -> Result<(), BeneathError> {
        apply_attrs(self.fd.as_fd(), attrs).map_err(self.error("setting up", ""))
    }

    /// Write `data` to `path` (its directories made as needed with `dir_attrs`) so that a
    /// reader sees the old file or the new one, never a part: a temporary file in the same
    /// directory, renamed over the name. A symlink at the name is replaced, not followed.
    pub fn write_atomic(
        &self,
        path: &str,
        data: &[u8],
        attrs: Attrs,
        dir_attrs: Attrs,
    ) -> Result<(), BeneathError> {
        let names = relative_names(path)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(BeneathError::WrongType {
                path: path.to_owned(),
                root: self.path.clone(),
                expected: "file name",
            });
        };
        let parent = self.create_dir_all(&parents.join("/"), dir_attrs)?;
        let temp = temporary_name();
        let how = OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
            )
            .mode(Mode::from_bits_truncate(0o600))
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let fd = openat2_retrying(parent.fd.as_fd(), temp.as_str(), how)
            .map_err(self.error("creating", path))?;
        let written = write_and_finish(fd, data, attrs)
            .and_then(|()| renameat(parent.fd.as_fd(), temp.as_str(), parent.fd.as_fd(), *name));
        if let Err(errno) = written {
            let _ = unlinkat(parent.fd.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(match errno {
                Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST => BeneathError::WrongType {
                    path: path.to_owned(),
                    root: self.path.clone(),
                    expected: "file",
                },
                errno => self.error("writing", path)(errno),
            });
        }
        Ok(())
    }

    /// Read the regular file `path` (at most `limit` bytes), resolved as `resolve` says;
    /// `Ok(None)` if it does not exist. FIFOs and devices are refused without blocking.
    pub fn read_file(
        &self,
        path: &str,
        resolve: Resolve,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, BeneathError> {
        let fd = match self.open_at(
            path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            resolve,
        ) {
            Ok(fd) => fd,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let stat = fstat(fd.as_fd()).map_err(self.error("inspecting", path))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(BeneathError::WrongType {
                path: path.to_owned(),
                root: self.path.clone(),
                expected: "regular file",
            });
        }
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| {
                self.error("reading", path)(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })?;
        if u64::try_from(data.len()).unwrap_or(u64::MAX) > limit {
            return Err(BeneathError::TooLarge {
                path: path.to_owned(),
                root: self.path.clone(),
                limit,
            });
        }
        Ok(Some(data))
    }
}

/// chown (if asked) then chmod: chown clears set-id bits, so the mode comes last.
fn apply_attrs(fd: BorrowedFd<'_>, attrs: Attrs) -> Result<(), Errno> {
    if attrs.uid.is_some() || attrs.gid.is_some() {
        fchown(
            fd,
            attrs.uid.map(Uid::from_raw),
            attrs.gid.map(Gid::from_raw),
        )?;
    }
    fchmod(fd, Mode::from_bits_truncate(attrs.mode))
}

fn write_and_finish(fd: OwnedFd, data: &[u8], attrs: Attrs) -> Result<(), Errno> {
    apply_attrs(fd.as_fd(), attrs)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(data)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    /// A temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "skiff-beneath-{name}-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// A volume directory and, beside it, a directory standing for "the host".
    fn volume_and_outside(name: &str) -> (TempDir, PathBuf, PathBuf, Dir) {
        let top = temp_dir(name);
        let volume = top.join("volume");
        let outside = top.join("outside");
        std::fs::create_dir_all(&volume).expect("volume");
        std::fs::create_dir_all(&outside).expect("outside");
        let dir = Dir::open(&volume).expect("open volume");
        (top, volume, outside, dir)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_files_and_directories_beneath() {
        let (_top, volume, _, dir) = volume_and_outside("write");
        dir.write_atomic("a/b/key", b"v1", Attrs::mode(0o640), Attrs::mode(0o755))
            .expect("write");
        dir.write_atomic("a/b/key", b"v2", Attrs::mode(0o640), Attrs::mode(0o755))
            .expect("rewrite");
        let file = volume.join("a/b/key");
        assert_eq!(std::fs::read(&file).expect("read"), b"v2");
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        let dir_mode = std::fs::metadata(volume.join("a"))
            .expect("meta")
            .permissions();
        assert_eq!(dir_mode.mode() & 0o7777, 0o755);
        // No temporary file is left behind.
        assert_eq!(entries(&volume.join("a/b")), ["key"]);
    }

    #[test]
    fn absolute_paths_and_dotdot_are_refused_before_any_write() {
        let (_top, volume, outside, dir) = volume_and_outside("refuse");
        let absolute = outside.join("x");
        for path in [
            absolute.to_str().expect("utf-8"),
            "../outside/x",
            "a/../../outside/x",
            "..",
        ] {
            let err = dir
                .write_atomic(path, b"owned", Attrs::mode(0o644), Attrs::mode(0o755))
                .expect_err(path);
            assert!(
                matches!(err, BeneathError::NotRelative { .. }),
                "{path}: {err}"
            );
        }
        assert!(entries(&outside).is_empty());
        assert!(entries(&volume).is_empty());
    }

    #[test]
    fn a_symlink_pointing_out_is_not_followed() {
        let (_top, volume, outside, dir) = volume_and_outside("symlink");
        // As a container would plant them: a directory link and a relative escape.
        symlink(&outside, volume.join("out")).expect("symlink");
        symlink("../outside", volume.join("rel")).expect("symlink");
        for path in ["out/x", "rel/x", "out/sub/x"] {
            let err = dir
                .write_atomic(path, b"owned", Attrs::mode(0o644), Attrs::mode(0o755))
                .expect_err(path);
            assert!(matches!(err, BeneathError::Symlink { .. }), "{path}: {err}");
        }
        // A file-level symlink at the name is replaced, not written through.
        symlink(outside.join("target"), volume.join("key")).expect("symlink");
        dir.write_atomic("key", b"mine", Attrs::mode(0o644), Attrs::mode(0o755))
            .expect("replace the link");
        assert!(entries(&outside).is_empty(), "nothing written outside");
        let meta = std::fs::symlink_metadata(volume.join("key")).expect("meta");
        assert!(meta.is_file());
        // Reading beneath refuses the way out too.
        let err = dir
            .read_file("out/secret", Resolve::Beneath, 1024)
            .expect_err("read through link");
        assert!(matches!(err, BeneathError::Escapes { .. }), "{err}");
    }

    #[test]
    fn in_root_resolution_keeps_absolute_links_inside() {
        let top = temp_dir("inroot");
        let rootfs = top.join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).expect("etc");
        std::fs::create_dir_all(rootfs.join("usr/lib")).expect("usr/lib");
        std::fs::write(rootfs.join("usr/lib/passwd"), "app:x:10:10::/:/bin/sh\n").expect("write");
        // An absolute link: in the image it means the image's own /usr/lib/passwd.
        symlink("/usr/lib/passwd", rootfs.join("etc/passwd")).expect("symlink");
        // A link climbing out lands on the rootfs's own top instead.
        symlink("../../../../../../etc/shadow", rootfs.join("etc/group")).expect("symlink");
        let dir = Dir::open(&rootfs).expect("open");
        let passwd = dir
            .read_file("etc/passwd", Resolve::InRoot, 1 << 20)
            .expect("read")
            .expect("present");
        assert_eq!(passwd, b"app:x:10:10::/:/bin/sh\n");
        assert_eq!(
            dir.read_file("etc/group", Resolve::InRoot, 1 << 20)
                .expect("read"),
            None,
            "the link resolves to the rootfs's /etc/shadow, which does not exist"
        );
    }

    #[test]
    fn reading_refuses_fifos_and_oversized_files() {
        let top = temp_dir("types");
        nix::unistd::mkfifo(&top.join("fifo"), Mode::from_bits_truncate(0o644)).expect("mkfifo");
        std::fs::write(top.join("big"), vec![b'x'; 100]).expect("write");
        let dir = Dir::open(&top).expect("open");
        let err = dir
            .read_file("fifo", Resolve::InRoot, 1024)
            .expect_err("fifo");
        assert!(matches!(err, BeneathError::WrongType { .. }), "{err}");
        let err = dir.read_file("big", Resolve::InRoot, 99).expect_err("big");
        assert!(matches!(err, BeneathError::TooLarge { .. }), "{err}");
        assert_eq!(
            dir.read_file("big", Resolve::InRoot, 100)
                .expect("read")
                .map(|d| d.len()),
            Some(100)
        );
    }

    #[test]
    fn a_directory_at_the_file_name_is_reported() {
        let (_top, volume, _, dir) = volume_and_outside("isdir");
        std::fs::create_dir_all(volume.join("key/inner")).expect("dir");
        let err = dir
            .write_atomic("key", b"x", Attrs::mode(0o644), Attrs::mode(0o755))
            .expect_err("directory in the way");
        assert!(matches!(err, BeneathError::WrongType { .. }), "{err}");
        assert_eq!(entries(&volume), ["key"]);
    }

    #[test]
    fn making_directories_never_follows_a_symlink_even_inside_the_volume() {
        let (_top, volume, _, dir) = volume_and_outside("mkdir-link");
        // What a racing container could swap in after a directory was made: a link to
        // another directory of the volume, whose mode and owner the agent must not touch.
        std::fs::create_dir(volume.join("real")).expect("real");
        std::fs::set_permissions(volume.join("real"), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        symlink("real", volume.join("link")).expect("symlink");
        for path in ["link", "link/new", "link/new/deeper"] {
            let err = dir
                .create_dir_all(path, Attrs::mode(0o777))
                .expect_err(path);
            assert!(matches!(err, BeneathError::Symlink { .. }), "{path}: {err}");
        }
        assert!(
            entries(&volume.join("real")).is_empty(),
            "nothing made through the link"
        );
        let mode = std::fs::metadata(volume.join("real"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700, "the link's target was not chmodded");
        // A file in the way is reported as such.
        std::fs::write(volume.join("file"), b"x").expect("file");
        let err = dir
            .create_dir_all("file/x", Attrs::mode(0o755))
            .expect_err("file");
        assert!(matches!(err, BeneathError::WrongType { .. }), "{err}");
        // Plain directories are made, set up and returned.
        let made = dir.create_dir_all("a/b", Attrs::mode(0o750)).expect("make");
        assert_eq!(made.path(), volume.join("a/b"));
        let mode = std::fs::metadata(volume.join("a/b"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o750);
    }

    #[test]
    fn the_longest_file_name_is_written_through_a_short_temporary_name() {
        let (_top, volume, _, dir) = volume_and_outside("long-name");
        let name = "k".repeat(255);
        dir.write_atomic(&name, b"v", Attrs::mode(0o644), Attrs::mode(0o755))
            .expect("a 255-byte name is a valid name");
        assert_eq!(entries(&volume), [name]);
        assert_eq!(temporary_name().len(), temporary_name().len());
        assert!(temporary_name().len() < 40);
    }

    #[test]
    fn eagain_is_retried_a_few_times() {
        let mut calls = 0;
        let result = retry_eagain(|| {
            calls += 1;
            if calls < 3 {
                Err(Errno::EAGAIN)
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result, Ok(3));
        let mut calls = 0;
        let result: Result<(), Errno> = retry_eagain(|| {
            calls += 1;
            Err(Errno::EAGAIN)
        });
        assert_eq!(result, Err(Errno::EAGAIN));
        assert_eq!(calls, OPENAT2_ATTEMPTS);
        let mut calls = 0;
        let result: Result<(), Errno> = retry_eagain(|| {
            calls += 1;
            Err(Errno::ENOENT)
        });
        assert_eq!(
            (result, calls),
            (Err(Errno::ENOENT), 1),
            "other errors are final"
        );
    }
}
