//! A server-side SPDY/3.1 session as spdystream runs it: a reader that answers every
//! client SYN_STREAM with a SYN_REPLY (or a RST_STREAM when the acceptor refuses it),
//! echoes the client's PINGs and routes data frames to their streams; and a writer that
//! serializes frames (one header-compression context for the whole session).
//!
//! Flow control is not enforced, as in spdystream (it ignores WINDOW_UPDATE and SETTINGS
//! and never sends them); data frames carry at most 32 KiB (Go's `io.Copy` buffer size).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frame::{
    FLAG_FIN, Frame, FrameError, Headers, RST_CANCEL, RST_PROTOCOL_ERROR, encode, read_frame,
};
use super::zlib::{HeaderCompressor, HeaderDecompressor};
use crate::task::TaskGuard;

/// Largest data frame this side writes.
const CHUNK: usize = 32 * 1024;
/// Data frames buffered per incoming stream before the reader waits for its consumer.
const STREAM_BUFFER: usize = 64;

/// Decides whether to accept a new stream from its headers (Err: reset it).
pub type Acceptor = Box<dyn Fn(&Headers) -> Result<(), String> + Send + Sync>;

/// A stream the client opened (and this side has replied to).
pub struct IncomingStream {
    pub id: u32,
    pub headers: Headers,
    /// The client's data; ends at its FIN, a RST_STREAM or the end of the session.
    pub data: mpsc::Receiver<Bytes>,
}

/// Writes on the session's streams; cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    tx: mpsc::Sender<Frame>,
    closed: CancellationToken,
    gone_away: Arc<AtomicBool>,
    last_stream: Arc<AtomicU32>,
}

impl SessionHandle {
    async fn send(&self, frame: Frame) -> bool {
        tokio::select! {
            r = self.tx.send(frame) => r.is_ok(),
            _ = self.closed.cancelled() => false,
        }
    }

    /// Writes data on a stream (false: the session is gone).
    pub async fn write(&self, stream_id: u32, data: &[u8]) -> bool {
        for chunk in data.chunks(CHUNK) {
            let frame = Frame::Data {
                stream_id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            };
            if !self.send(frame).await {
                return false;
            }
        }
        true
    }

    /// Half-closes a stream from this side (an empty data frame with FIN).
    pub async fn fin(&self, stream_id: u32) -> bool {
        self.send(Frame::Data {
            stream_id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await
    }

    /// Resets a stream (both directions).
    pub async fn reset(&self, stream_id: u32) -> bool {
        self.send(Frame::RstStream {
            stream_id,
            status: RST_CANCEL,
        })
        .await
    }

    /// Resolves when the connection has ended (either side).
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Ends the session as spdystream's `Close` does: a GOAWAY, then the connection is
    /// closed once the client has closed it, or after `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        if !self.gone_away.swap(true, Ordering::SeqCst) {
            let last = self.last_stream.load(Ordering::SeqCst);
            self.send(Frame::GoAway {
                last_good_stream_id: last,
                status: 0,
            })
            .await;
        }
        let _ = tokio::time::timeout(grace, self.closed.cancelled()).await;
        self.closed.cancel();
    }
}

/// A running session: the handle, the client's new streams, and its reader and writer
/// tasks (aborted when this is dropped).
pub struct Session {
    pub handle: SessionHandle,
    pub incoming: mpsc::UnboundedReceiver<IncomingStream>,
    _tasks: TaskGuard,
}

/// Starts a server-side session on an upgraded connection.
pub fn start<IO>(io: IO, accept: Acceptor) -> Result<Session, FrameError>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel::<Frame>(256);
    let (in_tx, incoming) = mpsc::unbounded_channel();
    let handle = SessionHandle {
        tx,
        closed: CancellationToken::new(),
        gone_away: Arc::new(AtomicBool::new(false)),
        last_stream: Arc::new(AtomicU32::new(0)),
    };
    let compressor = HeaderCompressor::new()?;
    let mut tasks = TaskGuard::default();
    tasks.spawn(write_loop(wr, rx, compressor, handle.closed.clone()));
    tasks.spawn(read_loop(rd, handle.clone(), in_tx, accept));
    Ok(Session {
        handle,
        incoming,
        _tasks: tasks,
    })
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Frame>,
    mut z: HeaderCompressor,
    closed: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            f = rx.recv() => f,
            _ = closed.cancelled() => None,
        };
        let Some(frame) = frame else { break };
        let bytes = match encode(&frame, &mut z) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "spdy: cannot encode frame");
                break;
            }
        };
        // One write per frame: Go's framer expects a header block's compressed bytes
        // to arrive together.
        let res = async {
            wr.write_all(&bytes).await?;
            wr.flush().await
        };
        let res = tokio::select! {
            r = res => r,
            _ = closed.cancelled() => break,
        };
        if let Err(e) = res {
            tracing::debug!(error = %e, "spdy: write failed");
            break;
        }
    }
    let _ = wr.shutdown().await;
    closed.cancel();
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    handle: SessionHandle,
    incoming: mpsc::UnboundedSender<IncomingStream>,
    accept: Acceptor,
) {
    let mut z = HeaderDecompressor::new();
    let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut last_id = 0u32;
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd, &mut z) => f,
            _ = handle.closed.cancelled() => break,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "spdy: read failed");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                if handle.gone_away.load(Ordering::SeqCst) {
                    continue;
                }
                if stream_id % 2 == 0 || stream_id <= last_id {
                    tracing::debug!(stream_id, "spdy: invalid stream id");
                    handle
                        .send(Frame::RstStream {
                            stream_id,
                            status: RST_PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                }
                last_id = stream_id;
                if let Err(e) = accept(&headers) {
                    tracing::warn!(stream_id, error = %e, "spdy: stream rejected");
                    handle.reset(stream_id).await;
                    continue;
                }
                handle.last_stream.store(stream_id, Ordering::SeqCst);
                let reply = Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Vec::new(),
                };
                if !handle.send(reply).await {
                    break;
                }
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                if flags & FLAG_FIN == 0 {
                    streams.insert(stream_id, tx);
                }
                let stream = IncomingStream {
                    id: stream_id,
                    headers,
                    data: rx,
                };
                let _ = incoming.send(stream);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if !data.is_empty()
                    && let Some(tx) = streams.get(&stream_id)
                    && tx.send(data).await.is_err()
                {
                    streams.remove(&stream_id);
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
            }
            Frame::Headers {
                stream_id, flags, ..
            }
            | Frame::SynReply {
                stream_id, flags, ..
            } => {
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::Ping { id } => {
                // Client pings are odd; echo them (ours would be even).
                if id % 2 == 1 && !handle.send(Frame::Ping { id }).await {
                    break;
                }
            }
            Frame::GoAway { .. } => {
                tracing::debug!("spdy: client sent GOAWAY");
            }
            Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
        }
    }
    handle.closed.cancel();
}
