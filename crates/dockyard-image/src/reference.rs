//! Image references, normalised the way Docker does:
//! `busybox` → `docker.io/library/busybox:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::Error;

pub const DOCKER_HUB: &str = "docker.io";

/// `registry/repository[:tag][@digest]`, always with a registry, and with a
/// tag when no digest is given.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn bad(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// One path component: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || r.starts_with('[') => (h, Some(p)),
        _ => (r, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host.len() > 2;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Reference {
    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// What to ask a registry for when reading: the digest if pinned,
    /// else the tag, else `latest`.
    pub fn fetch_target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
    /// What to name a pushed manifest: the tag, else the digest, else
    /// `latest`.
    pub fn push_target(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_string(),
        }
    }
    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
    /// The same name with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        if !valid_tag(tag) {
            return Err(bad(tag, "invalid tag"));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
    /// The short form Docker shows: `busybox:latest`, `user/app:1`,
    /// `localhost:5000/x:y` (no `docker.io/library/`).
    pub fn familiar(&self) -> String {
        let mut name = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        if let Some(t) = &self.tag {
            name.push(':');
            name.push_str(t);
        }
        if let Some(d) = &self.digest {
            name.push('@');
            name.push_str(&d.to_string());
        }
        name
    }
    /// True when `other` names this image: equal after normalisation.
    pub fn matches_str(&self, other: &str) -> bool {
        other
            .parse::<Reference>()
            .map(|r| &r == self)
            .unwrap_or(false)
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(input: &str) -> Result<Self, Error> {
        if input.is_empty() {
            return Err(bad(input, "empty reference"));
        }
        if input.len() > 512 {
            return Err(bad(input, "longer than 512 characters"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| bad(input, format!("bad digest part: {e}")))?,
                ),
            ),
            None => (input, None),
        };
        // The tag follows the last ':' after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(bad(input, format!("invalid tag {t:?}: use letters, digits, '_', '.', '-', up to 128 characters")));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repo) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if !valid_registry(&registry) {
            return Err(bad(input, format!("invalid registry host {registry:?}")));
        }
        // Host names are case-insensitive: `LOCALHOST:5001` is `localhost:5001`.
        let registry = registry.to_ascii_lowercase();
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if repo.is_empty() {
            return Err(bad(input, "missing repository name"));
        }
        for component in repo.split('/') {
            if !valid_component(component) {
                let why = if component.chars().any(|c| c.is_ascii_uppercase()) {
                    "repository names must be lowercase"
                } else {
                    "use lowercase letters, digits and single separators (. _ __ -)"
                };
                return Err(bad(
                    input,
                    format!("invalid repository component {component:?}: {why}"),
                ));
            }
        }
        let repository = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        if repository.len() + registry.len() + 1 > 255 {
            return Err(bad(input, "name longer than 255 characters"));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:1.0"), "docker.io/user/app:1.0");
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("LOCALHOST:5000/x"), "localhost:5000/x:latest");
        assert_eq!(
            norm("Registry.Example.COM/a/b:1"),
            "registry.example.com/a/b:1"
        );
        assert_eq!(
            norm("Docker.IO/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/x:y"), "localhost/x:y");
        assert_eq!(norm("127.0.0.1:5000/a/b/c:t"), "127.0.0.1:5000/a/b/c:t");
        assert_eq!(norm("ghcr.io/o/r"), "ghcr.io/o/r:latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn familiar_form() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.familiar(), "busybox:latest");
        let r: Reference = "localhost:5000/a:b".parse().unwrap();
        assert_eq!(r.familiar(), "localhost:5000/a:b");
    }

    #[test]
    fn names_the_bad_part() {
        let cases = [
            ("Busybox", "lowercase"),
            ("busybox:bad tag", "bad tag"),
            ("a//b", "\"\""),
            ("busybox@sha256:123", "digest"),
            ("host:99999999/x", "registry"),
            ("x/-y", "\"-y\""),
            ("", "empty"),
        ];
        for (input, part) in cases {
            let msg = input.parse::<Reference>().unwrap_err().to_string();
            assert!(msg.contains(part), "{input}: {msg}");
        }
    }

    proptest::proptest! {
        #[test]
        fn display_parses_back(s in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,10})?") {
            let r: Reference = s.parse().unwrap();
            let again: Reference = r.to_string().parse().unwrap();
            proptest::prop_assert_eq!(r, again);
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<Reference>();
        }
    }
}
