//! Errors as `metav1.Status` responses: the one place registry errors become HTTP.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use minik_registry::ApiError;
use serde_json::{Value, json};

/// A `metav1.Status` of failure.
pub fn status_body(err: &ApiError) -> (StatusCode, Value) {
    let (code, reason) = err.code_and_reason();
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": err.to_string(),
        "reason": reason,
        "code": code,
    });
    let details = match err {
        ApiError::NotFound {
            group,
            resource,
            name,
        }
        | ApiError::AlreadyExists {
            group,
            resource,
            name,
        }
        | ApiError::Conflict {
            group,
            resource,
            name,
            ..
        }
        | ApiError::Forbidden {
            group,
            resource,
            name,
            ..
        } => Some(json!({"name": name, "group": group, "kind": resource})),
        ApiError::ApplyConflict { causes, .. } => Some(json!({
            "causes": causes.iter().map(|c| json!({
                "reason": c.reason, "message": c.message, "field": c.field
            })).collect::<Vec<_>>(),
        })),
        ApiError::TooManyRequestsBecause { causes, .. } => Some(json!({
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message}))
                .collect::<Vec<_>>(),
        })),
        ApiError::Invalid {
            group,
            kind,
            name,
            causes,
        } => Some(json!({
            "name": name, "group": group, "kind": kind,
            "causes": causes.iter().map(|c| json!({
                "reason": c.reason, "message": c.message, "field": c.field
            })).collect::<Vec<_>>(),
        })),
        _ => None,
    };
    if let Some(d) = details {
        body["details"] = d;
    }
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}

/// An error response.
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (code, body) = status_body(&self.0);
        json_response(code, &body, &[])
    }
}

/// A JSON response with optional `Warning` headers.
pub fn json_response<T: serde::Serialize + ?Sized>(
    code: StatusCode,
    body: &T,
    warnings: &[String],
) -> Response {
    let mut resp = (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response();
    for w in warnings {
        if let Some(v) = warning(w) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// A `Warning: 299 - "text"` header value, quotes and backslashes escaped as RFC 9110
/// quoted strings have them (and as client-go reads them).
pub fn warning(text: &str) -> Option<axum::http::HeaderValue> {
    let quoted: String = text
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if c.is_ascii_graphic() || c == ' ' => vec![c],
            _ => vec!['?'],
        })
        .collect();
    format!("299 - \"{quoted}\"").parse().ok()
}

/// 404 for a path no route knows.
pub async fn not_found_path(uri: axum::http::Uri) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("the server could not find the requested resource (path {})", uri.path()),
        "reason": "NotFound", "details": {}, "code": 404,
    });
    json_response(StatusCode::NOT_FOUND, &body, &[])
}
