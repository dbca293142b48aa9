//! Running a remote command once the client's streams are open, whatever the transport:
//! start the process, copy stdin/stdout/stderr/resize, and when it exits drain its output
//! (bounded), write the status on the error stream and close. If the client goes away,
//! everything is dropped (which ends an exec'd process).

use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::status::{Outcome, status_json, status_text};
use crate::{BoxFuture, CommandOptions, Reader, Streams, TerminalSize, Writer};

/// How long to keep reading stdout/stderr after the process exited (a background child
/// may hold the pipes open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long to wait for the client to close after the status was written.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a terminal's first size is waited for before its command starts without one.
const FIRST_SIZE: Duration = Duration::from_millis(500);

/// An output channel of a remote command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutChannel {
    Stdout,
    Stderr,
    Error,
}

/// The client side of a transport, as a command's output sees it.
pub trait Output: Send + Sync {
    /// Writes on a channel (false: the client is gone).
    fn write<'a>(&'a self, ch: OutChannel, data: &'a [u8]) -> BoxFuture<'a, bool>;
    /// Ends a channel (SPDY: FIN).
    fn close(&self, ch: OutChannel) -> BoxFuture<'_, ()>;
    /// Ends the connection gracefully.
    fn finish(&self) -> BoxFuture<'_, ()>;
}

/// A command's client streams, transport-independent.
pub struct CommandIo {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub resize: Option<mpsc::Receiver<Bytes>>,
    pub out: Box<dyn Output>,
    /// Cancelled when the client goes away.
    pub gone: CancellationToken,
    /// v4/v5: JSON status; older: plain text.
    pub json_status: bool,
}

async fn pump_out(out: &dyn Output, ch: OutChannel, reader: Option<Reader>) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if !out.write(ch, &buf[..n]).await {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, ?ch, "remote command: output read failed");
                break;
            }
        }
    }
}

async fn pump_stdin(rx: Option<mpsc::Receiver<Bytes>>, stdin: Option<Writer>) {
    let (Some(mut rx), Some(mut stdin)) = (rx, stdin) else {
        return;
    };
    while let Some(data) = rx.recv().await {
        if let Err(e) = stdin.write_all(&data).await {
            tracing::debug!(error = %e, "remote command: stdin write failed");
            return;
        }
        let _ = stdin.flush().await;
    }
    // The client closed stdin: EOF for the process.
    let _ = stdin.shutdown().await;
}

/// Parses the JSON sizes on a resize stream: several may arrive in one frame, or one may
/// span frames (the kubelet reads it with a `json.Decoder`).
async fn pump_resize(
    rx: Option<mpsc::Receiver<Bytes>>,
    resize: Option<Box<dyn Fn(TerminalSize) + Send + Sync>>,
    mut buf: Vec<u8>,
) {
    let Some(mut rx) = rx else { return };
    let mut next = (!buf.is_empty()).then(Bytes::new);
    while let Some(data) = match next.take() {
        Some(d) => Some(d),
        None => rx.recv().await,
    } {
        buf.extend_from_slice(&data);
        let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
        let mut used = 0;
        loop {
            match de.next() {
                Some(Ok(size)) => {
                    used = de.byte_offset();
                    if let Some(f) = &resize {
                        f(size);
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    // The kubelet stops reading resizes at the first bad one.
                    tracing::debug!(error = %e, "remote command: bad resize message");
                    return;
                }
                None => {
                    used = buf.len();
                    break;
                }
            }
        }
        buf.drain(..used);
    }
}

/// The terminal's first size on the resize stream (kubectl sends it as soon as the stream
/// is open), and the bytes after it; waited for at most `FIRST_SIZE`.
async fn first_size(rx: &mut mpsc::Receiver<Bytes>) -> (Option<TerminalSize>, Vec<u8>) {
    let mut buf = Vec::new();
    let deadline = tokio::time::sleep(FIRST_SIZE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            data = rx.recv() => match data {
                Some(d) => buf.extend_from_slice(&d),
                None => return (None, buf),
            },
            _ = &mut deadline => return (None, buf),
        }
        let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
        match de.next() {
            Some(Ok(size)) => {
                let rest = buf[de.byte_offset()..].to_vec();
                return (Some(size), rest);
            }
            Some(Err(e)) if e.is_eof() => {}
            _ => return (None, buf),
        }
    }
}

/// Runs the command and its copies until it ends or the client goes away.
pub async fn run<F>(io: CommandIo, opts: CommandOptions, start: F)
where
    F: FnOnce(CommandOptions) -> BoxFuture<'static, Result<Streams, String>> + Send + 'static,
{
    let CommandIo {
        stdin,
        mut resize,
        out,
        gone,
        json_status,
    } = io;
    let mut opts = opts;
    let mut pending = Vec::new();
    if let Some(rx) = resize.as_mut().filter(|_| opts.tty) {
        let (size, rest) = tokio::select! {
            first = first_size(rx) => first,
            _ = gone.cancelled() => return,
        };
        opts.size = size;
        pending = rest;
    }
    let command = opts.command.clone();
    let started = tokio::select! {
        s = start(opts) => s,
        _ = gone.cancelled() => return,
    };
    let outcome = match started {
        Err(msg) => Outcome::Error(msg),
        Ok(streams) => {
            let Some(outcome) = supervise(streams, stdin, (resize, pending), &*out, &gone).await
            else {
                tracing::debug!("remote command: client went away");
                return;
            };
            outcome
        }
    };
    out.close(OutChannel::Stdout).await;
    out.close(OutChannel::Stderr).await;
    let payload = if json_status {
        Some(status_json(&command, &outcome))
    } else {
        status_text(&command, &outcome)
    };
    if let Some(p) = payload {
        out.write(OutChannel::Error, p.as_bytes()).await;
    }
    out.close(OutChannel::Error).await;
    tokio::select! {
        _ = out.finish() => {}
        _ = tokio::time::sleep(CLOSE_GRACE * 2) => {}
    }
}

/// Copies while the process runs; None if the client went away first.
async fn supervise(
    streams: Streams,
    stdin_rx: Option<mpsc::Receiver<Bytes>>,
    (resize_rx, pending): (Option<mpsc::Receiver<Bytes>>, Vec<u8>),
    out: &dyn Output,
    gone: &CancellationToken,
) -> Option<Outcome> {
    let Streams {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = streams;
    let outputs = futures::future::join(
        pump_out(out, OutChannel::Stdout, stdout),
        pump_out(out, OutChannel::Stderr, stderr),
    )
    .fuse();
    let inputs = futures::future::join(
        pump_stdin(stdin_rx, stdin),
        pump_resize(resize_rx, resize, pending),
    )
    .fuse();
    let mut exit = exit.fuse();
    tokio::pin!(outputs, inputs);
    let mut outputs_done = false;
    let code = loop {
        tokio::select! {
            r = &mut exit => break r,
            _ = &mut outputs, if !outputs_done => outputs_done = true,
            _ = &mut inputs => {}
            _ = gone.cancelled() => return None,
        }
    };
    if !outputs_done {
        tokio::select! {
            _ = &mut outputs => {}
            _ = tokio::time::sleep(DRAIN_AFTER_EXIT) => {
                tracing::debug!("remote command: output still open after exit, not waiting");
            }
            _ = gone.cancelled() => return None,
        }
    }
    Some(match code {
        Ok(0) => Outcome::Success,
        Ok(c) => Outcome::Exit(c),
        Err(msg) => Outcome::Error(msg),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn resize_messages_in_one_frame_and_split_across_frames() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let f: Box<dyn Fn(TerminalSize) + Send + Sync> =
            Box::new(move |t| s.lock().unwrap().push(t));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(pump_resize(Some(rx), Some(f), Vec::new()));
        tx.send(Bytes::from_static(
            br#"{"Width":80,"Height":24}{"Width":100,"Height":30}{"Wid"#,
        ))
        .await
        .unwrap();
        tx.send(Bytes::from_static(br#"th":120,"Height":40}"#))
            .await
            .unwrap();
        drop(tx);
        task.await.unwrap();
        let want =
            [(80, 24), (100, 30), (120, 40)].map(|(width, height)| TerminalSize { width, height });
        assert_eq!(*seen.lock().unwrap(), want);
    }
}
