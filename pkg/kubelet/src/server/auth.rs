//! Who may use the kubelet server, as kubelet decides it with k3s's settings
//! (`anonymous-auth=false`, `authentication-token-webhook`, `authorization-mode=Webhook`):
//! a client certificate the client CA signed, or a bearer token the API server vouches for
//! through a TokenReview; then a SubjectAccessReview per request on the node's
//! `nodes/<subresource>`, the subresource taken from the path. Both are asked as the node
//! (`system:node:<name>`), which the Node authorizer lets create them. Answers are cached
//! as kubelet caches them (tokens 2 min; decisions 5 min allowed, 30 s denied).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// How long a token's user is remembered (kubelet's authentication.webhook.cacheTTL).
const TOKEN_TTL: Duration = Duration::from_secs(120);
/// How long decisions are remembered (authorization.webhook.cacheAuthorizedTTL and
/// cacheUnauthorizedTTL).
const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: Vec<(String, Vec<String>)>,
}

/// The verb of an HTTP method, as kubelet maps it ("" for others, which nothing allows).
pub fn verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The `nodes` subresources a request for `path` may be allowed by, in the order kubelet
/// asks (KubeletFineGrainedAuthz: `pods`, `healthz` and `configz` first, then `proxy`).
pub fn subresources(path: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if under(path, "/pods") || under(path, "/runningpods/") {
        out.push("pods");
    } else if under(path, "/healthz") {
        out.push("healthz");
    } else if under(path, "/configz") {
        out.push("configz");
    } else if under(path, "/statusz") {
        out.push("statusz");
    }
    out.push(if under(path, "/stats") {
        "stats"
    } else if under(path, "/metrics") {
        "metrics"
    } else if under(path, "/logs") {
        "log"
    } else if under(path, "/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    });
    out
}

/// kubelet's answer to a request no subresource allows.
pub fn forbidden(user: &str, verb: &str, subresources: &[&str]) -> String {
    format!(
        "Forbidden (user={user}, verb={verb}, resource=nodes, subresource(s)=[{}])\n",
        subresources.join(" ")
    )
}

type Decisions = HashMap<(User, String, String), (bool, Instant)>;

/// Asks the API server who a token belongs to and what a user may do, remembering answers.
pub struct Authorizer {
    client: kube::Client,
    node: String,
    tokens: Mutex<HashMap<String, (Option<User>, Instant)>>,
    decisions: Mutex<Decisions>,
}

/// Why the API server could not answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReviewError(#[from] kube::Error);

impl Authorizer {
    pub fn new(client: kube::Client, node: String) -> Authorizer {
        Authorizer {
            client,
            node,
            tokens: Mutex::default(),
            decisions: Mutex::default(),
        }
    }

    /// The user `token` authenticates as (None: not a valid token).
    pub async fn token_user(&self, token: &str) -> Result<Option<User>, ReviewError> {
        if let Some((user, at)) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(user.clone());
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: None,
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let status = answer.status.unwrap_or_default();
        let user = status
            .authenticated
            .unwrap_or(false)
            .then(|| status.user.unwrap_or_default())
            .map(|u| User {
                name: u.username.unwrap_or_default(),
                uid: u.uid.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default().into_iter().collect(),
            });
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        tokens.insert(token.to_string(), (user.clone(), Instant::now()));
        Ok(user)
    }

    /// Whether `user` may `verb` this node's `subresource`.
    pub async fn allowed(
        &self,
        user: &User,
        verb: &str,
        subresource: &str,
    ) -> Result<bool, ReviewError> {
        let key = (user.clone(), verb.to_string(), subresource.to_string());
        if let Some((yes, at)) = self
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            let ttl = if *yes { ALLOWED_TTL } else { DENIED_TTL };
            if at.elapsed() < ttl {
                return Ok(*yes);
            }
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.iter().cloned().collect()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_string()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.to_string()),
                    name: Some(self.node.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let yes = answer.status.is_some_and(|s| s.allowed);
        let mut decisions = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        decisions.retain(|_, (yes, at)| at.elapsed() < if *yes { ALLOWED_TTL } else { DENIED_TTL });
        decisions.insert(key, (yes, Instant::now()));
        Ok(yes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_kubelets_subresources() {
        for (path, want) in [
            ("/stats/summary", vec!["stats"]),
            ("/stats", vec!["stats"]),
            ("/metrics", vec!["metrics"]),
            ("/metrics/resource", vec!["metrics"]),
            ("/metrics/cadvisor", vec!["metrics"]),
            ("/logs/", vec!["log"]),
            ("/logs/syslog", vec!["log"]),
            ("/pods", vec!["pods", "proxy"]),
            ("/pods/", vec!["pods", "proxy"]),
            ("/runningpods/", vec!["pods", "proxy"]),
            ("/healthz", vec!["healthz", "proxy"]),
            ("/healthz/ping", vec!["healthz", "proxy"]),
            ("/configz", vec!["configz", "proxy"]),
            ("/spec/", vec!["proxy"]),
            ("/statsfoo", vec!["proxy"]),
            ("/podsx", vec!["proxy"]),
            ("/exec/ns/pod/c", vec!["proxy"]),
            ("/containerLogs/ns/pod/c", vec!["proxy"]),
            ("/", vec!["proxy"]),
        ] {
            assert_eq!(subresources(path), want, "{path}");
        }
        assert_eq!(verb(&http::Method::GET), "get");
        assert_eq!(verb(&http::Method::POST), "create");
        assert_eq!(verb(&http::Method::PUT), "update");
        assert_eq!(verb(&http::Method::PATCH), "patch");
        assert_eq!(verb(&http::Method::DELETE), "delete");
        assert_eq!(verb(&http::Method::HEAD), "");
        assert_eq!(
            forbidden("system:serviceaccount:d:x", "get", &["pods", "proxy"]),
            "Forbidden (user=system:serviceaccount:d:x, verb=get, resource=nodes, \
             subresource(s)=[pods proxy])\n"
        );
    }
}
