//! Port-forward over SPDY/3.1, directly or tunnelled in WebSocket binary messages: each
//! forwarded connection is a data and an error stream, paired by `requestID`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{Dial, pump};
use crate::BoxFuture;
use crate::spdy::frame::{Headers, header};
use crate::spdy::session::{self, IncomingStream, SessionHandle};
use crate::task::TaskGuard;
use crate::ws::{self, Codec};

/// How long a connection's data and error streams may arrive apart.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The kubelet's checks of a new port-forward stream (a failure resets it).
fn check_stream(headers: &Headers) -> Result<(), String> {
    let port = header(headers, "port").unwrap_or_default();
    if port.is_empty() {
        return Err("\"port\" header is required".into());
    }
    let n: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if n < 1 {
        return Err(format!("port {port:?} must be > 0"));
    }
    match header(headers, "streamtype").unwrap_or_default() {
        "" => Err("\"streamType\" header is required".into()),
        "data" | "error" => Ok(()),
        other => Err(format!("invalid stream type {other:?}")),
    }
}

/// The stream's request id; old clients send none, so the kubelet derives one from the
/// stream id (the error stream first, the data stream two ids later).
fn request_id(s: &IncomingStream) -> String {
    match header(&s.headers, "requestid") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => match header(&s.headers, "streamtype") {
            Some("data") => (i64::from(s.id) - 2).to_string(),
            _ => s.id.to_string(),
        },
    }
}

#[derive(Default)]
struct Pair {
    data: Option<IncomingStream>,
    error: Option<IncomingStream>,
    since: Option<Instant>,
}

/// SPDY port-forward over an upgraded (or tunnelled) connection, until the client closes.
pub(crate) async fn serve<IO>(io: IO, dial: Dial)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut session = match session::start(io, Box::new(check_stream)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "port-forward: cannot start spdy session");
            return;
        }
    };
    let handle = session.handle.clone();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = TaskGuard::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            s = session.incoming.recv() => {
                let Some(s) = s else { break };
                let id = request_id(&s);
                let pair = pairs.entry(id.clone()).or_default();
                pair.since.get_or_insert_with(Instant::now);
                if header(&s.headers, "streamtype") == Some("data") {
                    pair.data = Some(s);
                } else {
                    pair.error = Some(s);
                }
                if pair.data.is_some() && pair.error.is_some()
                    && let Some(Pair { data: Some(data), error: Some(error), .. }) = pairs.remove(&id)
                {
                    forwards.spawn(forward_spdy(handle.clone(), data, error, dial.clone()));
                }
            }
            _ = tick.tick() => {
                let expired: Vec<String> = pairs
                    .iter()
                    .filter(|(_, p)| p.since.is_some_and(|t| t.elapsed() >= STREAM_CREATION_TIMEOUT))
                    .map(|(k, _)| k.clone())
                    .collect();
                for id in expired {
                    if let Some(p) = pairs.remove(&id) {
                        tracing::warn!(request = %id, "port-forward: timed out waiting for streams");
                        if let Some(e) = &p.error {
                            handle.write(e.id, format!("(request={id}) timed out waiting for streams").as_bytes()).await;
                            handle.fin(e.id).await;
                        }
                        if let Some(d) = &p.data {
                            handle.fin(d.id).await;
                        }
                    }
                }
            }
        }
    }
    tracing::debug!("port-forward: spdy connection closed");
    drop(forwards);
}

async fn forward_spdy(
    handle: SessionHandle,
    data: IncomingStream,
    error: IncomingStream,
    dial: Dial,
) {
    let port: u16 = header(&data.headers, "port")
        .and_then(|p| p.parse().ok())
        .unwrap_or_default();
    let dial_fut = dial(port);
    let conn = tokio::select! {
        c = dial_fut => c,
        _ = handle.closed() => return,
    };
    match conn {
        Err(e) => {
            tracing::warn!(port, error = %e, "port-forward: dial failed");
            handle.write(error.id, e.to_string().as_bytes()).await;
        }
        Ok(conn) => {
            let h = handle.clone();
            let id = data.id;
            let send = move |d: Bytes| -> BoxFuture<'static, bool> {
                let h = h.clone();
                Box::pin(async move { h.write(id, &d).await })
            };
            tokio::select! {
                _ = pump(conn, data.data, send) => {}
                _ = handle.closed() => return,
            }
        }
    }
    handle.fin(data.id).await;
    handle.fin(error.id).await;
}

/// SPDY port-forward tunnelled in WebSocket binary messages.
pub(crate) async fn serve_tunnel<IO>(io: IO, dial: Dial)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = ws::open(io, Codec::Binary).await;
    let (near, far) = tokio::io::duplex(64 * 1024);
    let (mut far_rd, mut far_wr) = tokio::io::split(far);
    let mut tasks = conn.tasks;
    let mut inbound = conn.inbound;
    tasks.spawn(async move {
        while let Some(msg) = inbound.recv().await {
            let Message::Binary(b) = msg else {
                tracing::debug!("port-forward tunnel: non-binary message");
                break;
            };
            if far_wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = far_wr.shutdown().await;
    });
    let out = conn.out.clone();
    tasks.spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match far_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !out
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                    {
                        break;
                    }
                }
            }
        }
        out.shutdown(Duration::from_secs(2)).await;
    });
    serve(near, dial).await;
    drop(tasks);
}
