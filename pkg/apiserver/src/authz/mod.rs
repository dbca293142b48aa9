//! Authorization: RBAC (Roles, ClusterRoles and their bindings, read from the watch cache),
//! with system:masters allowed everything, as kube-apiserver's `--authorization-mode=RBAC`.
//! A denied request is 403 with Kubernetes' message. SelfSubjectAccessReview answers
//! `kubectl auth can-i`.

mod attributes;
mod escalation;
mod impersonate;
mod rbac;
pub mod reviews;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::authn::UserInfo;
use crate::status::json_response;
pub use attributes::Attributes;
pub use escalation::EscalationGuard;

/// Which authorizer decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Everything is allowed (in-process tests; `--authorization-mode=AlwaysAllow`).
    #[default]
    AlwaysAllow,
    Rbac,
}

/// Whether `user` may do what `attrs` describe.
pub async fn allowed(state: &AppState, user: &UserInfo, attrs: &Attributes) -> bool {
    match state.authorization {
        Mode::AlwaysAllow => true,
        Mode::Rbac => {
            user.groups.iter().any(|g| g == "system:masters")
                || rbac::allows(&state.registry, user, attrs).await
        }
    }
}

fn forbidden(user: &UserInfo, a: &Attributes) -> Response {
    let message = a.forbidden_message(&user.name);
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
        Err(impersonate::Refusal::Forbidden(a)) => return forbidden(&caller, &a),
        Err(impersonate::Refusal::BadRequest(why)) => {
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": why, "reason": "BadRequest", "code": 400});
            return json_response(StatusCode::BAD_REQUEST, &body, &[]).into_response();
        }
    };
    req.extensions_mut().insert(user.clone());
    if state.authorization == Mode::AlwaysAllow {
        return next.run(req).await;
    }
    let attrs = Attributes::of(&state.registry, &req);
    if allowed(&state, &user, &attrs).await {
        next.run(req).await
    } else {
        forbidden(&user, &attrs)
    }
}
