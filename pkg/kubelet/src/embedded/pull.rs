//! Images for containers as the kubelet's image manager gets them: the pull policy (the
//! API's default when unset), credentials from the pod's imagePullSecrets matched to the
//! image's registry (kubelet's docker keyring), and the per-pod back-off after failed pulls
//! (10 s doubling to 5 min) with the waiting reasons and messages it reports.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Secret};
use minik_runtime::{Auth, Image};

/// IfNotPresent, Always or Never; unset: Always for ":latest" or no tag, else IfNotPresent.
pub fn policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
    if latest { "Always" } else { "IfNotPresent" }.into()
}

/// "busybox" -> "busybox:latest" (kubelet's applyDefaultImageTag, used in messages).
pub fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or_default();
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// A registry key or image name without scheme, with Docker Hub's aliases as docker.io.
fn canonical(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (host, path) = s.split_once('/').unwrap_or((s, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    };
    // Docker Hub's legacy key "https://index.docker.io/v1/" means the whole registry.
    let path = if host == "docker.io" && path == "v1" {
        ""
    } else {
        path
    };
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// Whether a keyring key ("registry.example.com", "*.example.com", "host:5000/team")
/// matches a normalized image reference ("registry.example.com/team/app:1").
pub fn key_matches(key: &str, image: &str) -> bool {
    let key = canonical(key);
    let image = canonical(image.split(['@']).next().unwrap_or(image));
    let (khost, kpath) = key.split_once('/').unwrap_or((&key, ""));
    let (ihost, ipath) = image.split_once('/').unwrap_or((&image, ""));
    let host_ok = match khost.strip_prefix("*.") {
        Some(suffix) => ihost
            .strip_suffix(suffix)
            .and_then(|p| p.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => khost == ihost,
    };
    let repo = ipath.split(':').next().unwrap_or(ipath);
    host_ok && (kpath.is_empty() || repo == kpath || repo.starts_with(&format!("{kpath}/")))
}

/// The credentials in one pull secret (kubernetes.io/dockerconfigjson or dockercfg).
pub fn secret_auths(secret: &Secret) -> Vec<(String, Auth)> {
    let data = secret.data.clone().unwrap_or_default();
    let (config, nested) = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => (data.get(".dockerconfigjson"), true),
        Some("kubernetes.io/dockercfg") => (data.get(".dockercfg"), false),
        _ => return Vec::new(),
    };
    let Some(parsed) = config.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.0).ok())
    else {
        return Vec::new();
    };
    let auths = if nested {
        parsed.get("auths").cloned().unwrap_or_default()
    } else {
        parsed
    };
    let Some(map) = auths.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(key, entry)| {
            let field = |n: &str| {
                entry
                    .get(n)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let (mut username, mut password) = (field("username"), field("password"));
            if let Some(decoded) = decode_base64(&field("auth"))
                && let Some((u, p)) = decoded.split_once(':')
                && username.is_empty()
            {
                username = u.to_string();
                password = p.to_string();
            }
            (!username.is_empty()).then(|| (key.clone(), Auth { username, password }))
        })
        .collect()
}

fn decode_base64(s: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The credentials of `secrets` for `image`, most specific key first.
pub fn credentials(secrets: &[Secret], image: &str) -> Vec<Auth> {
    let mut found: Vec<(usize, Auth)> = secrets
        .iter()
        .flat_map(secret_auths)
        .filter(|(key, _)| key_matches(key, image))
        .map(|(key, auth)| (canonical(&key).len(), auth))
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, a)| a).collect()
}

/// A reference without its tag or digest.
fn repository(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => &reference[..i],
        _ => reference,
    }
}

/// What containerStatuses show for an image: the tag the pod asked for (normalized) and
/// the repo digest of the same repository, as containerd reports them.
pub fn status_names(image: &Image, requested: &str) -> (String, String) {
    let normalized = minik_runtime::normalize(requested);
    let shown = if image.repo_tags.contains(&normalized) {
        normalized.clone()
    } else {
        image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or(normalized.clone())
    };
    let repo = repository(&normalized);
    let reference = image
        .repo_digests
        .iter()
        .find(|d| d.starts_with(&format!("{repo}@")))
        .or(image.repo_digests.first())
        .cloned()
        .unwrap_or_else(|| image.id.clone());
    (shown, reference)
}

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Failed pulls per (pod uid, image): when the next attempt may be made, and why the last
/// one failed.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<(String, String), Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    delay: Duration,
    last: Instant,
    message: String,
}

impl Backoff {
    /// While in back-off: the ImagePullBackOff message and how long is left.
    pub fn waiting(&self, uid: &str, image: &str, now: Instant) -> Option<(String, Duration)> {
        let e = self.entries.get(&(uid.to_string(), image.to_string()))?;
        let left = e.delay.checked_sub(now.duration_since(e.last))?;
        (!left.is_zero()).then(|| {
            (
                format!(
                    "Back-off pulling image {:?}: ErrImagePull: {}",
                    image, e.message
                ),
                left,
            )
        })
    }

    /// A pull failed: the next waits twice as long (10 s first, 5 min at most).
    pub fn failed(&mut self, uid: &str, image: &str, message: &str, now: Instant) {
        let key = (uid.to_string(), image.to_string());
        let delay = match self.entries.get(&key) {
            Some(e) => (e.delay * 2).min(BACKOFF_MAX),
            None => BACKOFF_START,
        };
        self.entries.insert(
            key,
            Entry {
                delay,
                last: now,
                message: message.to_string(),
            },
        );
    }

    pub fn succeeded(&mut self, uid: &str, image: &str) {
        self.entries.remove(&(uid.to_string(), image.to_string()));
    }

    /// Forget a pod's entries.
    pub fn forget(&mut self, uid: &str) {
        self.entries.retain(|(u, _), _| u != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn pull_policy_defaults_by_tag() {
        let c = |image: &str, policy: Option<&str>| Container {
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(policy(&c("busybox", None)), "Always");
        assert_eq!(policy(&c("busybox:latest", None)), "Always");
        assert_eq!(policy(&c("localhost:5000/busybox", None)), "Always");
        assert_eq!(policy(&c("busybox:1.36", None)), "IfNotPresent");
        assert_eq!(policy(&c("localhost:5000/busybox:1", None)), "IfNotPresent");
        assert_eq!(policy(&c("busybox@sha256:abc", None)), "IfNotPresent");
        assert_eq!(policy(&c("busybox", Some("Never"))), "Never");
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("host:5000/a"), "host:5000/a:latest");
        assert_eq!(with_default_tag("a:1"), "a:1");
    }

    #[test]
    fn pull_secrets_match_the_registry() {
        let config = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
            "registry.example.com:5000":{"username":"u2","password":"p2"},
            "*.corp.example":{"username":"u3","password":"p3"},
            "ghcr.io/team":{"username":"u4","password":"p4"}}}"#;
        let secret = Secret {
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(
                [(
                    ".dockerconfigjson".to_string(),
                    ByteString(config.as_bytes().to_vec()),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let users = |image: &str| -> Vec<String> {
            credentials(std::slice::from_ref(&secret), image)
                .into_iter()
                .map(|a| a.username)
                .collect()
        };
        assert_eq!(users("docker.io/library/busybox:latest"), vec!["user"]);
        assert_eq!(users("registry.example.com:5000/app:1"), vec!["u2"]);
        assert_eq!(users("registry.example.com/app:1"), Vec::<String>::new());
        assert_eq!(users("r.corp.example/app:1"), vec!["u3"]);
        assert_eq!(users("a.b.corp.example/app:1"), Vec::<String>::new());
        assert_eq!(users("ghcr.io/team/app:1"), vec!["u4"]);
        assert_eq!(users("ghcr.io/other/app:1"), Vec::<String>::new());
        let auth = &credentials(&[secret], "docker.io/library/busybox:latest")[0];
        assert_eq!(auth.password, "pass");
    }

    #[test]
    fn failed_pulls_back_off_doubling() {
        let mut b = Backoff::default();
        let t = Instant::now();
        assert!(b.waiting("u", "img", t).is_none());
        b.failed("u", "img", "not found", t);
        let (msg, left) = b.waiting("u", "img", t).unwrap();
        assert_eq!(
            msg,
            "Back-off pulling image \"img\": ErrImagePull: not found"
        );
        assert_eq!(left, Duration::from_secs(10));
        assert!(b.waiting("u", "img", t + Duration::from_secs(10)).is_none());
        b.failed("u", "img", "not found", t + Duration::from_secs(10));
        assert_eq!(
            b.waiting("u", "img", t + Duration::from_secs(10))
                .unwrap()
                .1,
            Duration::from_secs(20)
        );
        b.succeeded("u", "img");
        assert!(b.waiting("u", "img", t + Duration::from_secs(10)).is_none());
    }

    #[test]
    fn statuses_show_the_asked_tag_and_its_repo_digest() {
        let image = Image {
            id: "sha256:cfg".into(),
            repo_tags: vec![
                "docker.io/library/busybox:latest".into(),
                "example.com/bb:1".into(),
            ],
            repo_digests: vec![
                "example.com/bb@sha256:b".into(),
                "docker.io/library/busybox@sha256:a".into(),
            ],
            size: 1,
        };
        let (shown, reference) = status_names(&image, "busybox");
        assert_eq!(shown, "docker.io/library/busybox:latest");
        assert_eq!(reference, "docker.io/library/busybox@sha256:a");
        let bare = Image {
            repo_digests: vec![],
            ..image
        };
        assert_eq!(status_names(&bare, "sha256:cfg").1, "sha256:cfg");
        assert_eq!(repository("localhost:5000/a/b:1"), "localhost:5000/a/b");
        assert_eq!(repository("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(repository("a/b@sha256:x"), "a/b");
    }
}
