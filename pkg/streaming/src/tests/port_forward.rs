//! Port-forward over SPDY (two ports, a failed dial, a rejected stream), SPDY tunnelled in
//! WebSocket, and WebSocket channels with the port prefix.

use std::collections::HashMap;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::spdy_client::{SpdyClient, upgrade};
use super::*;

async fn two_echo_ports() -> HashMap<u16, SocketAddr> {
    HashMap::from([
        (8080, echo_server("A").await),
        (9090, echo_server("B").await),
    ])
}

/// Forwards ports 8080 and 9090 and a port that cannot be dialed, on one SPDY session.
async fn drive_spdy<IO>(c: &mut SpdyClient<IO>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let e1 = c
        .open(&[
            ("streamType", "error"),
            ("port", "8080"),
            ("requestID", "0"),
        ])
        .await;
    let d1 = c
        .open(&[("streamType", "data"), ("port", "8080"), ("requestID", "0")])
        .await;
    let e2 = c
        .open(&[
            ("streamType", "error"),
            ("port", "9090"),
            ("requestID", "1"),
        ])
        .await;
    let d2 = c
        .open(&[("streamType", "data"), ("port", "9090"), ("requestID", "1")])
        .await;
    c.data(d1, b"one", false).await;
    c.data(d2, b"two", false).await;
    let got = c
        .collect(|g| g.text(d1) == "A:one" && g.text(d2) == "B:two")
        .await;
    assert_eq!(got.replies, vec![e1, d1, e2, d2]);
    // The client closes its side: the server ends the forward and FINs both streams.
    c.data(d1, b"", true).await;
    let got = c
        .collect(|g| g.fin.contains(&d1) && g.fin.contains(&e1))
        .await;
    assert_eq!(got.text(e1), "");
    // A port nothing listens on: the dial error on the error stream.
    let e3 = c
        .open(&[
            ("streamType", "error"),
            ("port", "7070"),
            ("requestID", "2"),
        ])
        .await;
    let d3 = c
        .open(&[("streamType", "data"), ("port", "7070"), ("requestID", "2")])
        .await;
    let got = c
        .collect(|g| g.fin.contains(&e3) && g.fin.contains(&d3))
        .await;
    assert_eq!(
        got.text(e3),
        "failed to connect to localhost:7070 inside namespace \"test\""
    );
    // A stream without a port header is reset, not replied to.
    let bad = c.open(&[("streamType", "data")]).await;
    let got = c.collect(|g| !g.resets.is_empty()).await;
    assert_eq!(got.resets, vec![bad]);
    assert!(got.replies.is_empty());
    // The other forward still works.
    c.data(d2, b"again", false).await;
    let got = c.collect(|g| g.text(d2) == "B:again").await;
    assert_eq!(got.text(d2), "B:again");
}

#[tokio::test]
async fn spdy_two_ports() {
    let addr = start_server(two_echo_ports().await).await;
    let (status, head, tcp) = upgrade(
        addr,
        "/portforward",
        &[("X-Stream-Protocol-Version", "portforward.k8s.io")],
    )
    .await;
    assert_eq!(status, 101, "{head}");
    let mut c = SpdyClient::new(tcp);
    drive_spdy(&mut c).await;
}

#[tokio::test]
async fn spdy_tunnelled_in_websocket() {
    let addr = start_server(two_echo_ports().await).await;
    let (ws, proto) = ws_connect(addr, "/portforward", "SPDY/3.1+portforward.k8s.io")
        .await
        .unwrap();
    assert_eq!(proto.as_deref(), Some("SPDY/3.1+portforward.k8s.io"));
    // Raw SPDY bytes in binary messages, both ways.
    let (near, far) = tokio::io::duplex(64 * 1024);
    let (mut far_rd, mut far_wr) = tokio::io::split(far);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = far_rd.read(&mut buf).await {
            if n == 0
                || sink
                    .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
            {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Binary(b) = m
                && far_wr.write_all(&b).await.is_err()
            {
                break;
            }
        }
    });
    let mut c = SpdyClient::new(near);
    drive_spdy(&mut c).await;
}

#[tokio::test]
async fn websocket_channels_with_port_prefix() {
    let addr = start_server(two_echo_ports().await).await;
    let (mut ws, proto) = ws_connect(
        addr,
        "/portforward?ports=8080,9090,7070",
        "v4.channel.k8s.io",
    )
    .await
    .unwrap();
    assert_eq!(proto.as_deref(), Some("v4.channel.k8s.io"));
    let mut by_channel: HashMap<u8, Vec<Vec<u8>>> = HashMap::new();
    // Each of the six channels starts with its port, little-endian.
    while by_channel.values().map(Vec::len).sum::<usize>() < 7 {
        let Some(Message::Binary(b)) = next_msg(&mut ws).await else {
            panic!("closed")
        };
        by_channel.entry(b[0]).or_default().push(b[1..].to_vec());
    }
    for (ch, port) in [
        (0u8, 8080u16),
        (1, 8080),
        (2, 9090),
        (3, 9090),
        (4, 7070),
        (5, 7070),
    ] {
        assert_eq!(by_channel[&ch][0], port.to_le_bytes(), "channel {ch}");
    }
    // The third port's dial failed: its error channel says so.
    assert_eq!(
        by_channel[&5][1],
        b"failed to connect to localhost:7070 inside namespace \"test\""
    );
    ws.send(Message::Binary(Bytes::from_static(b"\x00one")))
        .await
        .unwrap();
    assert_eq!(
        next_msg(&mut ws).await,
        Some(Message::Binary(Bytes::from_static(b"\x00A:one")))
    );
    ws.send(Message::Binary(Bytes::from_static(b"\x02two")))
        .await
        .unwrap();
    assert_eq!(
        next_msg(&mut ws).await,
        Some(Message::Binary(Bytes::from_static(b"\x02B:two")))
    );
    // Without ports: 400.
    let err = ws_connect(addr, "/portforward", "v4.channel.k8s.io")
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("{err}")
    };
    assert_eq!(resp.status(), 400);
}
