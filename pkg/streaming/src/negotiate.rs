//! Upgrade negotiation: which transport the client asked for (WebSocket or SPDY/3.1), the
//! subprotocol both sides support, and the 101 (or 400/403) responses, worded as the
//! kubelet's (apimachinery's `httpstream.Handshake`, apiserver's `wsstream`) are.

use axum::body::Body;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// `X-Stream-Protocol-Version`: the SPDY subprotocol header (request and response).
pub const STREAM_PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
/// `X-Accepted-Stream-Protocol-Versions`: what the server accepts (on a 403).
pub const ACCEPTED_STREAM_PROTOCOL_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";
/// The WebSocket subprotocol of SPDY port-forwarding tunnelled in WebSocket (kubectl 1.31+).
pub const SPDY_TUNNEL_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

fn header_contains(headers: &HeaderMap, name: http::HeaderName, needle: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains(needle))
}

/// Comma-separated values of a (possibly repeated) header, trimmed, empty ones dropped.
pub fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// A WebSocket upgrade request (`Connection: upgrade`, `Upgrade: websocket`).
pub fn is_websocket(headers: &HeaderMap) -> bool {
    header_contains(headers, CONNECTION, "upgrade")
        && headers
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A SPDY/3.1 upgrade request (`Connection: upgrade`, `Upgrade: SPDY/3.1`).
pub fn is_spdy(headers: &HeaderMap) -> bool {
    header_contains(headers, CONNECTION, "upgrade") && header_contains(headers, UPGRADE, "spdy/3.1")
}

/// A plain-text error response.
pub fn error_response(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Body::from(format!("{}\n", msg.into())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn go_list(items: &[impl AsRef<str>]) -> String {
    let v: Vec<&str> = items.iter().map(|s| s.as_ref()).collect();
    format!("[{}]", v.join(" "))
}

/// Picks the first client subprotocol the server supports (client order), as
/// `wsstream` does; no subprotocol requested means `""` (which `supported` may list).
/// Returns the key and the chosen subprotocol, or the 400/403 response.
pub fn negotiate_websocket(
    headers: &HeaderMap,
    supported: &[&str],
) -> Result<(String, String), Box<Response<Body>>> {
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()) else {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing Sec-WebSocket-Key",
        )));
    };
    let mut requested = header_list(headers, "Sec-WebSocket-Protocol");
    if requested.is_empty() {
        requested.push(String::new());
    }
    match requested.iter().find(|p| supported.contains(&p.as_str())) {
        Some(p) => Ok((key.to_string(), p.clone())),
        None => Err(Box::new(error_response(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: requested protocol(s) are not supported: {}; supports {}",
                go_list(&requested),
                go_list(supported)
            ),
        ))),
    }
}

/// The 101 of a WebSocket upgrade.
pub fn websocket_response(key: &str, protocol: &str) -> Response<Body> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    if !protocol.is_empty()
        && let Ok(v) = HeaderValue::from_str(protocol)
    {
        h.insert(SEC_WEBSOCKET_PROTOCOL, v);
    }
    resp
}

/// `httpstream.Handshake`: the first `X-Stream-Protocol-Version` the client lists that the
/// server supports; none listed is a 400, none in common a 403 listing what the server
/// accepts in `X-Accepted-Stream-Protocol-Versions`.
pub fn negotiate_spdy(
    headers: &HeaderMap,
    supported: &[&str],
) -> Result<String, Box<Response<Body>>> {
    if !is_spdy(headers) {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        )));
    }
    let requested = header_list(headers, STREAM_PROTOCOL_VERSION);
    if requested.is_empty() {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade: {STREAM_PROTOCOL_VERSION} is required"),
        )));
    }
    if let Some(p) = requested.iter().find(|p| supported.contains(&p.as_str())) {
        return Ok(p.clone());
    }
    let mut resp = error_response(
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {}, server accepts {}",
            go_list(&requested),
            go_list(supported)
        ),
    );
    for p in supported {
        if let Ok(v) = HeaderValue::from_str(p) {
            resp.headers_mut()
                .append(ACCEPTED_STREAM_PROTOCOL_VERSIONS, v);
        }
    }
    Err(Box::new(resp))
}

/// The 101 of a SPDY/3.1 upgrade (`protocol` empty: no `X-Stream-Protocol-Version`).
pub fn spdy_response(protocol: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if !protocol.is_empty()
        && let Ok(v) = HeaderValue::from_str(protocol)
    {
        h.insert(STREAM_PROTOCOL_VERSION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn spdy_negotiation() {
        let sup = ["v4.channel.k8s.io", "v3.channel.k8s.io"];
        let h = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            (
                "x-stream-protocol-version",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
        ]);
        assert_eq!(negotiate_spdy(&h, &sup).unwrap(), "v4.channel.k8s.io");
        let h = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v9"),
        ]);
        let r = negotiate_spdy(&h, &sup).unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()
                .get_all(ACCEPTED_STREAM_PROTOCOL_VERSIONS)
                .iter()
                .count(),
            2
        );
        let h = headers(&[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]);
        assert_eq!(
            negotiate_spdy(&h, &sup).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn websocket_negotiation() {
        let sup = ["", "v4.channel.k8s.io", "v5.channel.k8s.io"];
        let h = headers(&[("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]);
        assert_eq!(negotiate_websocket(&h, &sup).unwrap().1, "");
        let h = headers(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
        ]);
        assert_eq!(
            negotiate_websocket(&h, &sup).unwrap().1,
            "v5.channel.k8s.io"
        );
        let h = headers(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "v9.channel.k8s.io"),
        ]);
        assert_eq!(
            negotiate_websocket(&h, &sup).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        let r = websocket_response("dGhlIHNhbXBsZSBub25jZQ==", "");
        assert_eq!(
            r.headers()[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(r.headers().get(SEC_WEBSOCKET_PROTOCOL).is_none());
    }
}
