//! Image references (`busybox`, `registry:5000/team/app:v2`, `app@sha256:…`) parsed by hand
//! to the grammar of the distribution project (what docker, containerd and kubelet accept),
//! and normalised the way they name images: `busybox` → `docker.io/library/busybox:latest`.
//!
//! oci-spec's parser does the same with one regular expression whose compiled form held
//! 7.5 MiB of the agent's heap for the agent's lifetime, most of its heap in use; this
//! parser allocates only the parts it returns.

use std::fmt;

/// Docker Hub, the registry of names without a domain.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's old name, normalised to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The namespace of Docker Hub's one-component names (`busybox` → `library/busybox`).
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag of a reference that names neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// Longest repository path (without the registry), as distribution's limit.
const NAME_MAX: usize = 255;
/// Longest tag.
const TAG_MAX: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("the image name is empty")]
    Empty,
    /// An upper-case letter in the repository path.
    #[error("repository name must be lowercase")]
    Uppercase,
    /// A repository path (after normalisation) past [`NAME_MAX`].
    #[error("repository name must not be more than {NAME_MAX} characters")]
    TooLong,
    /// A name that is not `[domain[:port]/]component[/component…]`.
    #[error(
        "invalid reference format: {0:?} is not a repository name (lowercase letters, digits and separators . _ __ -, components joined by /)"
    )]
    Name(String),
    /// A tag that is not 1–128 of letters, digits, `_`, `.` and `-` (not starting with `.` or `-`).
    #[error("invalid tag format: {0:?}")]
    Tag(String),
    /// A digest that is not `algorithm:hex`.
    #[error("invalid checksum digest format: {0:?}")]
    Digest(String),
    /// A digest of an algorithm other than sha256, sha384 or sha512, or of the wrong length.
    #[error("unsupported digest {0:?}: sha256 (64 hex digits), sha384 (96) or sha512 (128)")]
    DigestUnsupported(String),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry host (and port): `docker.io`, `registry.k8s.io`, `172.30.0.1:5001`.
    pub registry: String,
    /// Repository path in the registry: `library/busybox`.
    pub repository: String,
    /// The tag; `latest` when the reference named neither tag nor digest.
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if named.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parse and normalise `reference`.
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        if reference.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(valid_digest(digest)?)),
            None => (reference, None),
        };
        // A tag follows the last ':' unless a '/' comes after it (then it was a port).
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(valid_tag(tag)?)),
            _ => (rest, None),
        };
        let (registry, repository) = split_domain(name)?;
        if repository.len() > NAME_MAX {
            return Err(ReferenceError::TooLong);
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_owned),
        })
    }

    /// The same image at another registry host (a mirror), for the registry client.
    pub fn at(&self, host: &str) -> oci_client::Reference {
        let (registry, repository) = (host.to_owned(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                tag.clone(),
                digest.clone(),
            ),
            (_, Some(digest)) => {
                oci_client::Reference::with_digest(registry, repository, digest.clone())
            }
            (tag, None) => oci_client::Reference::with_tag(
                registry,
                repository,
                tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned()),
            ),
        }
    }
}

/// `registry/repository[:tag][@digest]`, the name the agent stores the image under (a tag
/// named beside a digest is kept).
impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Split `name` into registry and repository as docker does: the first component is a
/// registry when it has a `.` or `:`, is `localhost` or has an upper-case letter (Docker Hub
/// has no upper-case namespaces); Docker Hub otherwise.
fn split_domain(name: &str) -> Result<(String, String), ReferenceError> {
    let (registry, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            // Docker's grammar lets a first component that is a valid path component pass
            // too, and then takes it for the registry all the same.
            if !(valid_domain(first) || valid_component(first)) {
                return Err(ReferenceError::Name(name.to_owned()));
            }
            (first, path)
        }
        _ => (DOCKER_HUB, name),
    };
    validate_path(path, name)?;
    let registry = if registry == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{path}")
    } else {
        path.to_owned()
    };
    Ok((registry.to_owned(), repository))
}

/// `component(.component)*[:port]`, each component letters and digits with inner hyphens.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    };
    host.split('.').all(component_ok)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Every `/`-separated component: lowercase letters and digits, separated inside by `.`,
/// `_`, `__` or a run of `-`.
fn validate_path(path: &str, name: &str) -> Result<(), ReferenceError> {
    for component in path.split('/') {
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase);
        }
        if !valid_component(component) {
            return Err(ReferenceError::Name(name.to_owned()));
        }
    }
    Ok(())
}

fn valid_component(component: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Runs of separators between letters and digits.
    bytes
        .split(alnum)
        .filter(|run| !run.is_empty())
        .all(|run| matches!(run, b"." | b"_" | b"__") || run.iter().all(|&b| b == b'-'))
}

fn valid_tag(tag: &str) -> Result<&str, ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= TAG_MAX
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(tag)
    } else {
        Err(ReferenceError::Tag(tag.to_owned()))
    }
}

fn valid_digest(digest: &str) -> Result<&str, ReferenceError> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(ReferenceError::Digest(digest.to_owned()));
    };
    // Lower-case hex only, as go-digest (docker, containerd) accepts.
    let hex_digit = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if algorithm.is_empty() || hex.is_empty() || !hex.bytes().all(hex_digit) {
        return Err(ReferenceError::Digest(digest.to_owned()));
    }
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::DigestUnsupported(digest.to_owned())),
    };
    if hex.len() == length {
        Ok(digest)
    } else {
        Err(ReferenceError::DigestUnsupported(digest.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    fn whole(reference: &str) -> String {
        match ImageReference::parse(reference) {
            Ok(parsed) => parsed.to_string(),
            Err(e) => panic!("{reference:?} did not parse: {e}"),
        }
    }

    #[test]
    fn normalises_as_docker_and_containerd_do() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("skiff/echo:v2", "docker.io/skiff/echo:v2"),
            (
                "index.docker.io/library/redis",
                "docker.io/library/redis:latest",
            ),
            ("test.com:tag", "docker.io/library/test.com:tag"),
            ("test.com:5000", "docker.io/library/test.com:5000"),
            ("test.com/repo:tag", "test.com/repo:tag"),
            ("test:5000/repo", "test:5000/repo:latest"),
            ("localhost/app", "localhost/app:latest"),
            (
                "172.30.0.1:5001/skiff/echo:v2",
                "172.30.0.1:5001/skiff/echo:v2",
            ),
            (
                "lowercase:Uppercase",
                "docker.io/library/lowercase:Uppercase",
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com/bar/baz/quux:latest",
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io/test.example.com/my-app:test.example.com",
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com/myimage:xn--n3h.com",
            ),
            ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"),
            ("a__b---c.d/e", "a__b---c.d/e:latest"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("Registry/app", "Registry/app:latest"),
        ];
        for (input, expected) in cases {
            assert_eq!(whole(input), expected, "{input}");
        }
    }

    #[test]
    fn digests_replace_the_default_tag() {
        assert_eq!(
            whole(&format!("test:5000/repo@{SHA256}")),
            format!("test:5000/repo@{SHA256}")
        );
        assert_eq!(
            whole(&format!("busybox:1.36@{SHA256}")),
            format!("docker.io/library/busybox:1.36@{SHA256}")
        );
        let parsed = ImageReference::parse(&format!("app@{SHA256}")).expect("valid");
        assert_eq!(parsed.tag, None);
        assert_eq!(parsed.digest.as_deref(), Some(SHA256));
    }

    #[test]
    fn refuses_what_docker_refuses() {
        // "library/" + 250 letters is past 255.
        let long = "a".repeat(250);
        let digest_only = format!("@{SHA256}");
        let cases = [
            ("", ReferenceError::Empty),
            (":justtag", ReferenceError::Name(String::new())),
            (digest_only.as_str(), ReferenceError::Name(String::new())),
            (
                "repo@sha256:ffff",
                ReferenceError::DigestUnsupported("sha256:ffff".into()),
            ),
            (
                "repo@md5:ffff",
                ReferenceError::DigestUnsupported("md5:ffff".into()),
            ),
            ("repo@sha256", ReferenceError::Digest("sha256".into())),
            ("Uppercase:tag", ReferenceError::Uppercase),
            (
                "test:5000/Uppercase/lowercase:tag",
                ReferenceError::Uppercase,
            ),
            (long.as_str(), ReferenceError::TooLong),
            (
                "aa/asdf$$^/aa",
                ReferenceError::Name("aa/asdf$$^/aa".into()),
            ),
            ("repo:-tag", ReferenceError::Tag("-tag".into())),
            ("a..b", ReferenceError::Name("a..b".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(ImageReference::parse(input), Err(expected), "{input:?}");
        }
        for bad in [
            "a/", "/a", "a//b", "-a", "a-", "a___b", "a._b", "repo:", "a:b/c",
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?} parsed");
        }
        let upper_hex = format!("repo@sha256:{}", "F".repeat(64));
        assert!(matches!(
            ImageReference::parse(&upper_hex),
            Err(ReferenceError::Digest(_))
        ));
    }

    #[test]
    fn the_length_limit_is_on_the_repository_not_the_registry() {
        let path = "a".repeat(245);
        let parsed = ImageReference::parse(&format!("registry.example.com:5000/{path}"))
            .expect("a 245-letter repository is valid");
        assert_eq!(parsed.repository, path);
    }

    #[test]
    fn a_mirror_gets_the_same_repository_tag_and_digest() {
        let parsed = ImageReference::parse("busybox:1.36").expect("valid");
        let at = parsed.at("172.30.0.1:5001");
        assert_eq!(at.registry(), "172.30.0.1:5001");
        assert_eq!(at.repository(), "library/busybox");
        assert_eq!(at.tag(), Some("1.36"));
        let pinned = ImageReference::parse(&format!("app@{SHA256}")).expect("valid");
        assert_eq!(pinned.at("mirror").digest(), Some(SHA256));
    }
}
