//! Port-forward, server side, three ways in: SPDY/3.1 (`portforward.k8s.io`: a data and
//! an error stream per connection, paired by their `requestID` header); SPDY tunnelled in
//! WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+); and the
//! WebSocket channel protocol (`?port=8080,9090`: channel 2i data and 2i+1 error of the
//! i-th port, each starting with the port as 2 little-endian bytes).

mod spdy;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::command::form_urlencoded_pairs;
use crate::negotiate::{
    SPDY_TUNNEL_PORT_FORWARD, error_response, header_list, is_websocket, negotiate_spdy,
    negotiate_websocket, spdy_response, websocket_response,
};
use crate::ws::Codec;
use crate::{BoxFuture, Duplex};

/// The SPDY port-forward subprotocol.
const SPDY_PROTOCOL: &str = "portforward.k8s.io";
/// WebSocket channel subprotocols for port-forward.
const WS_PROTOCOLS: &[&str] = &[
    "",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// After one direction of a forwarded connection ends, how long the other may go on
/// (containerd's port-forward waits one second).
const HALF_CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(crate) type Dial =
    Arc<dyn Fn(u16) -> BoxFuture<'static, std::io::Result<Box<dyn Duplex>>> + Send + Sync>;

/// Serves a port-forward request (see the module docs); returns the 101 or the 400/403.
/// A failed dial writes the dial error's text on that connection's error stream.
pub async fn serve_port_forward<D>(mut req: http::Request<Body>, dial: D) -> http::Response<Body>
where
    D: Fn(u16) -> BoxFuture<'static, std::io::Result<Box<dyn Duplex>>> + Send + Sync + 'static,
{
    let dial: Dial = Arc::new(dial);
    let upgrade = hyper::upgrade::on(&mut req);
    let headers = req.headers();
    if !is_websocket(headers) {
        let protocol = match negotiate_spdy(headers, &[SPDY_PROTOCOL]) {
            Ok(p) => p,
            Err(resp) => return *resp,
        };
        tokio::spawn(async move {
            match upgrade.await {
                Ok(up) => spdy::serve(TokioIo::new(up), dial).await,
                Err(e) => tracing::warn!(error = %e, "port-forward: spdy upgrade failed"),
            }
        });
        return spdy_response(&protocol);
    }
    if header_list(headers, "Sec-WebSocket-Protocol")
        .iter()
        .any(|p| p == SPDY_TUNNEL_PORT_FORWARD)
    {
        let (key, protocol) = match negotiate_websocket(headers, &[SPDY_TUNNEL_PORT_FORWARD]) {
            Ok(v) => v,
            Err(resp) => return *resp,
        };
        tokio::spawn(async move {
            match upgrade.await {
                Ok(up) => spdy::serve_tunnel(TokioIo::new(up), dial).await,
                Err(e) => tracing::warn!(error = %e, "port-forward: websocket upgrade failed"),
            }
        });
        return websocket_response(&key, &protocol);
    }
    let ports = match ports_from_query(req.uri().query().unwrap_or_default()) {
        Ok(p) => p,
        Err(msg) => return error_response(http::StatusCode::BAD_REQUEST, msg),
    };
    let (key, protocol) = match negotiate_websocket(req.headers(), WS_PROTOCOLS) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let codec = Codec::of(&protocol);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => ws::serve(TokioIo::new(up), codec, ports, dial).await,
            Err(e) => tracing::warn!(error = %e, "port-forward: websocket upgrade failed"),
        }
    });
    websocket_response(&key, &protocol)
}

/// The ports of a WebSocket port-forward: `port` (as the kubelet reads it) or `ports`
/// (as clients send it to the API server), repeated or comma-separated.
pub(crate) fn ports_from_query(query: &str) -> Result<Vec<u16>, String> {
    let values: Vec<String> = form_urlencoded_pairs(query)
        .into_iter()
        .filter(|(k, _)| k == "port" || k == "ports")
        .map(|(_, v)| v)
        .collect();
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for v in values {
        if v.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in v.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|e| format!("unable to parse {v:?} as a port: {e}"))?;
            if port < 1 {
                return Err(format!("port {v:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// Copies between a forwarded connection and the client until one direction ends (then
/// the other gets [`HALF_CLOSE_GRACE`]). `send` writes to the client (false: gone).
pub(crate) async fn pump<S>(conn: Box<dyn Duplex>, mut from_client: mpsc::Receiver<Bytes>, send: S)
where
    S: Fn(Bytes) -> BoxFuture<'static, bool>,
{
    let (mut rd, mut wr) = tokio::io::split(conn);
    let up = async {
        while let Some(d) = from_client.recv().await {
            if wr.write_all(&d).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !send(Bytes::copy_from_slice(&buf[..n])).await {
                        return;
                    }
                }
            }
        }
    };
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut up => { let _ = tokio::time::timeout(HALF_CLOSE_GRACE, &mut down).await; }
        _ = &mut down => { let _ = tokio::time::timeout(HALF_CLOSE_GRACE, &mut up).await; }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_query() {
        assert_eq!(
            ports_from_query("ports=8080,9090").unwrap(),
            vec![8080, 9090]
        );
        assert_eq!(ports_from_query("port=80&port=81").unwrap(), vec![80, 81]);
        assert_eq!(
            ports_from_query("").unwrap_err(),
            "query parameter \"port\" is required"
        );
        assert!(ports_from_query("port=0").is_err());
        assert!(ports_from_query("port=x").is_err());
    }
}
