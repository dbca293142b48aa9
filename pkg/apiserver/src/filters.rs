//! The handler chain around every route, in one function: panic recovery, request logging,
//! body size limit.

use axum::Router;
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

pub fn wrap(router: Router) -> Router {
    router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(LargeKnownSize),
        )
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
}
