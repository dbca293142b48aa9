//! The WebSocket channel protocol (apiserver's `wsstream`): every message is prefixed with
//! its channel (binary: one byte; base64 variants: a text message whose first character is
//! '0'+channel and the rest base64). v5 adds the CLOSE signal: a client message
//! `[255, channel]` ends that channel's input.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, frame::coding::CloseCode};
use tokio_util::sync::CancellationToken;

use crate::task::TaskGuard;

/// The v5 CLOSE signal's channel byte.
const CLOSE_SIGNAL: u8 = 255;

/// How channel messages are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Binary messages, first byte the channel.
    Binary,
    /// Text messages, first character '0'+channel, then base64.
    Base64,
}

impl Codec {
    /// The codec of a negotiated channel subprotocol (base64 ones contain "base64.").
    pub fn of(protocol: &str) -> Self {
        if protocol.contains("base64.") {
            Codec::Base64
        } else {
            Codec::Binary
        }
    }
}

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Data for a channel.
    Data(u8, Bytes),
    /// v5: the client closed its side of a channel.
    Close(u8),
}

/// Decodes a client message (None: not a channel message, ignored as wsstream does).
pub fn decode(codec: Codec, v5: bool, msg: Message) -> Option<Inbound> {
    match (codec, msg) {
        (Codec::Binary, Message::Binary(b)) if !b.is_empty() => {
            if v5 && b[0] == CLOSE_SIGNAL {
                return b.get(1).map(|ch| Inbound::Close(*ch));
            }
            Some(Inbound::Data(b[0], b.slice(1..)))
        }
        (Codec::Base64, Message::Text(t)) if !t.is_empty() => {
            let s = t.as_str();
            let ch = s.as_bytes()[0].checked_sub(b'0')?;
            match B64.decode(&s[1..]) {
                Ok(d) => Some(Inbound::Data(ch, Bytes::from(d))),
                Err(e) => {
                    tracing::debug!(error = %e, "websocket: bad base64 message");
                    None
                }
            }
        }
        _ => None,
    }
}

/// Encodes data for a channel.
pub fn encode(codec: Codec, channel: u8, data: &[u8]) -> Message {
    match codec {
        Codec::Binary => {
            let mut v = Vec::with_capacity(data.len() + 1);
            v.push(channel);
            v.extend_from_slice(data);
            Message::Binary(Bytes::from(v))
        }
        Codec::Base64 => {
            let mut s = String::with_capacity(data.len() * 4 / 3 + 5);
            s.push(char::from(b'0' + channel));
            B64.encode_string(data, &mut s);
            Message::text(s)
        }
    }
}

/// Sends on the WebSocket (through its writer task); cheap to clone.
#[derive(Clone)]
pub struct WsOut {
    tx: mpsc::Sender<Message>,
    codec: Codec,
    closed: CancellationToken,
}

impl WsOut {
    /// Sends a raw message (false: the connection is gone).
    pub async fn send(&self, msg: Message) -> bool {
        tokio::select! {
            r = self.tx.send(msg) => r.is_ok(),
            _ = self.closed.cancelled() => false,
        }
    }

    /// Writes data on a channel, in messages of at most 32 KiB.
    pub async fn write(&self, channel: u8, data: &[u8]) -> bool {
        if data.is_empty() {
            return self.send(encode(self.codec, channel, data)).await;
        }
        for chunk in data.chunks(32 * 1024) {
            if !self.send(encode(self.codec, channel, chunk)).await {
                return false;
            }
        }
        true
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Sends a normal close and waits (at most `grace`) for the client to close too.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        self.send(Message::Close(Some(frame))).await;
        let _ = tokio::time::timeout(grace, self.closed.cancelled()).await;
        self.closed.cancel();
    }
}

/// An open WebSocket: its sender, and the messages from the client (the receiver ends
/// with the connection). Its tasks end with it.
pub struct WsConn {
    pub out: WsOut,
    pub inbound: mpsc::Receiver<Message>,
    pub tasks: TaskGuard,
}

/// Runs the WebSocket protocol (server role) over an upgraded connection.
pub async fn open<IO>(io: IO, codec: Codec) -> WsConn
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let closed = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let (in_tx, inbound) = mpsc::channel::<Message>(64);
    let mut tasks = TaskGuard::default();
    let c = closed.clone();
    tasks.spawn(async move {
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = c.cancelled() => None,
            };
            let Some(msg) = msg else { break };
            let is_close = matches!(msg, Message::Close(_));
            let sent = tokio::select! {
                r = sink.send(msg) => r,
                _ = c.cancelled() => break,
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "websocket: write failed");
                break;
            }
            if is_close {
                // Wait for the client's close (the reader cancels), then stop.
                c.cancelled().await;
                break;
            }
        }
        c.cancel();
    });
    let c = closed.clone();
    tasks.spawn(async move {
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = c.cancelled() => None,
            };
            match msg {
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    let sent = tokio::select! {
                        r = in_tx.send(m) => r.is_ok(),
                        _ = c.cancelled() => false,
                    };
                    if !sent {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "websocket: read failed");
                    break;
                }
            }
        }
        c.cancel();
    });
    WsConn {
        out: WsOut { tx, codec, closed },
        inbound,
        tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_codecs() {
        let m = encode(Codec::Binary, 1, b"hi");
        assert_eq!(m, Message::Binary(Bytes::from_static(&[1, b'h', b'i'])));
        assert_eq!(
            decode(Codec::Binary, false, m),
            Some(Inbound::Data(1, Bytes::from_static(b"hi")))
        );
        let m = encode(Codec::Base64, 2, b"hi");
        assert_eq!(m, Message::text("2aGk="));
        assert_eq!(
            decode(Codec::Base64, false, m),
            Some(Inbound::Data(2, Bytes::from_static(b"hi")))
        );
        let close = Message::Binary(Bytes::from_static(&[255, 0]));
        assert_eq!(decode(Codec::Binary, true, close), Some(Inbound::Close(0)));
        assert_eq!(encode(Codec::Base64, 1, b""), Message::text("1"));
        assert_eq!(Codec::of("v4.base64.channel.k8s.io"), Codec::Base64);
        assert_eq!(Codec::of("base64.channel.k8s.io"), Codec::Base64);
        assert_eq!(Codec::of(""), Codec::Binary);
    }
}
