//! Sending a client's request on to a backend (the API server to a kubelet, a pod or a
//! service's endpoint; the kubelet to a CRI runtime's streaming server) and its answer
//! back, upgrade-aware as kube-apiserver's UpgradeAwareHandler: a request to
//! upgrade the connection (WebSocket, SPDY) is sent with its Upgrade headers, and when the
//! backend answers 101 both upgraded connections are joined byte for byte until either
//! side closes. Other requests and answers are streamed, hop-by-hop headers dropped.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper::client::conn::http1::SendRequest;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether the request asks to upgrade its connection.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        && headers.contains_key(header::UPGRADE)
}

/// The request's headers as the backend gets them: no credentials of the client's (it was
/// authenticated here), no hop-by-hop headers unless upgrading, the backend's Host.
fn outgoing_headers(headers: &HeaderMap, host: &str, upgrade: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        let credential = n == "authorization" || n.starts_with("impersonate-");
        let hop = HOP_BY_HOP.contains(&n) && !(upgrade && (n == "connection" || n == "upgrade"));
        if !credential && !hop && n != "host" {
            out.append(name.clone(), value.clone());
        }
    }
    if let Ok(h) = HeaderValue::from_str(host) {
        out.insert(header::HOST, h);
    }
    out
}

/// An HTTP/1.1 connection (upgrades too) over plain TCP to `addr`.
pub async fn connect(addr: std::net::SocketAddr) -> Result<SendRequest<Body>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: connect: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "proxied connection ended");
        }
    });
    Ok(sender)
}

/// Why a request could not be sent on.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request could not be made (a bad path).
    #[error("{0}")]
    Request(String),
    /// The backend did not answer.
    #[error("error trying to reach service: {0}")]
    Unreachable(String),
    #[error("the backend upgraded a connection the client cannot")]
    NoUpgrade,
}

/// Send `req` to the backend behind `sender` as `path_and_query` (Host `host`); stream or
/// join back what it answers.
pub async fn forward(
    mut sender: SendRequest<Body>,
    mut req: Request,
    path_and_query: &str,
    host: &str,
) -> Result<Response, ProxyError> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade
        .then(|| req.extensions_mut().remove::<OnUpgrade>())
        .flatten();
    let (parts, body) = req.into_parts();
    let mut out = http::Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query)
        .body(if upgrade { Body::empty() } else { body })
        .map_err(|e| ProxyError::Request(format!("proxying to {path_and_query:?}: {e}")))?;
    *out.headers_mut() = outgoing_headers(&parts.headers, host, upgrade);
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| ProxyError::Unreachable(e.to_string()))?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client) = client_upgrade else {
            return Err(ProxyError::NoUpgrade);
        };
        let backend = hyper::upgrade::on(&mut resp);
        let mut answer = Response::new(Body::empty());
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *answer.headers_mut() = resp.headers().clone();
        tokio::spawn(join(client, backend));
        return Ok(answer);
    }
    let (parts, body) = resp.into_parts();
    let mut answer = Response::new(Body::new(body));
    *answer.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(answer)
}

/// Copy both ways between the client's and the backend's upgraded connections until one
/// side closes (then the other is closed too).
async fn join(client: OnUpgrade, backend: OnUpgrade) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "an upgraded connection was lost before it started");
            return;
        }
    };
    let (mut a, mut b) = (TokioIo::new(client), TokioIo::new(backend));
    match tokio::io::copy_bidirectional(&mut a, &mut b).await {
        Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(error = %e, "upgraded connection ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_here() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert("impersonate-user", HeaderValue::from_static("bob"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.insert(header::HOST, HeaderValue::from_static("api:6443"));
        assert!(is_upgrade(&h));
        let up = outgoing_headers(&h, "10.0.0.1:10250", true);
        assert_eq!(up.get(header::HOST).unwrap(), "10.0.0.1:10250");
        assert_eq!(up.get(header::UPGRADE).unwrap(), "SPDY/3.1");
        assert!(up.get(header::AUTHORIZATION).is_none());
        assert!(up.get("impersonate-user").is_none());
        assert_eq!(
            up.get("x-stream-protocol-version").unwrap(),
            "v4.channel.k8s.io"
        );
        let plain = outgoing_headers(&h, "pod", false);
        assert!(plain.get(header::UPGRADE).is_none());
        assert!(plain.get(header::CONNECTION).is_none());
    }
}
