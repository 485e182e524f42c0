//! Authentication: client certificates signed by the cluster CA (user = CN, groups = O)
//! and bearer tokens from a token file. Anonymous requests are refused (401), except the
//! health and version endpoints, which kube-apiserver also serves to everyone.

use std::{collections::HashMap, path::Path};

use x509_parser::prelude::{FromDer, X509Certificate};

pub use crate::model::user::UserInfo as Identity;
use crate::model::user::UserInfo;

/// The identity a verified client certificate carries (CN = user, O = groups).
pub fn from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(UserInfo::authenticated(user, groups))
}

/// Paths anyone may read.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// Static bearer tokens (kube's `--token-auth-file` CSV: `token,user,uid,"group1,group2"`).
#[derive(Default, Debug)]
pub struct Tokens(HashMap<String, UserInfo>);

impl Tokens {
    /// Parse a token file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse token-file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(4, ',');
            let token = fields.next().unwrap_or_default().trim();
            let user = fields.next().unwrap_or_default().trim();
            let _uid = fields.next();
            let groups = fields.next().unwrap_or_default().trim().trim_matches('"');
            if token.is_empty() || user.is_empty() {
                return Err(format!(
                    "line {}: expected token,user,uid[,\"groups\"]",
                    n + 1
                ));
            }
            let groups = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect();
            tokens.insert(token.to_owned(), UserInfo::authenticated(user, groups));
        }
        Ok(Self(tokens))
    }

    /// The identity of an `Authorization: Bearer …` header value.
    pub fn authenticate(&self, header: &str) -> Option<UserInfo> {
        let token = header.strip_prefix("Bearer ")?.trim();
        self.0.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse() {
        let tokens =
            Tokens::parse("# comment\nabc,alice,1,\"dev,ops\"\nxyz,bob,2\n").expect("parse");
        let alice = tokens.authenticate("Bearer abc").expect("alice");
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, ["dev", "ops", "system:authenticated"]);
        assert!(tokens.authenticate("Bearer nope").is_none());
        assert!(tokens.authenticate("Basic abc").is_none());
        assert!(Tokens::parse("onlytoken\n").is_err());
    }
}
