//! The handler chain around every route, in one function: panic recovery, request logging,
//! body size limit.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::Predicate;
use tower_http::trace::TraceLayer;

use crate::status::json_response;

/// kube-apiserver refuses request bodies over 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Responses at least this large are gzipped when the client accepts it (kube-apiserver's
/// threshold); streams (watch) have no known size and are never compressed.
const GZIP_ABOVE: u64 = 128 * 1024;

#[derive(Clone, Copy)]
struct LargeKnownSize;

impl Predicate for LargeKnownSize {
    fn should_compress<B: http_body::Body>(&self, response: &axum::http::Response<B>) -> bool {
        response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n >= GZIP_ABOVE)
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "an error on the server has prevented the request from succeeding",
        "reason": "InternalError", "code": 500});
    json_response(axum::http::StatusCode::INTERNAL_SERVER_ERROR, &body, &[]).into_response()
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Whether the client accepts only protobuf (so a JSON answer must be re-encoded).
fn protobuf_only(accept: &str) -> bool {
    let types: Vec<&str> = accept
        .split(',')
        .map(|m| m.split(';').next().unwrap_or("").trim())
        .collect();
    types.contains(&PROTOBUF)
        && !types.iter().any(|t| {
            matches!(
                *t,
                "application/json" | "*/*" | "application/*" | "application/yaml"
            )
        })
}

/// Answer in protobuf when that is all the client takes.
async fn negotiate(req: Request, next: Next) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let resp = next.run(req).await;
    if !protobuf_only(&accept) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let sized = http_body::Body::size_hint(resp.body()).exact().is_some();
    if !is_json {
        return resp;
    }
    let not_acceptable = |why: String| {
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": why, "reason": "NotAcceptable", "code": 406});
        json_response(StatusCode::NOT_ACCEPTABLE, &body, &[])
    };
    if !sized {
        return protobuf_stream(resp);
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let encoded = serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|v| minik_api::proto::encode_envelope(&v).map_err(|e| e.to_string()));
    match encoded {
        Ok(pb) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(PROTOBUF),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(pb))
        }
        Err(e) => not_acceptable(format!("this response has no protobuf form: {e}")),
    }
}

/// A JSON watch stream (one event per line) re-framed as a protobuf watch stream.
fn protobuf_stream(resp: Response) -> Response {
    use futures::StreamExt;
    let (mut parts, body) = resp.into_parts();
    let frames = body
        .into_data_stream()
        .scan(Vec::new(), |pending: &mut Vec<u8>, chunk| {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return futures::future::ready(Some(Err(e))),
            };
            pending.extend_from_slice(&chunk);
            let mut out = Vec::new();
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let encoded = serde_json::from_slice::<serde_json::Value>(&line)
                    .map_err(|e| e.to_string())
                    .and_then(|ev| {
                        minik_api::proto::encode_watch_event(&ev).map_err(|e| e.to_string())
                    });
                match encoded {
                    Ok(frame) => out.extend(frame),
                    Err(e) => tracing::warn!("watch event has no protobuf form: {e}"),
                }
            }
            futures::future::ready(Some(Ok(bytes::Bytes::from(out))))
        });
    parts.headers.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/vnd.kubernetes.protobuf;stream=watch"),
    );
    Response::from_parts(parts, Body::from_stream(frames))
}

pub fn wrap(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(negotiate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(LargeKnownSize),
        )
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
}
