//! Watch responses: a chunked stream of JSON lines.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{FutureExt, StreamExt};
use minik_registry::{ApiError, Lean, WatchParams};

use super::{Request, selectors, view};
use crate::AppState;
use crate::metrics::{WatchGuard, WatchLabels};
use crate::path::Target;
use crate::view::View;

pub(super) async fn watch(
    state: &AppState,
    t: &Target,
    mut req: Request,
) -> Result<Response, ApiError> {
    let req_ws = req.ws.take();
    let req = &req;
    let (label_selector, field_selector) = selectors(req)?;
    let timeout = match req.param("timeoutSeconds") {
        Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
            ApiError::BadRequest(format!("invalid timeoutSeconds {s:?}"))
        })?)),
        None => None,
    };
    let params = WatchParams {
        resource_version: req.param("resourceVersion").map(str::to_string),
        label_selector,
        field_selector,
        allow_bookmarks: req.flag("allowWatchBookmarks"),
        send_initial_events: req.flag("sendInitialEvents"),
        timeout,
        ..Default::default()
    };
    let stream = state
        .registry
        .watch(t.info, t.namespace.as_deref(), params)
        .await?;
    let view = view(t, req);
    let info = t.info;
    let guard = WatchGuard::new(
        &state.metrics,
        WatchLabels {
            group: info.group.into(),
            version: info.version.into(),
            kind: info.kind.into(),
        },
    );
    // The server's own components get their events without managedFields.
    let lean = req.in_process;
    let line_of = move |event: &minik_registry::WatchEvent| -> Bytes {
        match (&view, lean) {
            (View::Object, false) => event.json_line(),
            (View::Object, true) => event.lean_json_line(),
            (view, false) => event.line_with(&view.event(info, event.kind, &event.object)),
            (view, true) => event.line_with(&Lean(&view.event(info, event.kind, &event.object))),
        }
    };
    if let Some(ws) = req_ws {
        return Ok(websocket(ws, stream, guard, line_of));
    }
    let body = futures::stream::unfold((stream, guard), move |(mut s, guard)| {
        let line_of = line_of.clone();
        async move {
            let event = s.next().await?;
            let first = line_of(&event);
            // A watcher that is behind gets what is already waiting in one write.
            let mut more = Vec::new();
            while more.len() < 64 {
                match s.next().now_or_never() {
                    Some(Some(e)) => more.push(line_of(&e)),
                    _ => break,
                }
            }
            let chunk = if more.is_empty() {
                first
            } else {
                let mut buf = first.to_vec();
                more.iter().for_each(|l| buf.extend_from_slice(l));
                Bytes::from(buf)
            };
            Some((Ok::<_, std::io::Error>(chunk), (s, guard)))
        }
    })
    .boxed();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// Subprotocols for watch over WebSocket: JSON events in text frames, or base64 of them.
const PROTOCOLS: [&str; 2] = ["base64.binary.k8s.io", "binary.k8s.io"];

/// The same events as WebSocket messages, one per event.
fn websocket(
    ws: WebSocketUpgrade,
    mut stream: minik_registry::WatchStream,
    guard: WatchGuard,
    line_of: impl Fn(&minik_registry::WatchEvent) -> Bytes + Send + 'static,
) -> Response {
    ws.protocols(PROTOCOLS)
        .on_upgrade(move |mut socket| async move {
            let _guard = guard;
            let base64 = socket.protocol().is_some_and(|p| p == PROTOCOLS[0]);
            loop {
                let event = tokio::select! {
                    e = stream.next() => e,
                    got = socket.recv() => match got {
                        // Pings are answered by the library; a close or an error ends the watch.
                        Some(Ok(Message::Close(_)) | Err(_)) | None => None,
                        Some(Ok(_)) => continue,
                    },
                };
                let Some(event) = event else { break };
                let line = line_of(&event);
                let message = if base64 {
                    Message::Text(STANDARD.encode(&line).into())
                } else {
                    Message::Text(String::from_utf8_lossy(&line).trim_end().to_string().into())
                };
                if socket.send(message).await.is_err() {
                    break;
                }
            }
            let _ = socket.send(Message::Close(None)).await;
        })
}
