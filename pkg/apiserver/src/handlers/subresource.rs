//! Subresources other than status.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use minik_registry::ApiError;
use serde_json::json;

use super::{Request, body, respond_object};
use crate::AppState;
use crate::path::Target;
use crate::status::json_response;

/// Subresources other than status, each a small operation on its parent.
pub(super) async fn subresource(
    state: &AppState,
    t: &Target,
    sub: &str,
    req: &Request,
) -> Result<Response, ApiError> {
    let reg = &state.registry;
    let ns = t.namespace.as_deref();
    let name = t.name.as_deref().unwrap_or_default();
    let success = |code: StatusCode| {
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()});
        json_response(code, &body, &[])
    };
    match (sub, &req.method) {
        ("scale", &Method::GET) => Ok(json_response(
            StatusCode::OK,
            &reg.get_scale(t.info, ns, name).await?,
            &[],
        )),
        ("scale", &Method::PUT) => {
            let scale = reg
                .update_scale(t.info, ns, name, body(req)?, &super::write_params(req))
                .await?;
            Ok(json_response(StatusCode::OK, &scale, &[]))
        }
        ("binding", &Method::POST) => {
            reg.bind(
                ns.unwrap_or_default(),
                name,
                &body(req)?,
                &super::write_params(req),
            )
            .await?;
            Ok(success(StatusCode::CREATED))
        }
        ("eviction", &Method::POST) => {
            reg.evict(
                ns.unwrap_or_default(),
                name,
                &body(req)?,
                &super::write_params(req),
            )
            .await?;
            Ok(success(StatusCode::CREATED))
        }
        ("log", &Method::GET) => {
            crate::pod_logs::logs(state, ns.unwrap_or_default(), name, &req.params).await
        }
        ("ephemeralcontainers", &Method::GET) => {
            let pod = reg.get(t.info, ns, name).await?;
            Ok(respond_object(t, req, StatusCode::OK, pod, &[]))
        }
        ("ephemeralcontainers", &Method::PUT) => {
            let pod = reg
                .update_ephemeral_containers(
                    ns.unwrap_or_default(),
                    name,
                    &body(req)?,
                    &super::write_params(req),
                )
                .await?;
            Ok(respond_object(t, req, StatusCode::OK, pod, &[]))
        }
        ("approval", &Method::PUT) => {
            let csr = reg
                .update_approval(name, &body(req)?, &super::write_params(req))
                .await?;
            Ok(respond_object(t, req, StatusCode::OK, csr, &[]))
        }
        ("approval", &Method::GET) => {
            let csr = reg.get(t.info, ns, name).await?;
            Ok(respond_object(t, req, StatusCode::OK, csr, &[]))
        }
        ("token", &Method::POST) => {
            super::token::token_request(state, ns.unwrap_or_default(), name, &body(req)?).await
        }
        ("finalize", &Method::PUT) => {
            let obj = reg.finalize_namespace(name, &body(req)?).await?;
            Ok(respond_object(t, req, StatusCode::OK, obj, &[]))
        }
        ("scale" | "ephemeralcontainers", &Method::PATCH) => super::patch(state, t, req).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}
