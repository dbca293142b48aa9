//! A minimal SPDY/3.1 client (as spdystream's client side acts): the HTTP upgrade, then
//! SYN_STREAMs with headers, data, FIN, and the frames the server sends back.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::spdy::frame::{FLAG_FIN, Frame, encode, read_frame};
use crate::spdy::zlib::{HeaderCompressor, HeaderDecompressor};

pub(crate) struct SpdyClient<IO> {
    wr: WriteHalf<IO>,
    z: HeaderCompressor,
    frames: mpsc::UnboundedReceiver<Frame>,
    next_id: u32,
    reader: tokio::task::JoinHandle<()>,
}

impl<IO> Drop for SpdyClient<IO> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Sends the upgrade request; returns the status, the response head and the connection.
pub(crate) async fn upgrade(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, s)
}

impl<IO: AsyncRead + AsyncWrite + Send + 'static> SpdyClient<IO> {
    pub(crate) fn new(io: IO) -> Self {
        let (mut rd, wr) = tokio::io::split(io);
        let (tx, frames) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut z = HeaderDecompressor::new();
            while let Ok(Some(f)) = read_frame(&mut rd, &mut z).await {
                if tx.send(f).is_err() {
                    break;
                }
            }
        });
        Self {
            wr,
            z: HeaderCompressor::new().unwrap(),
            frames,
            next_id: 1,
            reader,
        }
    }

    pub(crate) async fn send(&mut self, f: Frame) {
        let b = encode(&f, &mut self.z).unwrap();
        self.wr.write_all(&b).await.unwrap();
        self.wr.flush().await.unwrap();
    }

    /// Opens a stream with these headers; returns its id.
    pub(crate) async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.send(Frame::SynStream {
            stream_id: id,
            associated_id: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await;
        id
    }

    pub(crate) async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            flags: if fin { FLAG_FIN } else { 0 },
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    /// The next frame from the server (None: connection closed; fails after 10 s).
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(10), self.frames.recv())
            .await
            .expect("timed out waiting for a frame")
    }

    /// Reads frames until `done` says so, collecting data per stream and FINs seen.
    pub(crate) async fn collect(&mut self, mut done: impl FnMut(&Collected) -> bool) -> Collected {
        let mut c = Collected::default();
        while !done(&c) {
            let Some(f) = self.next().await else { break };
            match f {
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    c.data
                        .entry(stream_id)
                        .or_default()
                        .extend_from_slice(&data);
                    if flags & FLAG_FIN != 0 {
                        c.fin.push(stream_id);
                    }
                }
                Frame::SynReply { stream_id, .. } => c.replies.push(stream_id),
                Frame::RstStream { stream_id, .. } => c.resets.push(stream_id),
                Frame::GoAway { .. } => c.go_away = true,
                Frame::Ping { id } => c.pings.push(id),
                _ => {}
            }
        }
        c
    }
}

#[derive(Default, Debug)]
pub(crate) struct Collected {
    pub data: std::collections::HashMap<u32, Vec<u8>>,
    pub fin: Vec<u32>,
    pub replies: Vec<u32>,
    pub resets: Vec<u32>,
    pub pings: Vec<u32>,
    pub go_away: bool,
}

impl Collected {
    pub(crate) fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.data.get(&id).map(Vec::as_slice).unwrap_or_default())
            .into_owned()
    }
}
