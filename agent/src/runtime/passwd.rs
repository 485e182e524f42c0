//! A container's uid, gid and supplementary groups from a user string and the image's
//! `/etc/passwd` and `/etc/group`, as containerd resolves them (`pkg/oci/spec_opts.go`:
//! `WithUser`, `WithUserID`, `WithUsername`, `WithAdditionalGIDs`, `ensureAdditionalGids`;
//! `internal/cri/opts/spec_opts.go`: `WithSupplementalGroups`, `mergeGids`). Pure: the files'
//! contents come in as text (see [`super::rootfs_users`] for how they are read).

use std::collections::BTreeSet;

/// The highest uid or gid containerd (and runc) accept.
const MAX_ID: i64 = i32::MAX as i64;

/// An image's account files (`None`: the file does not exist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageAccounts {
    /// `/etc/passwd`.
    pub passwd: Option<String>,
    /// `/etc/group`.
    pub group: Option<String>,
}

/// A container's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids, sorted, the primary gid among them.
    pub additional_gids: Vec<u32>,
}

/// Why a user string could not be resolved (containerd's errors, with what was looked up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A uid beyond `0..=2147483647`.
    #[error("invalid USER value {0:?}: uid out of range")]
    UidOutOfRange(String),
    /// A gid beyond `0..=2147483647`.
    #[error("invalid USER value {0:?}: gid out of range")]
    GidOutOfRange(String),
    /// Not `user`, `uid`, `user:group` or `uid:gid`.
    #[error("invalid USER value {0}")]
    Invalid(String),
    /// A named user the image's `/etc/passwd` does not have.
    #[error("no users found: the image's /etc/passwd has no user {0:?}")]
    NoUser(String),
    /// A named group the image's `/etc/group` does not have.
    #[error("no groups found: the image's /etc/group has no group {0:?}")]
    NoGroup(String),
    /// A named user or group in an image without the file to look it up in.
    #[error("unable to find {what} {name:?}: the image has no {file}")]
    NoFile {
        /// `user` or `group`.
        what: &'static str,
        /// The name.
        name: String,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
    },
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct Group<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn id(field: Option<&str>) -> Option<u32> {
    field?.trim().parse().ok()
}

/// `/etc/passwd` entries (`name:password:uid:gid:…`); lines whose ids do not parse are
/// skipped (containerd's parser would read them as 0, that is, root).
fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|line| {
        let mut fields = line.trim().split(':');
        let name = fields.next().filter(|n| !n.is_empty())?;
        let _password = fields.next();
        Some(Passwd {
            name,
            uid: id(fields.next())?,
            gid: id(fields.next())?,
        })
    })
}

/// `/etc/group` entries (`name:password:gid:member,member`).
fn group_entries(text: &str) -> impl Iterator<Item = Group<'_>> {
    text.lines().filter_map(|line| {
        let mut fields = line.trim().split(':');
        let name = fields.next().filter(|n| !n.is_empty())?;
        let _password = fields.next();
        let gid = id(fields.next())?;
        let members = fields
            .next()
            .map(|m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Some(Group { name, gid, members })
    })
}

/// One side of a user string: a number in range, or a name.
enum Part<'a> {
    Id(u32),
    Name(&'a str),
}

fn part<'a>(
    text: &'a str,
    whole: &str,
    out_of_range: fn(String) -> UserError,
) -> Result<Part<'a>, UserError> {
    match text.parse::<i64>() {
        Ok(n) if (0..=MAX_ID).contains(&n) => Ok(Part::Id(u32::try_from(n).unwrap_or(0))),
        Ok(_) => Err(out_of_range(whole.to_owned())),
        Err(e)
            if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) =>
        {
            Err(out_of_range(whole.to_owned()))
        }
        Err(_) => Ok(Part::Name(text)),
    }
}

fn user_by_name<'a>(accounts: &'a ImageAccounts, name: &str) -> Result<Passwd<'a>, UserError> {
    let passwd = accounts
        .passwd
        .as_deref()
        .ok_or_else(|| UserError::NoFile {
            what: "user",
            name: name.to_owned(),
            file: "/etc/passwd",
        })?;
    passwd_entries(passwd)
        .find(|p| p.name == name)
        .ok_or_else(|| UserError::NoUser(name.to_owned()))
}

fn gid_by_name(accounts: &ImageAccounts, name: &str) -> Result<u32, UserError> {
    let group = accounts.group.as_deref().ok_or_else(|| UserError::NoFile {
        what: "group",
        name: name.to_owned(),
        file: "/etc/group",
    })?;
    group_entries(group)
        .find(|g| g.name == name)
        .map(|g| g.gid)
        .ok_or_else(|| UserError::NoGroup(name.to_owned()))
}

/// containerd's `WithUser`: uid and primary gid of `user` (`uid`, `name`, `uid:gid`,
/// `name:gid`, `uid:group`, `name:group`). A bare uid takes its gid from the image's
/// `/etc/passwd` (0 if it has none for that uid); a name must be found.
pub fn uid_gid(user: &str, accounts: &ImageAccounts) -> Result<(u32, u32), UserError> {
    let parts: Vec<&str> = user.split(':').collect();
    match parts.as_slice() {
        [one] => match part(one, user, UserError::UidOutOfRange)? {
            Part::Id(uid) => {
                let gid = accounts
                    .passwd
                    .as_deref()
                    .and_then(|p| passwd_entries(p).find(|e| e.uid == uid))
                    .map_or(0, |e| e.gid);
                Ok((uid, gid))
            }
            Part::Name(name) => {
                let entry = user_by_name(accounts, name)?;
                Ok((entry.uid, entry.gid))
            }
        },
        [u, g] => {
            let uid = match part(u, user, UserError::UidOutOfRange)? {
                Part::Id(uid) => uid,
                Part::Name(name) => user_by_name(accounts, name)?.uid,
            };
            let gid = match part(g, user, UserError::GidOutOfRange)? {
                Part::Id(gid) => gid,
                Part::Name(name) => gid_by_name(accounts, name)?,
            };
            Ok((uid, gid))
        }
        _ => Err(UserError::Invalid(user.to_owned())),
    }
}

/// containerd's `WithAdditionalGIDs`: the groups of `/etc/group` listing the user (by
/// name; a uid is named through `/etc/passwd`), except the one named after the user.
pub fn image_groups(user: &str, accounts: &ImageAccounts) -> Vec<u32> {
    let name = match user.parse::<i64>() {
        Ok(uid) => {
            let Some(entry) = accounts
                .passwd
                .as_deref()
                .and_then(|p| passwd_entries(p).find(|e| i64::from(e.uid) == uid))
            else {
                return Vec::new();
            };
            entry.name.to_owned()
        }
        Err(_) => user.to_owned(),
    };
    let Some(group) = accounts.group.as_deref() else {
        return Vec::new();
    };
    group_entries(group)
        .filter(|g| g.name != name && g.members.contains(&name.as_str()))
        .map(|g| g.gid)
        .collect()
}

/// The whole resolution containerd's CRI plugin makes: `WithUser(user)`, then (policy
/// Merge) the user's groups from the image's `/etc/group`, then the pod's supplemental
/// groups; the primary gid is always among the supplementary ones.
pub fn resolve(
    user: &str,
    accounts: &ImageAccounts,
    merge_image_groups: bool,
    supplemental: &[u32],
) -> Result<ResolvedUser, UserError> {
    let (uid, gid) = uid_gid(user, accounts)?;
    let mut gids = BTreeSet::from([gid]);
    if merge_image_groups {
        let name = user.split(':').next().unwrap_or(user);
        gids.extend(image_groups(name, accounts));
    }
    gids.extend(supplemental.iter().copied());
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: gids.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> ImageAccounts {
        ImageAccounts {
            passwd: Some(
                "root:x:0:0:root:/root:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                 app:x:1000:1001::/home/app:/bin/sh\n\
                 broken:x:notanumber:0::/:/bin/sh\n"
                    .into(),
            ),
            group: Some(
                "root:x:0:\n\
                 app:x:1001:app\n\
                 audio:x:29:app,other\n\
                 video:x:44:other\n\
                 staff:x:50: app \n"
                    .into(),
            ),
        }
    }

    #[test]
    fn names_resolve_through_the_images_files() {
        let a = accounts();
        assert_eq!(uid_gid("nobody", &a), Ok((65534, 65534)));
        assert_eq!(uid_gid("app", &a), Ok((1000, 1001)));
        assert_eq!(uid_gid("app:audio", &a), Ok((1000, 29)));
        assert_eq!(uid_gid("app:7", &a), Ok((1000, 7)));
        assert_eq!(uid_gid("5:video", &a), Ok((5, 44)));
    }

    #[test]
    fn numbers_stay_numbers_and_take_the_passwd_gid() {
        let a = accounts();
        assert_eq!(uid_gid("1000", &a), Ok((1000, 1001)));
        assert_eq!(uid_gid("4242", &a), Ok((4242, 0)), "unknown uid: gid 0");
        assert_eq!(uid_gid("4242:4243", &a), Ok((4242, 4243)));
        assert_eq!(
            uid_gid("1000", &ImageAccounts::default()),
            Ok((1000, 0)),
            "no /etc/passwd: gid 0"
        );
    }

    #[test]
    fn missing_and_malformed_users_are_errors() {
        let a = accounts();
        assert_eq!(uid_gid("ghost", &a), Err(UserError::NoUser("ghost".into())));
        assert_eq!(
            uid_gid("broken", &a),
            Err(UserError::NoUser("broken".into())),
            "a line with a bad uid is not read as root"
        );
        assert_eq!(
            uid_gid("app:ghosts", &a),
            Err(UserError::NoGroup("ghosts".into()))
        );
        assert!(matches!(
            uid_gid("app", &ImageAccounts::default()),
            Err(UserError::NoFile { .. })
        ));
        assert_eq!(
            uid_gid("2147483648", &a),
            Err(UserError::UidOutOfRange("2147483648".into()))
        );
        assert_eq!(
            uid_gid("-1", &a),
            Err(UserError::UidOutOfRange("-1".into()))
        );
        assert_eq!(
            uid_gid("1:99999999999999999999", &a),
            Err(UserError::GidOutOfRange("1:99999999999999999999".into()))
        );
        assert_eq!(
            uid_gid("a:b:c", &a),
            Err(UserError::Invalid("a:b:c".into()))
        );
        assert_eq!(
            UserError::NoUser("app".into()).to_string(),
            "no users found: the image's /etc/passwd has no user \"app\""
        );
    }

    #[test]
    fn supplementary_groups_merge_image_groups_and_the_pods() {
        let a = accounts();
        let user = resolve("app", &a, true, &[3000, 29]).expect("resolve");
        assert_eq!(
            user,
            ResolvedUser {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![29, 50, 1001, 3000],
            }
        );
        let by_uid = resolve("1000:5", &a, true, &[]).expect("resolve");
        assert_eq!(by_uid.additional_gids, [5, 29, 50]);
        let strict = resolve("app", &a, false, &[3000]).expect("resolve");
        assert_eq!(strict.additional_gids, [1001, 3000]);
        let root = resolve("0", &a, true, &[]).expect("resolve");
        assert_eq!((root.uid, root.gid, root.additional_gids), (0, 0, vec![0]));
    }
}
