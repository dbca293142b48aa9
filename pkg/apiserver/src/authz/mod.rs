//! Authorization: RBAC (Roles, ClusterRoles and their bindings, read from the watch cache;
//! the rules resolved per user kept until one of them changes, see `rbac_cache.rs`),
//! with system:masters allowed everything, as kube-apiserver's `--authorization-mode=RBAC`.
//! A denied request is 403 with Kubernetes' message. SelfSubjectAccessReview answers
//! `kubectl auth can-i`.

mod attributes;
pub(crate) mod escalation;
mod impersonate;
pub mod node;
mod rbac;
mod rbac_cache;
#[cfg(test)]
mod rbac_tests;
pub mod reviews;
pub mod webhook;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use minik_registry::Registry;

use crate::AppState;
use crate::authn::UserInfo;
use crate::status::json_response;
pub use attributes::Attributes;
pub use rbac_cache::RbacCache;

/// One authorizer of `--authorization-mode`.
#[derive(Clone)]
pub enum Authorizer {
    AlwaysAllow,
    AlwaysDeny,
    Node,
    /// RBAC, with the rules it has resolved per user.
    Rbac(Arc<RbacCache>),
    Webhook(Arc<webhook::WebhookAuthorizer>),
}

impl Authorizer {
    /// RBAC with an empty cache.
    pub fn rbac() -> Self {
        Authorizer::Rbac(Arc::default())
    }
}

/// What one authorizer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused, with the reason to add to the message.
    Deny(String),
    NoOpinion,
}

/// The authorizers that decide, asked in order until one allows or denies (nobody having
/// an opinion is a refusal). system:masters is allowed everything before any is asked.
#[derive(Clone)]
pub struct Mode(Arc<Vec<Authorizer>>);

impl Default for Mode {
    /// Everything is allowed (in-process tests; `--authorization-mode=AlwaysAllow`).
    fn default() -> Self {
        Mode(Arc::new(vec![Authorizer::AlwaysAllow]))
    }
}

impl Mode {
    /// RBAC alone.
    pub fn rbac() -> Self {
        Mode(Arc::new(vec![Authorizer::rbac()]))
    }

    /// `--authorization-mode`, e.g. "Node,RBAC,Webhook"; the webhook authorizer when one is
    /// named.
    pub fn parse(spec: &str, webhook: Option<webhook::WebhookAuthorizer>) -> Result<Self, String> {
        let mut webhook = webhook.map(Arc::new);
        let mut chain = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            chain.push(match name {
                "AlwaysAllow" => Authorizer::AlwaysAllow,
                "AlwaysDeny" => Authorizer::AlwaysDeny,
                "Node" => Authorizer::Node,
                "RBAC" => Authorizer::rbac(),
                "Webhook" => Authorizer::Webhook(webhook.take().ok_or(
                    "the Webhook authorization mode needs --authorization-webhook-config-file",
                )?),
                other => {
                    return Err(format!(
                        "unknown authorization mode {other:?} (AlwaysAllow, AlwaysDeny, Node, RBAC, Webhook)"
                    ));
                }
            });
        }
        if chain.is_empty() {
            return Err("--authorization-mode names no authorizer".into());
        }
        if webhook.is_some() {
            return Err("--authorization-webhook-config-file is set but Webhook is not an authorization mode".into());
        }
        Ok(Mode(Arc::new(chain)))
    }

    /// Whether everyone may do everything.
    pub fn allows_everything(&self) -> bool {
        matches!(self.0.first(), Some(Authorizer::AlwaysAllow))
    }

    /// What the authorizers say about `user` doing what `attrs` describe.
    pub async fn decide(
        &self,
        registry: &Registry,
        user: &UserInfo,
        attrs: &Attributes,
    ) -> Decision {
        if user.groups.iter().any(|g| g == "system:masters") {
            return Decision::Allow;
        }
        for a in self.0.iter() {
            let d = match a {
                Authorizer::AlwaysAllow => Decision::Allow,
                Authorizer::AlwaysDeny => Decision::Deny(String::new()),
                Authorizer::Node => node::decide(registry, user, attrs).await,
                Authorizer::Rbac(cache) => match cache.allows(registry, user, attrs).await {
                    true => Decision::Allow,
                    false => Decision::NoOpinion,
                },
                Authorizer::Webhook(w) => w.decide(user, attrs).await,
            };
            if d != Decision::NoOpinion {
                return d;
            }
        }
        Decision::Deny(String::new())
    }

    /// Whether RBAC is among the authorizers.
    pub fn has_rbac(&self) -> bool {
        self.0.iter().any(|a| matches!(a, Authorizer::Rbac(_)))
    }

    /// Every RBAC rule that applies to `user`: cluster-wide ones, and those of `ns` (if
    /// any); from the RBAC authorizer's cache when RBAC is among the authorizers.
    pub async fn rbac_rules(
        &self,
        registry: &Registry,
        user: &UserInfo,
        ns: &str,
    ) -> Arc<Vec<serde_json::Value>> {
        let cache = self.0.iter().find_map(|a| match a {
            Authorizer::Rbac(cache) => Some(cache),
            _ => None,
        });
        match cache {
            Some(cache) => cache.rules(registry, user, ns).await,
            None => Arc::new(rbac::rules_for(registry, user, ns).await),
        }
    }
}

/// What the authorizers say about `user` doing what `attrs` describe.
pub async fn decide(state: &AppState, user: &UserInfo, attrs: &Attributes) -> Decision {
    state
        .authorization
        .decide(&state.registry, user, attrs)
        .await
}

/// Whether `user` may do what `attrs` describe.
pub async fn allowed(state: &AppState, user: &UserInfo, attrs: &Attributes) -> bool {
    decide(state, user, attrs).await == Decision::Allow
}

fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> Response {
    let mut message = a.forbidden_message(&user.name);
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    let mut details = json!({"kind": a.resource});
    if !a.group.is_empty() {
        details["group"] = json!(a.group);
    }
    if !a.name.is_empty() {
        details["name"] = json!(a.name);
    }
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Forbidden", "details": details, "code": 403});
    json_response(StatusCode::FORBIDDEN, &body, &[]).into_response()
}

/// Authorize every request (after authentication), impersonation first.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_else(UserInfo::anonymous);
    let user = match impersonate::effective_user(&state, &caller, req.headers()).await {
        Ok(u) => u,
        Err(impersonate::Refusal::Forbidden(a)) => return forbidden(&caller, &a, ""),
        Err(impersonate::Refusal::BadRequest(why)) => {
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": why, "reason": "BadRequest", "code": 400});
            return json_response(StatusCode::BAD_REQUEST, &body, &[]).into_response();
        }
    };
    req.extensions_mut().insert(user.clone());
    if state.authorization.allows_everything() {
        return next.run(req).await;
    }
    let attrs = Attributes::of(&state.registry, &req);
    match decide(&state, &user, &attrs).await {
        Decision::Allow => next.run(req).await,
        Decision::Deny(reason) => forbidden(&user, &attrs, &reason),
        Decision::NoOpinion => forbidden(&user, &attrs, ""),
    }
}
