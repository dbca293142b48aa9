//! The review APIs: TokenReview (who a token is), SubjectAccessReview and its local and self
//! forms (may this user do this: `kubectl auth can-i`), and SelfSubjectRulesReview (what may
//! I do: `kubectl auth can-i --list`). Bodies come as JSON or protobuf.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Attributes, allowed};
use crate::AppState;
use crate::authn::{PeerCerts, UserInfo};
use crate::status::json_response;

type Caller = Option<axum::Extension<UserInfo>>;

fn caller(user: Caller) -> UserInfo {
    user.map(|u| u.0).unwrap_or_else(UserInfo::anonymous)
}

/// A review body, JSON or protobuf.
fn review(headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"));
    match protobuf {
        true => minik_api::proto::decode_envelope(body).map_err(|e| e.to_string()),
        false => serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()),
    }
}

/// 400 for a body that is not the review it should be.
fn bad(kind: &str, why: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("the body is not a {kind}: {why}"),
        "reason": "BadRequest", "code": 400});
    json_response(StatusCode::BAD_REQUEST, &body, &[]).into_response()
}

fn created(mut review: Value, status: Value) -> Response {
    review["status"] = status;
    if review.pointer("/metadata/creationTimestamp").is_none() {
        review["metadata"] = json!({"creationTimestamp": null});
    }
    json_response(StatusCode::CREATED, &review, &[]).into_response()
}

async fn decide(state: &AppState, user: &UserInfo, spec: &Value) -> Value {
    let ok = allowed(state, user, &Attributes::from_review(spec)).await;
    json!({"allowed": ok})
}

/// POST authorization.k8s.io/v1 selfsubjectaccessreviews.
pub async fn self_subject_access(
    State(state): State<AppState>,
    user: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = match review(&headers, &body) {
        Ok(r) => r,
        Err(e) => return bad("SelfSubjectAccessReview", e),
    };
    let status = decide(&state, &caller(user), &r["spec"]).await;
    created(r, status)
}

/// The user a SubjectAccessReview asks about.
fn subject(spec: &Value) -> UserInfo {
    UserInfo {
        name: spec["user"].as_str().unwrap_or("").to_string(),
        uid: spec["uid"].as_str().unwrap_or("").to_string(),
        groups: spec["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
    }
}

/// POST authorization.k8s.io/v1 subjectaccessreviews.
pub async fn subject_access(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = match review(&headers, &body) {
        Ok(r) => r,
        Err(e) => return bad("SubjectAccessReview", e),
    };
    let status = decide(&state, &subject(&r["spec"]), &r["spec"]).await;
    created(r, status)
}

/// POST authorization.k8s.io/v1 namespaces/<ns>/localsubjectaccessreviews.
pub async fn local_subject_access(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut r = match review(&headers, &body) {
        Ok(r) => r,
        Err(e) => return bad("LocalSubjectAccessReview", e),
    };
    if let Some(attrs) = r.pointer_mut("/spec/resourceAttributes") {
        attrs["namespace"] = json!(ns);
    }
    let status = decide(&state, &subject(&r["spec"]), &r["spec"]).await;
    created(r, status)
}

/// POST authentication.k8s.io/v1 tokenreviews.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = match review(&headers, &body) {
        Ok(r) => r,
        Err(e) => return bad("TokenReview", e),
    };
    let token = r
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut asked = HeaderMap::new();
    if let Ok(v) = format!("Bearer {token}").parse() {
        asked.insert(header::AUTHORIZATION, v);
    }
    let found = state
        .authenticator
        .authenticate(&state.registry, &asked, &PeerCerts::default())
        .await;
    let status = match found {
        Ok(u) if !token.is_empty() => json!({"authenticated": true,
            "user": {"username": u.name, "uid": u.uid, "groups": u.groups},
            "audiences": r.pointer("/spec/audiences").cloned().unwrap_or(json!([]))}),
        _ => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    created(r, status)
}

/// POST authorization.k8s.io/v1 selfsubjectrulesreviews: the rules that apply to the
/// caller in a namespace.
pub async fn self_subject_rules(
    State(state): State<AppState>,
    user: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = match review(&headers, &body) {
        Ok(r) => r,
        Err(e) => return bad("SelfSubjectRulesReview", e),
    };
    let user = caller(user);
    let ns = r
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let everything = state.authorization.allows_everything()
        || user.groups.iter().any(|g| g == "system:masters");
    let rules = match everything {
        true => vec![
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
        ],
        false => state
            .authorization
            .rbac_rules(&state.registry, &user, ns)
            .await
            .to_vec(),
    };
    let (resource, non_resource): (Vec<Value>, Vec<Value>) = rules
        .into_iter()
        .partition(|r| r.get("nonResourceURLs").is_none());
    let clean = |rs: Vec<Value>| -> Vec<Value> {
        rs.into_iter()
            .map(|mut r| {
                if let Some(m) = r.as_object_mut() {
                    m.retain(|k, v| !v.is_null() && k != "apiVersion");
                }
                r
            })
            .collect()
    };
    created(
        r,
        json!({"resourceRules": clean(resource), "nonResourceRules": clean(non_resource),
            "incomplete": false}),
    )
}
