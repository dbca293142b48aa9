//! Registry mirrors and credentials in k3s's registries.yaml format:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//!     rewrite: {"^library/(.*)": "mirrored/$1"}
//!   "*": {endpoint: ["https://mirror.example.com"]}
//! configs:
//!   "127.0.0.1:5000":
//!     auth: {username: u, password: p}
//!     tls: {insecure_skip_verify: true}
//! ```
//!
//! A pull tries each mirror endpoint of the image's registry (or of "*") in order, then the
//! registry itself: over HTTPS (docker.io as registry-1.docker.io), and for localhost and
//! loopback addresses over plain HTTP after that, as containerd does. An endpoint given with
//! http:// is plain HTTP. Credentials and TLS settings come from `configs` by the endpoint's
//! host, else by the registry's name.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::types::{Auth, Error, Result};

/// Registry mirrors and credentials, as k3s's /etc/minik/registries.yaml gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Mirror {
    /// URLs ("http://host:port", "https://host"; no scheme means https).
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Repository rewrites on mirror endpoints: regular expression -> replacement ($1...).
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64("username:password"), as in a docker config.json.
    #[serde(default)]
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}

/// One place to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// host[:port]
    pub host: String,
    pub plain_http: bool,
    pub insecure_skip_verify: bool,
    pub auth: Option<Auth>,
    /// The repository to ask this endpoint for (rewritten on mirrors).
    pub repository: String,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.host
        )
    }
}

impl Registries {
    /// Read a registries.yaml; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Registries> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registries::default()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
        };
        Registries::parse(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// Parse registries.yaml text (empty text is an empty configuration).
    pub fn parse(text: &str) -> Result<Registries> {
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let r: Registries = serde_saphyr::from_str(text)
            .map_err(|e| Error::Invalid(format!("not a valid registries.yaml: {e}")))?;
        for (name, m) in &r.mirrors {
            for pattern in m.rewrite.keys() {
                regex::Regex::new(pattern).map_err(|e| {
                    Error::Invalid(format!(
                        "mirror {name}: bad rewrite pattern {pattern:?}: {e}"
                    ))
                })?;
            }
        }
        Ok(r)
    }

    /// Where to pull `repository` of `registry` from, in order; `auth` (from an
    /// imagePullSecret) wins over configured credentials.
    pub fn endpoints(
        &self,
        registry: &str,
        repository: &str,
        auth: Option<&Auth>,
    ) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = Vec::new();
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        if let Some(m) = mirror {
            for url in &m.endpoint {
                let (plain_http, rest) = match url.split_once("://") {
                    Some(("http", rest)) => (true, rest),
                    Some((_, rest)) => (false, rest),
                    None => (false, url.as_str()),
                };
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                let path = path.trim_end_matches('/');
                if !path.is_empty() && path != "v2" {
                    tracing::warn!(endpoint = %url, "a path in a mirror endpoint is not supported; using its host");
                }
                if host.is_empty() {
                    tracing::warn!(endpoint = %url, "skipping a mirror endpoint without a host");
                    continue;
                }
                out.push(self.endpoint(registry, host, plain_http, rewrite(m, repository), auth));
            }
        }
        let default_host = if registry == super::reference::DEFAULT_DOMAIN {
            "registry-1.docker.io"
        } else {
            registry
        };
        for plain_http in [false, true] {
            if plain_http && !is_local(default_host) {
                continue;
            }
            if out
                .iter()
                .any(|e| e.host == default_host && e.plain_http == plain_http)
            {
                continue;
            }
            out.push(self.endpoint(registry, default_host, plain_http, repository.into(), auth));
        }
        out
    }

    fn endpoint(
        &self,
        registry: &str,
        host: &str,
        plain_http: bool,
        repository: String,
        auth: Option<&Auth>,
    ) -> Endpoint {
        let config = self
            .configs
            .get(host)
            .or_else(|| self.configs.get(registry));
        let auth = auth
            .cloned()
            .or_else(|| config.and_then(|c| c.auth.as_ref()).and_then(credentials));
        Endpoint {
            host: host.into(),
            plain_http,
            insecure_skip_verify: config
                .and_then(|c| c.tls.as_ref())
                .is_some_and(|t| t.insecure_skip_verify),
            auth,
            repository,
        }
    }
}

fn credentials(a: &AuthConfig) -> Option<Auth> {
    if let (Some(u), Some(p)) = (&a.username, &a.password) {
        return Some(Auth {
            username: u.clone(),
            password: p.clone(),
        });
    }
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(a.auth.as_ref()?.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Auth {
        username: u.into(),
        password: p.into(),
    })
}

/// The first rewrite whose pattern matches, applied.
fn rewrite(m: &Mirror, repository: &str) -> String {
    for (pattern, replacement) in &m.rewrite {
        if let Ok(re) = regex::Regex::new(pattern)
            && re.is_match(repository)
        {
            return re.replace(repository, replacement.as_str()).into_owned();
        }
    }
    repository.into()
}

/// localhost and loopback addresses, which containerd also tries over plain HTTP.
fn is_local(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com:8443/v2"
    rewrite:
      "^library/(.*)": "mirrored/$1"
  "127.0.0.1:5001":
    endpoint: ["http://127.0.0.1:5001"]
configs:
  "127.0.0.1:5000":
    auth:
      username: alice
      password: secret
  "mirror.example.com:8443":
    auth:
      auth: Ym9iOmh1bnRlcjI=
    tls:
      insecure_skip_verify: true
  "ghcr.io":
    auth: {username: carol, password: pw}
"#;

    #[test]
    fn parses_k3s_registries_yaml() {
        let r = Registries::parse(YAML).unwrap();
        assert_eq!(r.mirrors["docker.io"].endpoint.len(), 2);
        assert_eq!(
            r.mirrors["docker.io"].rewrite["^library/(.*)"],
            "mirrored/$1"
        );
        let c = &r.configs["mirror.example.com:8443"];
        assert!(c.tls.as_ref().unwrap().insecure_skip_verify);
        assert_eq!(
            r.configs["127.0.0.1:5000"]
                .auth
                .as_ref()
                .unwrap()
                .username
                .as_deref(),
            Some("alice")
        );
        assert_eq!(Registries::parse("").unwrap(), Registries::default());
        assert!(Registries::parse("mirrors: [1, 2]").is_err());
        assert!(Registries::parse("mirrors: {x: {rewrite: {'(': y}}}").is_err());
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Registries::load(&dir.path().join("none.yaml")).unwrap(),
            Registries::default()
        );
        let p = dir.path().join("r.yaml");
        std::fs::write(&p, "mirrors: {docker.io: {endpoint: [http://a:1]}}\n").unwrap();
        assert_eq!(
            Registries::load(&p).unwrap().mirrors["docker.io"].endpoint,
            ["http://a:1"]
        );
        std::fs::write(&p, "mirrors: [").unwrap();
        let err = Registries::load(&p).unwrap_err().to_string();
        assert!(err.contains("r.yaml"), "{err}");
    }

    #[test]
    fn endpoints_in_order_with_credentials() {
        let r = Registries::parse(YAML).unwrap();
        let eps = r.endpoints("docker.io", "library/busybox", None);
        let urls: Vec<String> = eps.iter().map(|e| e.url()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5000",
                "https://mirror.example.com:8443",
                "https://registry-1.docker.io"
            ]
        );
        assert_eq!(eps[0].repository, "mirrored/busybox");
        assert_eq!(eps[2].repository, "library/busybox");
        assert_eq!(eps[0].auth.as_ref().unwrap().username, "alice");
        assert_eq!(eps[1].auth.as_ref().unwrap().password, "hunter2");
        assert!(eps[1].insecure_skip_verify && !eps[0].insecure_skip_verify);
        assert_eq!(eps[2].auth, None);

        // A pull secret wins.
        let secret = Auth {
            username: "dave".into(),
            password: "x".into(),
        };
        assert!(
            r.endpoints("docker.io", "library/busybox", Some(&secret))
                .iter()
                .all(|e| e.auth.as_ref() == Some(&secret))
        );

        // No mirror: the registry itself over HTTPS; credentials by registry name.
        let eps = r.endpoints("ghcr.io", "a/b", None);
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].url(), "https://ghcr.io");
        assert_eq!(eps[0].auth.as_ref().unwrap().username, "carol");

        // Loopback registries: HTTPS, then plain HTTP.
        let urls: Vec<String> = Registries::default()
            .endpoints("127.0.0.1:5002", "x", None)
            .iter()
            .map(|e| e.url())
            .collect();
        assert_eq!(urls, ["https://127.0.0.1:5002", "http://127.0.0.1:5002"]);
        let urls: Vec<String> = Registries::default()
            .endpoints("localhost:5000", "x", None)
            .iter()
            .map(|e| e.url())
            .collect();
        assert_eq!(urls, ["https://localhost:5000", "http://localhost:5000"]);
        // A mirror that is the registry itself over HTTP is not tried twice.
        let urls: Vec<String> = r
            .endpoints("127.0.0.1:5001", "x", None)
            .iter()
            .map(|e| e.url())
            .collect();
        assert_eq!(urls, ["http://127.0.0.1:5001", "https://127.0.0.1:5001"]);
    }

    #[test]
    fn wildcard_mirror() {
        let r = Registries::parse("mirrors:\n  \"*\":\n    endpoint: [\"http://127.0.0.1:9\"]\n")
            .unwrap();
        let urls: Vec<String> = r
            .endpoints("quay.io", "a/b", None)
            .iter()
            .map(|e| e.url())
            .collect();
        assert_eq!(urls, ["http://127.0.0.1:9", "https://quay.io"]);
    }
}
