//! Bootstrap tokens (Secrets of type `bootstrap.kubernetes.io/token` in kube-system):
//!
//! - the token cleaner deletes a token's Secret once its `expiration` has passed;
//! - the bootstrap signer keeps ConfigMap `cluster-info` in kube-public (a kubeconfig with
//!   the cluster CA and the API server's URL, made when missing) signed by every token with
//!   `usage-bootstrap-signing`: key `jws-kubeconfig-<token-id>` holds a detached HS256 JWS
//!   of the kubeconfig, as kubeadm and k3s agents check it before trusting the CA.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;

use crate::{Ctx, Queue, Reconcile, Result, util};

const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
const SYSTEM: &str = "kube-system";
const PUBLIC: &str = "kube-public";
const CLUSTER_INFO: &str = "cluster-info";
const KUBECONFIG: &str = "kubeconfig";
const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";

/// A field of a token Secret as text.
fn field(secret: &Secret, key: &str) -> Option<String> {
    let v = secret.data.as_ref()?.get(key)?;
    String::from_utf8(v.0.clone()).ok()
}

/// How long until the token expires: None without (or with an unreadable) `expiration`,
/// zero when it has passed.
pub fn expires_in(secret: &Secret, now: Timestamp) -> Option<Duration> {
    let at: Timestamp = field(secret, "expiration")?.parse().ok()?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// The (id, secret) of a token that may sign cluster-info.
fn signing_token(secret: &Secret, now: Timestamp) -> Option<(String, String)> {
    if secret.type_.as_deref() != Some(TOKEN_TYPE) || secret.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let id = field(secret, "token-id")?;
    let token = field(secret, "token-secret")?;
    let usable = field(secret, "usage-bootstrap-signing").as_deref() == Some("true")
        && secret.name_any() == format!("bootstrap-token-{id}")
        && expires_in(secret, now) != Some(Duration::ZERO);
    usable.then_some((id, token))
}

/// A detached JWS (RFC 7515 appendix F) of `content`: HS256 keyed by the token secret,
/// `kid` the token id, exactly as cluster-bootstrap's ComputeDetachedSignature.
pub fn detached_signature(content: &str, id: &str, secret: &str) -> String {
    let header = serde_json::json!({"alg": "HS256", "kid": id}).to_string();
    let header = URL_SAFE_NO_PAD.encode(header);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = ring::hmac::sign(&key, input.as_bytes());
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// The kubeconfig cluster-info publishes (kubeadm's shape).
pub fn cluster_info_kubeconfig(ca_pem: &str, server: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        STANDARD.encode(ca_pem)
    )
}

/// cluster-info's data signed by `tokens` (id -> secret): None when it is right already.
pub fn signed(
    data: &BTreeMap<String, String>,
    tokens: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let content = data.get(KUBECONFIG)?;
    let mut out: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(SIGNATURE_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (id, secret) in tokens {
        out.insert(
            format!("{SIGNATURE_PREFIX}{id}"),
            detached_signature(content, id, secret),
        );
    }
    (&out != data).then_some(out)
}

pub struct Cleaner {
    ctx: Ctx,
}

pub struct Signer {
    ctx: Ctx,
    ca: String,
}

/// Start the token cleaner.
pub fn start_cleaner(ctx: &Ctx) -> Queue {
    let queue = Queue::new("token_cleaner", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.system_secrets.on(move |secret, _| {
        if secret.type_.as_deref() == Some(TOKEN_TYPE) {
            q.add(secret.name_any());
        }
    });
    let this = Arc::new(Cleaner { ctx: ctx.clone() });
    ctx.spawn_workers("token_cleaner", &queue, 1, this);
    queue
}

/// Start the bootstrap signer; `ca` is the cluster CA (PEM) cluster-info publishes.
pub fn start_signer(ctx: &Ctx, ca: String) -> Queue {
    let queue = Queue::new("bootstrap_signer", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.system_secrets.on(move |secret, _| {
        if secret.type_.as_deref() == Some(TOKEN_TYPE) {
            q.add(CLUSTER_INFO);
        }
    });
    let q = queue.clone();
    ctx.informers.configmaps.on(move |cm, _| {
        if cm.namespace().as_deref() == Some(PUBLIC) && cm.name_any() == CLUSTER_INFO {
            q.add(CLUSTER_INFO);
        }
    });
    // cluster-info is made at start, without waiting for a token.
    queue.add(CLUSTER_INFO);
    let this = Arc::new(Signer {
        ctx: ctx.clone(),
        ca,
    });
    ctx.spawn_workers("bootstrap_signer", &queue, 1, this);
    queue
}

impl Reconcile for Cleaner {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>> {
        let store = self.ctx.informers.system_secrets.store();
        let Some(secret) = store.get(&ObjectRef::new(&name).within(SYSTEM)) else {
            return Ok(None);
        };
        if secret.type_.as_deref() != Some(TOKEN_TYPE)
            || secret.metadata.deletion_timestamp.is_some()
        {
            return Ok(None);
        }
        match expires_in(&secret, Timestamp::now()) {
            None => Ok(None),
            Some(left) if !left.is_zero() => Ok(Some(left)),
            Some(_) => {
                tracing::info!(secret = name, "deleting an expired bootstrap token");
                let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), SYSTEM);
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: secret.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &dp).await {
                    Err(e) if !matches!(util::code(&e), Some(404 | 409)) => Err(e.into()),
                    _ => Ok(None),
                }
            }
        }
    }
}

impl Signer {
    /// The API server's URL, from the `kubernetes` service's Endpoints.
    async fn server_url(&self) -> Result<String> {
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), "default");
        let ep = api.get("kubernetes").await?;
        let subset = ep
            .subsets
            .unwrap_or_default()
            .into_iter()
            .next()
            .unwrap_or_default();
        let ip = subset
            .addresses
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|a| a.ip);
        let port = subset.ports.unwrap_or_default().first().map(|p| p.port);
        match (ip, port) {
            (Some(ip), Some(port)) if ip.contains(':') => Ok(format!("https://[{ip}]:{port}")),
            (Some(ip), Some(port)) => Ok(format!("https://{ip}:{port}")),
            _ => Err(crate::Error::Other(
                "the kubernetes service has no endpoints".into(),
            )),
        }
    }
}

impl Reconcile for Signer {
    async fn reconcile(&self, _: String) -> Result<Option<Duration>> {
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), PUBLIC);
        let pp = PostParams::default();
        let Some(current) = api.get_opt(CLUSTER_INFO).await? else {
            let data = BTreeMap::from([(
                KUBECONFIG.to_string(),
                cluster_info_kubeconfig(&self.ca, &self.server_url().await?),
            )]);
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CLUSTER_INFO.into()),
                    namespace: Some(PUBLIC.into()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            // Its own event brings the key back to be signed.
            return match api.create(&pp, &cm).await {
                Err(e) if !matches!(util::code(&e), Some(409 | 403)) => Err(e.into()),
                _ => Ok(None),
            };
        };
        let now = Timestamp::now();
        let mut tokens = BTreeMap::new();
        let mut next: Option<Duration> = None;
        for secret in self.ctx.informers.system_secrets.store().state() {
            if let Some((id, token)) = signing_token(&secret, now) {
                // Its signature goes when it expires.
                if let Some(left) = expires_in(&secret, now) {
                    next = Some(next.map_or(left, |n| n.min(left)));
                }
                tokens.entry(id).or_insert(token);
            }
        }
        let data = current.data.clone().unwrap_or_default();
        if let Some(data) = signed(&data, &tokens) {
            let mut cm = current;
            cm.data = Some(data);
            api.replace(CLUSTER_INFO, &pp, &cm).await?;
        }
        Ok(next.map(|d| d + Duration::from_millis(100)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn signatures_are_cluster_bootstraps() {
        // cluster-bootstrap's jws_test.go vectors.
        let content = "Hello from the other side. I must have called a thousand times.";
        assert_eq!(
            detached_signature(content, "joshua", "my voice is my passcode"),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
        );
        assert_eq!(
            detached_signature("", "joshua", "my voice is my passcode"),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"
        );
    }

    fn token(expiration: Option<&str>) -> Secret {
        let mut data = BTreeMap::from([
            ("token-id".to_string(), ByteString(b"abcdef".to_vec())),
            (
                "token-secret".to_string(),
                ByteString(b"0123456789abcdef".to_vec()),
            ),
            (
                "usage-bootstrap-signing".to_string(),
                ByteString(b"true".to_vec()),
            ),
        ]);
        if let Some(e) = expiration {
            data.insert("expiration".into(), ByteString(e.as_bytes().to_vec()));
        }
        Secret {
            metadata: ObjectMeta {
                name: Some("bootstrap-token-abcdef".into()),
                ..Default::default()
            },
            data: Some(data),
            type_: Some(TOKEN_TYPE.into()),
            ..Default::default()
        }
    }

    #[test]
    fn expired_tokens_neither_sign_nor_stay() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let past = token(Some("2029-12-31T23:00:00Z"));
        assert_eq!(expires_in(&past, now), Some(Duration::ZERO));
        assert!(signing_token(&past, now).is_none());
        let future = token(Some("2030-01-01T01:00:00Z"));
        assert_eq!(expires_in(&future, now), Some(Duration::from_secs(3600)));
        assert!(signing_token(&future, now).is_some());
        assert_eq!(expires_in(&token(None), now), None);
        assert_eq!(expires_in(&token(Some("soon")), now), None);
    }

    #[test]
    fn signatures_follow_the_tokens() {
        let data = BTreeMap::from([
            (KUBECONFIG.to_string(), "kc".to_string()),
            ("jws-kubeconfig-gone00".to_string(), "old".to_string()),
        ]);
        let tokens = BTreeMap::from([("abcdef".to_string(), "0123456789abcdef".to_string())]);
        let out = signed(&data, &tokens).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out["jws-kubeconfig-abcdef"],
            detached_signature("kc", "abcdef", "0123456789abcdef")
        );
        assert!(signed(&out, &tokens).is_none());
    }
}
