//! Authorization: RBAC (Roles, ClusterRoles and their bindings, read from the watch cache),
//! with system:masters allowed everything, as kube-apiserver's `--authorization-mode=RBAC`.
//! A denied request is 403 with Kubernetes' message. SelfSubjectAccessReview answers
//! `kubectl auth can-i`.

mod attributes;
mod impersonate;
mod rbac;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::authn::UserInfo;
use crate::status::json_response;
pub use attributes::Attributes;

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

/// POST authorization.k8s.io/v1 selfsubjectaccessreviews (`kubectl auth can-i`).
pub async fn self_subject_access_review(
    State(state): State<AppState>,
    user: Option<axum::Extension<UserInfo>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let user = user.map(|u| u.0).unwrap_or_else(UserInfo::anonymous);
    // kubectl sends it in protobuf.
    let protobuf = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"));
    let review = match protobuf {
        true => minik_api::proto::decode_envelope(&body).map_err(|e| e.to_string()),
        false => serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string()),
    };
    let Ok(review) = review else {
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "the body is not a SelfSubjectAccessReview",
            "reason": "BadRequest", "code": 400});
        return json_response(StatusCode::BAD_REQUEST, &body, &[]).into_response();
    };
    let attrs = Attributes::from_review(&review["spec"]);
    let ok = allowed(&state, &user, &attrs).await;
    let mut out = review.clone();
    out["status"] = json!({"allowed": ok});
    if !ok {
        out["status"]["reason"] = json!("");
    }
    json_response(StatusCode::CREATED, &out, &[]).into_response()
}
