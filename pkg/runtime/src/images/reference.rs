//! Image references, normalized the way docker and containerd do: "busybox" is
//! "docker.io/library/busybox:latest", "foo/bar" is "docker.io/foo/bar:latest", a first
//! component with a dot, a colon or "localhost" is a registry ("127.0.0.1:5000/x:latest"),
//! and digests ("@sha256:...") are kept.

use crate::types::{Error, Result};

/// The registry of references without one.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// docker.io's official images live under this namespace.
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag of references without a tag or digest.
const DEFAULT_TAG: &str = "latest";

/// A reference split into its parts, already normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// "docker.io", "127.0.0.1:5000", ...
    pub domain: String,
    /// "library/busybox", "minik/httpd", ...
    pub path: String,
    pub tag: Option<String>,
    /// "sha256:<hex>".
    pub digest: Option<String>,
}

impl Reference {
    /// Parse and normalize a reference; an error says what is wrong with it.
    pub fn parse(reference: &str) -> Result<Reference> {
        let s = reference.trim();
        let invalid = |why: &str| Error::Invalid(format!("invalid image reference {s:?}: {why}"));
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        let (name_part, digest) = match s.split_once('@') {
            Some((name, digest)) => (name, Some(digest.to_string())),
            None => (s, None),
        };
        if let Some(d) = &digest {
            super::content::check_digest(d).map_err(|e| invalid(&e.to_string()))?;
        }
        let last_slash = name_part.rfind('/');
        let (name, tag) = match name_part.rfind(':') {
            Some(i) if last_slash.is_none_or(|j| i > j) => {
                (&name_part[..i], Some(name_part[i + 1..].to_string()))
            }
            _ => (name_part, None),
        };
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(invalid("bad tag"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest)) if is_domain(first) => (first.to_string(), rest.to_string()),
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path
        };
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(invalid(
                "bad repository name (lowercase letters, digits, . _ - /)",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// "docker.io/library/busybox": the repository without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// "docker.io/library/busybox@sha256:..." for a manifest digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// "busybox" -> "docker.io/library/busybox:latest", as containerd normalizes references.
/// A string that is not a valid reference comes back trimmed but otherwise unchanged.
pub fn normalize(reference: &str) -> String {
    match Reference::parse(reference) {
        Ok(r) => r.to_string(),
        Err(_) => reference.trim().to_string(),
    }
}

/// docker's rule: the first component names a registry when it has a dot or a port, or is
/// "localhost" (or has an uppercase letter, which a repository cannot).
fn is_domain(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_path_component(c: &str) -> bool {
    !c.is_empty()
        && c.chars().all(|ch| {
            ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
        })
        && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("foo/bar", "docker.io/foo/bar:latest"),
            ("foo/bar/baz:v1", "docker.io/foo/bar/baz:v1"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
            (
                "127.0.0.1:5000/minik/httpd:v2",
                "127.0.0.1:5000/minik/httpd:v2",
            ),
            ("localhost/x", "localhost/x:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("ghcr.io/a/b", "ghcr.io/a/b:latest"),
            (" busybox ", "docker.io/library/busybox:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input}");
        }
    }

    #[test]
    fn keeps_digests() {
        assert_eq!(
            normalize(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            normalize(&format!("busybox:1.36@{D}")),
            format!("docker.io/library/busybox:1.36@{D}")
        );
        assert_eq!(
            normalize(&format!("127.0.0.1:5000/x@{D}")),
            format!("127.0.0.1:5000/x@{D}")
        );
    }

    #[test]
    fn parses_parts() {
        let r = Reference::parse("127.0.0.1:5000/minik/httpd:latest").unwrap();
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.path, "minik/httpd");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.digest, None);
        assert_eq!(r.name(), "127.0.0.1:5000/minik/httpd");
        assert_eq!(r.with_digest(D), format!("127.0.0.1:5000/minik/httpd@{D}"));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "busybox@sha256:short",
            "Busy box",
            "foo/:x",
            "busybox:-x",
            "a//b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        // normalize never fails; it leaves what it cannot parse alone.
        assert_eq!(normalize("a//b"), "a//b");
    }
}
