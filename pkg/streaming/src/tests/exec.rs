//! Exec over WebSocket (v5, v4, base64) and SPDY (v4, v3), and client disconnects.

use std::collections::HashMap;

use bytes::Bytes;
use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::spdy_client::{SpdyClient, upgrade};
use super::*;

const OK: &str = r#"{"metadata":{},"status":"Success"}"#;
const EXIT3: &str = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;

fn bin(ch: u8, data: &[u8]) -> Message {
    let mut v = vec![ch];
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// Reads binary channel messages until the connection closes: bytes per channel.
async fn read_all(ws: &mut Ws) -> HashMap<u8, Vec<u8>> {
    let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
    while let Some(m) = next_msg(ws).await {
        let Message::Binary(b) = m else {
            panic!("unexpected {m:?}")
        };
        got.entry(b[0]).or_default().extend_from_slice(&b[1..]);
    }
    got
}

#[tokio::test]
async fn websocket_v5_echoes_stdin_and_closes_it() {
    let addr = start_server(HashMap::new()).await;
    let path = "/exec?stdin=1&stdout=1&stderr=true&command=echo";
    let (mut ws, proto) = ws_connect(addr, path, "v5.channel.k8s.io, v4.channel.k8s.io")
        .await
        .unwrap();
    assert_eq!(proto.as_deref(), Some("v5.channel.k8s.io"));
    // The server's first message: empty, on stdout.
    assert_eq!(next_msg(&mut ws).await, Some(bin(1, b"")));
    ws.send(bin(0, b"hello")).await.unwrap();
    let mut out = Vec::new();
    while !out.ends_with(b"hello") {
        let Some(Message::Binary(b)) = next_msg(&mut ws).await else {
            panic!("closed")
        };
        if b[0] == 1 {
            out.extend_from_slice(&b[1..]);
        }
    }
    // v5 CLOSE of stdin: the process sees EOF and exits 0.
    ws.send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let got = read_all(&mut ws).await;
    assert_eq!(got.get(&3).map(Vec::as_slice), Some(OK.as_bytes()));
}

#[tokio::test]
async fn websocket_v4_reports_exit_codes() {
    let addr = start_server(HashMap::new()).await;
    for (code, want) in [("3", EXIT3), ("0", OK)] {
        let path = format!("/exec?stdout=1&stderr=1&command=exit&command={code}");
        let (mut ws, proto) = ws_connect(addr, &path, "v4.channel.k8s.io").await.unwrap();
        assert_eq!(proto.as_deref(), Some("v4.channel.k8s.io"));
        let got = read_all(&mut ws).await;
        assert_eq!(got[&1], b"out\n");
        assert_eq!(got[&2], b"err\n");
        let want = want.replace("[exit 3]", &format!("[exit {code}]"));
        assert_eq!(String::from_utf8_lossy(&got[&3]), want);
    }
    // A command that cannot start: an internal error Status.
    let (mut ws, _) = ws_connect(addr, "/exec?stdout=1&command=fail", "v4.channel.k8s.io")
        .await
        .unwrap();
    let got = read_all(&mut ws).await;
    let status: serde_json::Value = serde_json::from_slice(&got[&3]).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(
        status["message"],
        "Internal error occurred: boom: cannot start"
    );
}

#[tokio::test]
async fn websocket_base64_and_no_protocol() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let addr = start_server(HashMap::new()).await;
    let path = "/exec?stdout=1&command=exit&command=3";
    let (mut ws, proto) = ws_connect(addr, path, "v4.base64.channel.k8s.io")
        .await
        .unwrap();
    assert_eq!(proto.as_deref(), Some("v4.base64.channel.k8s.io"));
    let mut msgs = Vec::new();
    while let Some(m) = next_msg(&mut ws).await {
        msgs.push(m);
    }
    assert_eq!(msgs[0], Message::text("1"));
    assert_eq!(msgs[1], Message::text(format!("1{}", b64.encode("out\n"))));
    assert_eq!(msgs[2], Message::text(format!("3{}", b64.encode(EXIT3))));
    // No subprotocol: channel.k8s.io, and v1 errors are plain text.
    let (mut ws, proto) = ws_connect(addr, path, "").await.unwrap();
    assert_eq!(proto, None);
    let got = read_all(&mut ws).await;
    assert_eq!(
        String::from_utf8_lossy(&got[&3]),
        "command terminated with non-zero exit code: error executing command [exit 3], exit code 3"
    );
    // Unsupported subprotocol: 403.
    let err = ws_connect(addr, path, "v9.channel.k8s.io")
        .await
        .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("{err}")
    };
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn spdy_v4_exec_with_stdin() {
    let addr = start_server(HashMap::new()).await;
    let path = "/exec?stdin=1&stdout=1&stderr=1&command=echo";
    let (status, head, tcp) = upgrade(
        addr,
        path,
        &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")],
    )
    .await;
    assert_eq!(status, 101, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-stream-protocol-version: v4.channel.k8s.io")
    );
    let mut c = SpdyClient::new(tcp);
    let error = c.open(&[("streamType", "error")]).await;
    let stdin = c.open(&[("streamType", "stdin")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    let stderr = c.open(&[("streamType", "stderr")]).await;
    c.send(crate::spdy::frame::Frame::Ping { id: 1 }).await;
    c.data(stdin, b"hi there", true).await;
    let got = c.collect(|g| g.fin.contains(&error) && g.go_away).await;
    assert_eq!(got.replies, vec![error, stdin, stdout, stderr]);
    assert_eq!(got.pings, vec![1]);
    assert_eq!(got.text(stdout), "hi there");
    assert_eq!(got.text(stderr), "err\n");
    assert_eq!(got.text(error), OK);
    assert!(got.fin.contains(&stdout) && got.fin.contains(&stderr));
}

#[tokio::test]
async fn spdy_exit_codes_v4_json_and_v3_text() {
    let addr = start_server(HashMap::new()).await;
    let path = "/exec?stdout=1&command=exit&command=3";
    for (proto, want) in [
        ("v4.channel.k8s.io", EXIT3.to_string()),
        (
            "v3.channel.k8s.io",
            "command terminated with non-zero exit code: error executing command [exit 3], exit code 3".to_string(),
        ),
    ] {
        let (status, _, tcp) = upgrade(addr, path, &[("X-Stream-Protocol-Version", proto)]).await;
        assert_eq!(status, 101);
        let mut c = SpdyClient::new(tcp);
        let error = c.open(&[("streamType", "error")]).await;
        let stdout = c.open(&[("streamType", "stdout")]).await;
        let got = c.collect(|g| g.fin.contains(&error) && g.fin.contains(&stdout)).await;
        assert_eq!(got.text(stdout), "out\n");
        assert_eq!(got.text(error), want);
    }
    // No protocol in common: 403 listing what the server accepts.
    let (status, head, _) = upgrade(addr, path, &[("X-Stream-Protocol-Version", "v9")]).await;
    assert_eq!(status, 403);
    assert!(
        head.contains("X-Accepted-Stream-Protocol-Versions")
            || head.contains("x-accepted-stream-protocol-versions")
    );
    // None given: 400.
    let (status, _, _) = upgrade(addr, path, &[]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn client_disconnect_drops_the_process_and_ends_the_tasks() {
    let addr = start_server(HashMap::new()).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    // WebSocket.
    let (mut ws, _) = ws_connect(
        addr,
        "/exec?stdin=1&stdout=1&command=hang&command=ws-1",
        "v4.channel.k8s.io",
    )
    .await
    .unwrap();
    assert_eq!(next_msg(&mut ws).await, Some(bin(1, b"")));
    assert_eq!(next_msg(&mut ws).await, Some(bin(1, b"started\n")));
    drop(ws);
    assert!(eventually(|| was_dropped("ws-1")).await);
    assert!(
        eventually(|| metrics.num_alive_tasks() <= baseline).await,
        "tasks left behind"
    );
    // SPDY.
    let path = "/exec?stdin=1&stdout=1&command=hang&command=spdy-1";
    let mut c = spdy_v4(addr, path).await;
    c.open(&[("streamType", "error")]).await;
    c.open(&[("streamType", "stdin")]).await;
    c.open(&[("streamType", "stdout")]).await;
    let stdout = 5;
    c.collect(|g| g.text(stdout) == "started\n").await;
    drop(c);
    assert!(eventually(|| was_dropped("spdy-1")).await);
    assert!(
        eventually(|| metrics.num_alive_tasks() <= baseline).await,
        "tasks left behind"
    );
}

#[tokio::test]
async fn tty_resizes_over_spdy_and_websocket() {
    let addr = start_server(HashMap::new()).await;
    let size = |width, height| crate::TerminalSize { width, height };
    // SPDY v4: error, stdin, stdout and resize (no stderr with a TTY).
    let path = "/exec?stdin=1&stdout=1&stderr=1&tty=1&command=tty&command=spdy-tty";
    let mut c = spdy_v4(addr, path).await;
    let error = c.open(&[("streamType", "error")]).await;
    let stdin = c.open(&[("streamType", "stdin")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    let resize = c.open(&[("streamType", "resize")]).await;
    c.data(
        resize,
        br#"{"Width":80,"Height":24}{"Width":100,"Height":30}"#,
        false,
    )
    .await;
    assert!(eventually(|| resizes("spdy-tty").len() == 2).await);
    c.data(stdin, b"typed", true).await;
    let got = c.collect(|g| g.fin.contains(&error)).await;
    assert_eq!(got.text(stdout), "typed");
    assert_eq!(got.text(error), OK);
    assert_eq!(resizes("spdy-tty"), vec![size(80, 24), size(100, 30)]);
    // WebSocket v5: resize on channel 4.
    let path = "/exec?stdin=1&stdout=1&tty=1&command=tty&command=ws-tty";
    let (mut ws, _) = ws_connect(addr, path, "v5.channel.k8s.io").await.unwrap();
    assert_eq!(next_msg(&mut ws).await, Some(bin(1, b"")));
    ws.send(bin(4, br#"{"Width":132,"Height":43}"#))
        .await
        .unwrap();
    assert!(eventually(|| resizes("ws-tty") == vec![size(132, 43)]).await);
    ws.send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let got = read_all(&mut ws).await;
    assert_eq!(got.get(&3).map(Vec::as_slice), Some(OK.as_bytes()));
}

/// A SPDY v4 exec session on `path`, upgraded.
async fn spdy_v4(addr: std::net::SocketAddr, path: &str) -> SpdyClient<tokio::net::TcpStream> {
    let (status, _, tcp) = upgrade(
        addr,
        path,
        &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")],
    )
    .await;
    assert_eq!(status, 101);
    SpdyClient::new(tcp)
}
