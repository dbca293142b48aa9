//! Port-forward over the WebSocket channel protocol: channel 2i carries the i-th port's
//! data, 2i+1 its errors, and each starts with the port as 2 little-endian bytes.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::{Dial, pump};
use crate::BoxFuture;
use crate::ws::{self, Codec, Inbound};

/// Port-forward over the WebSocket channel protocol.
pub(crate) async fn serve<IO>(io: IO, codec: Codec, ports: Vec<u16>, dial: Dial)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = ws::open(io, codec).await;
    let out = conn.out.clone();
    let mut data_txs = Vec::new();
    let mut forwards = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        data_txs.push(Some(tx));
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        out.write(data_ch, &port.to_le_bytes()).await;
        out.write(err_ch, &port.to_le_bytes()).await;
        let (out, dial, port) = (out.clone(), dial.clone(), *port);
        forwards.push(async move {
            match dial(port).await {
                Err(e) => {
                    tracing::warn!(port, error = %e, "port-forward: dial failed");
                    out.write(err_ch, e.to_string().as_bytes()).await;
                }
                Ok(conn) => {
                    let o = out.clone();
                    let send = move |d: Bytes| -> BoxFuture<'static, bool> {
                        let o = o.clone();
                        Box::pin(async move { o.write(data_ch, &d).await })
                    };
                    pump(conn, rx, send).await;
                }
            }
        });
    }
    let mut inbound = conn.inbound;
    let demux = async move {
        while let Some(msg) = inbound.recv().await {
            match ws::decode(codec, false, msg) {
                Some(Inbound::Data(ch, d)) if ch % 2 == 0 => {
                    if let Some(slot) = data_txs.get_mut(usize::from(ch / 2))
                        && let Some(tx) = slot
                        && tx.send(d).await.is_err()
                    {
                        *slot = None;
                    }
                }
                other => {
                    tracing::debug!(?other, "port-forward: message on a channel it cannot read")
                }
            }
        }
    };
    tokio::select! {
        _ = futures::future::join_all(forwards) => {
            out.shutdown(Duration::from_secs(2)).await;
        }
        _ = demux => {}
        _ = out.closed() => {}
    }
    drop(conn.tasks);
}
