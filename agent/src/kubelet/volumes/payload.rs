//! The files of a configMap, secret, downwardAPI or projected volume: their paths checked
//! as kubelet's atomic writer checks them (`pkg/volume/util/atomic_writer.go`,
//! `validatePath`), their owner and mode as kubelet's `SetVolumeOwnership` makes them for a
//! pod's fsGroup (`pkg/volume/volume_linux.go`), and every write made beneath the volume
//! directory with `openat2` (see [`crate::beneath`]), each file replaced atomically.

use std::{collections::BTreeMap, path::Path};

use crate::beneath::{Attrs, Dir};

/// kubelet's atomic writer: the longest path of a payload file.
const MAX_PATH_LENGTH: usize = 4096;
/// kubelet's atomic writer: the longest name in such a path.
const MAX_FILE_NAME_LENGTH: usize = 255;
/// Mode of the directories the agent makes inside a volume.
const DIR_MODE: u32 = 0o755;

/// One file of a volume's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits as the pod asked (`defaultMode` or the item's `mode`).
    pub mode: u32,
    /// Owner (kubelet's `FsUser`, set only on projected token files).
    pub uid: Option<u32>,
}

/// Payload files by path within the volume.
pub type Payload = BTreeMap<String, FileProjection>;

/// A mode as the API carries it, to permission bits: never set-id or sticky bits, which
/// the API does not allow either (an out-of-range value falls back to 0644).
pub fn mode_bits(mode: i32) -> u32 {
    u32::try_from(mode).map_or(0o644, |m| m & 0o777)
}

/// kubelet's `validatePath` for a payload file's path, with its wording.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("invalid path: must not be empty: {path:?}"));
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let names: Vec<&str> = path.split('/').collect();
    for name in &names {
        if *name == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if name.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if names
        .first()
        .is_some_and(|first| first.starts_with("..") && first.len() > 2)
    {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// Lexical clean of a checked relative path (`a/./b//c` → `a/b/c`), as kubelet cleans
/// payload keys before writing.
pub fn clean_path(path: &str) -> String {
    path.split('/')
        .filter(|name| !name.is_empty() && *name != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Who owns what the agent writes in a volume: kubelet's `SetVolumeOwnership`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ownership {
    /// The pod's `securityContext.fsGroup`.
    pub fs_group: Option<u32>,
    /// A read-only volume type (configMap, secret, downwardAPI, projected): group gets
    /// read (0440) rather than read-write (0660).
    pub read_only: bool,
}

impl Ownership {
    fn group_mask(self) -> u32 {
        match (self.fs_group, self.read_only) {
            (None, _) => 0,
            (Some(_), true) => 0o440,
            (Some(_), false) => 0o660,
        }
    }

    /// A file's owner and mode: the asked mode plus the fsGroup's bits, group fsGroup.
    pub fn file(self, mode: u32, uid: Option<u32>) -> Attrs {
        Attrs {
            mode: (mode & 0o777) | self.group_mask(),
            uid,
            gid: self.fs_group,
        }
    }

    /// A directory's owner and mode: with an fsGroup, also group search and setgid so
    /// what is made inside inherits the group.
    pub fn dir(self, mode: u32) -> Attrs {
        let extra = if self.fs_group.is_some() {
            self.group_mask() | 0o110 | 0o2000
        } else {
            0
        };
        Attrs {
            mode: (mode & 0o7777) | extra,
            uid: None,
            gid: self.fs_group,
        }
    }
}

/// Check every path of `payload` as kubelet does and return the payload with clean paths.
pub fn checked(payload: Payload) -> Result<Payload, String> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        validate_path(&path)?;
        clean.insert(clean_path(&path), file);
    }
    Ok(clean)
}

/// Set the volume directory's own owner and `mode` (plus the fsGroup's bits).
pub fn prepare_root(dir: &Path, mode: u32, ownership: Ownership) -> Result<(), String> {
    let root = Dir::open(dir).map_err(|e| e.to_string())?;
    root.set_attrs(ownership.dir(mode))
        .map_err(|e| e.to_string())
}

/// Write every file of a checked `payload` beneath `dir`.
pub fn write(dir: &Path, payload: &Payload, ownership: Ownership) -> Result<(), String> {
    let root = Dir::open(dir).map_err(|e| e.to_string())?;
    root.set_attrs(ownership.dir(DIR_MODE))
        .map_err(|e| e.to_string())?;
    for (path, file) in payload {
        write_one(&root, path, file, ownership)?;
    }
    Ok(())
}

/// Write one file of a volume (again: a refreshed token).
pub fn write_file(
    dir: &Path,
    path: &str,
    file: &FileProjection,
    ownership: Ownership,
) -> Result<(), String> {
    let root = Dir::open(dir).map_err(|e| e.to_string())?;
    write_one(&root, path, file, ownership)
}

fn write_one(
    root: &Dir,
    path: &str,
    file: &FileProjection,
    ownership: Ownership,
) -> Result<(), String> {
    root.write_atomic(
        path,
        &file.data,
        ownership.file(file.mode, file.uid),
        ownership.dir(DIR_MODE),
    )
    .map_err(|e| format!("writing {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    #[test]
    fn paths_are_checked_with_kubelets_words() {
        assert_eq!(
            validate_path("/tmp/x"),
            Err("invalid path: must be relative path: /tmp/x".to_owned())
        );
        assert_eq!(
            validate_path("a/../../x"),
            Err("invalid path: must not contain '..': a/../../x".to_owned())
        );
        assert_eq!(
            validate_path("..data/x"),
            Err("invalid path: must not start with '..': ..data/x".to_owned())
        );
        assert!(validate_path("").is_err());
        assert!(validate_path(&"a".repeat(256)).is_err());
        assert!(validate_path(&"a/".repeat(2049)).is_err());
        assert_eq!(validate_path("a/b/..c"), Ok(()));
        assert_eq!(
            validate_path(".."),
            Err("invalid path: must not contain '..': ..".to_owned())
        );
        assert!(
            validate_path("...").is_err(),
            "kubelet refuses a first name starting '..'"
        );
        assert_eq!(clean_path("./a//b/./c"), "a/b/c");
    }

    #[test]
    fn a_payload_with_an_absolute_path_is_refused_whole() {
        let payload = Payload::from([
            ("ok".to_owned(), file(b"1", 0o644)),
            ("/tmp/x".to_owned(), file(b"2", 0o644)),
        ]);
        assert_eq!(
            checked(payload),
            Err("invalid path: must be relative path: /tmp/x".to_owned())
        );
    }

    fn file(data: &[u8], mode: u32) -> FileProjection {
        FileProjection {
            data: data.to_vec(),
            mode,
            uid: None,
        }
    }

    #[test]
    fn modes_never_carry_set_id_bits() {
        assert_eq!(mode_bits(0o4755), 0o755);
        assert_eq!(mode_bits(-1), 0o644);
        assert_eq!(mode_bits(0o400), 0o400);
    }

    #[test]
    fn fs_group_adds_kubelets_masks() {
        let ro = Ownership {
            fs_group: Some(2000),
            read_only: true,
        };
        assert_eq!(
            ro.file(0o600, None),
            Attrs {
                mode: 0o640,
                uid: None,
                gid: Some(2000)
            }
        );
        assert_eq!(ro.dir(0o755).mode, 0o2755);
        let rw = Ownership {
            fs_group: Some(2000),
            read_only: false,
        };
        assert_eq!(rw.file(0o644, Some(7)).mode, 0o664);
        assert_eq!(rw.dir(0o777).mode, 0o2777);
        assert_eq!(Ownership::default().file(0o644, None), Attrs::mode(0o644));
    }

    #[test]
    fn writing_stays_in_the_volume() {
        let top = std::env::temp_dir().join(format!("skiff-payload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let volume = top.join("volume");
        let outside = top.join("outside");
        std::fs::create_dir_all(&volume).expect("volume");
        std::fs::create_dir_all(&outside).expect("outside");
        symlink(&outside, volume.join("link")).expect("symlink");
        let payload = Payload::from([("dir/key".to_owned(), file(b"v", 0o600))]);
        write(&volume, &payload, Ownership::default()).expect("write");
        let mode = std::fs::metadata(volume.join("dir/key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let through_link = Payload::from([("link/x".to_owned(), file(b"owned", 0o644))]);
        let err = write(&volume, &through_link, Ownership::default()).expect_err("escape");
        assert!(err.contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).expect("read").count(), 0);
        let _ = std::fs::remove_dir_all(&top);
    }
}
