//! Exec and attach (remotecommand), server side: the query, the transport (WebSocket
//! channels v1-v5 or SPDY/3.1 streams v1-v4) and the command's run.

mod run;

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::negotiate::{
    is_websocket, negotiate_spdy, negotiate_websocket, spdy_response, websocket_response,
};
use crate::spdy::frame::header;
use crate::spdy::session::{self, IncomingStream, SessionHandle};
use crate::task::TaskGuard;
use crate::ws::{self, Codec, Inbound, WsOut};
use crate::{BoxFuture, CommandOptions, Streams};
use run::{CommandIo, OutChannel, Output};

/// How long the kubelet waits for the client to open its SPDY streams.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// SPDY remotecommand subprotocols, most preferred first.
const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// WebSocket remotecommand subprotocols ("": none requested, as channel.k8s.io).
const WS_PROTOCOLS: &[&str] = &[
    "",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "v2.channel.k8s.io",
    "v3.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "v5.channel.k8s.io",
];

impl CommandOptions {
    /// From an exec/attach query string: `stdin`, `stdout`, `stderr`, `tty` ("1" or
    /// "true"), `command` (repeated). Stderr is dropped with a TTY, as the kubelet does.
    pub fn from_query(query: &str) -> Result<CommandOptions, String> {
        let mut opts = CommandOptions::default();
        for (k, v) in form_urlencoded_pairs(query) {
            let on = v == "1" || v.eq_ignore_ascii_case("true");
            match k.as_str() {
                "stdin" => opts.stdin = on,
                "stdout" => opts.stdout = on,
                "stderr" => opts.stderr = on,
                "tty" => opts.tty = on,
                "command" => opts.command.push(v),
                _ => {}
            }
        }
        if opts.tty && opts.stderr {
            opts.stderr = false;
        }
        if !opts.stdin && !opts.stdout && !opts.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(opts)
    }
}

/// Decodes `a=b&c=d` (percent-encoding and '+').
pub(crate) fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Serves an exec or attach request: negotiates WebSocket (channel protocols v1-v5) or
/// SPDY/3.1 (v1-v4), returns the 101 (or the 400/403), and runs the command in a task
/// once the client's streams are open. See the crate docs for the protocol details.
pub async fn serve_command<F>(
    mut req: http::Request<Body>,
    opts: CommandOptions,
    start: F,
) -> http::Response<Body>
where
    F: FnOnce(CommandOptions) -> BoxFuture<'static, Result<Streams, String>> + Send + 'static,
{
    let upgrade = hyper::upgrade::on(&mut req);
    if is_websocket(req.headers()) {
        let (key, protocol) = match negotiate_websocket(req.headers(), WS_PROTOCOLS) {
            Ok(v) => v,
            Err(resp) => return *resp,
        };
        let resp = websocket_response(&key, &protocol);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(up) => serve_ws(TokioIo::new(up), &protocol, opts, start).await,
                Err(e) => tracing::warn!(error = %e, "exec: websocket upgrade failed"),
            }
        });
        return resp;
    }
    let protocol = match negotiate_spdy(req.headers(), SPDY_PROTOCOLS) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let resp = spdy_response(&protocol);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => serve_spdy(TokioIo::new(up), &protocol, opts, start).await,
            Err(e) => tracing::warn!(error = %e, "exec: spdy upgrade failed"),
        }
    });
    resp
}

struct WsOutput(WsOut);

impl Output for WsOutput {
    fn write<'a>(&'a self, ch: OutChannel, data: &'a [u8]) -> BoxFuture<'a, bool> {
        let n = match ch {
            OutChannel::Stdout => 1,
            OutChannel::Stderr => 2,
            OutChannel::Error => 3,
        };
        Box::pin(self.0.write(n, data))
    }
    fn close(&self, _ch: OutChannel) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.shutdown(CLOSE_GRACE))
    }
}

/// Exec over the WebSocket channel protocol.
pub(crate) async fn serve_ws<IO, F>(io: IO, protocol: &str, opts: CommandOptions, start: F)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(CommandOptions) -> BoxFuture<'static, Result<Streams, String>> + Send + 'static,
{
    let codec = Codec::of(protocol);
    let v5 = protocol == "v5.channel.k8s.io";
    let json_status = protocol.starts_with("v4.") || v5;
    let mut conn = ws::open(io, codec).await;
    // Tell the client the connection is up: an empty message on the lowest writable
    // channel, as the kubelet does.
    let first = if opts.stdout {
        1
    } else if opts.stderr {
        2
    } else {
        3
    };
    conn.out.write(first, &[]).await;
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let (resize_tx, resize_rx) = mpsc::channel::<Bytes>(16);
    let gone = CancellationToken::new();
    let mut inbound = conn.inbound;
    let want_stdin = opts.stdin;
    let g = gone.clone();
    conn.tasks.spawn(async move {
        let mut stdin_tx = want_stdin.then_some(stdin_tx);
        let mut resize_tx = Some(resize_tx);
        while let Some(msg) = inbound.recv().await {
            match ws::decode(codec, v5, msg) {
                Some(Inbound::Data(0, d)) => {
                    if let Some(tx) = &stdin_tx
                        && tx.send(d).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                Some(Inbound::Data(4, d)) => {
                    if let Some(tx) = &resize_tx
                        && tx.send(d).await.is_err()
                    {
                        resize_tx = None;
                    }
                }
                Some(Inbound::Close(0)) => stdin_tx = None,
                Some(Inbound::Close(4)) => resize_tx = None,
                Some(other) => tracing::debug!(?other, "exec: message on a channel it cannot read"),
                None => {}
            }
        }
        g.cancel();
    });
    let io = CommandIo {
        stdin: opts.stdin.then_some(stdin_rx),
        resize: opts.tty.then_some(resize_rx),
        out: Box::new(WsOutput(conn.out)),
        gone,
        json_status,
    };
    run::run(io, opts, start).await;
    drop(conn.tasks);
}

struct SpdyOutput {
    handle: SessionHandle,
    stdout: Option<u32>,
    stderr: Option<u32>,
    error: Option<u32>,
}

impl SpdyOutput {
    fn id(&self, ch: OutChannel) -> Option<u32> {
        match ch {
            OutChannel::Stdout => self.stdout,
            OutChannel::Stderr => self.stderr,
            OutChannel::Error => self.error,
        }
    }
}

impl Output for SpdyOutput {
    fn write<'a>(&'a self, ch: OutChannel, data: &'a [u8]) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.id(ch) {
                Some(id) => self.handle.write(id, data).await,
                None => true,
            }
        })
    }
    fn close(&self, ch: OutChannel) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(id) = self.id(ch) {
                self.handle.fin(id).await;
            }
        })
    }
    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.handle.shutdown(CLOSE_GRACE))
    }
}

/// Exec over SPDY/3.1: waits for the client's streams (error, and stdin, stdout, stderr,
/// resize as asked), then runs the command.
pub(crate) async fn serve_spdy<IO, F>(io: IO, protocol: &str, opts: CommandOptions, start: F)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    F: FnOnce(CommandOptions) -> BoxFuture<'static, Result<Streams, String>> + Send + 'static,
{
    let mut session = match session::start(io, Box::new(|_| Ok(()))) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "exec: cannot start spdy session");
            return;
        }
    };
    let resizing = opts.tty && matches!(protocol, "v3.channel.k8s.io" | "v4.channel.k8s.io");
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(resizing);
    let mut by_type: Vec<(String, IncomingStream)> = Vec::new();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    let mut received = 0;
    while received < expected {
        tokio::select! {
            s = session.incoming.recv() => {
                let Some(s) = s else {
                    tracing::debug!("exec: client went away before opening its streams");
                    return;
                };
                let kind = header(&s.headers, "streamtype").unwrap_or_default().to_string();
                match kind.as_str() {
                    "error" | "stdin" | "stdout" | "stderr" | "resize" => {
                        received += 1;
                        by_type.push((kind, s));
                    }
                    other => tracing::warn!(stream_type = other, "exec: unexpected stream type"),
                }
            }
            _ = &mut deadline => {
                tracing::warn!("exec: timed out waiting for client to create streams");
                return;
            }
        }
    }
    let mut take = |kind: &str| {
        by_type
            .iter()
            .position(|(k, _)| k == kind)
            .map(|i| by_type.swap_remove(i).1)
    };
    let error = take("error");
    let stdin = take("stdin");
    let stdout = take("stdout");
    let stderr = take("stderr");
    let resize = take("resize");
    let handle = session.handle.clone();
    let gone = CancellationToken::new();
    let mut tasks = TaskGuard::default();
    let (g, h) = (gone.clone(), handle.clone());
    let mut incoming = session.incoming;
    tasks.spawn(async move {
        // Streams opened later are accepted (replied to) and ignored.
        tokio::select! {
            _ = async { while incoming.recv().await.is_some() {} } => {}
            _ = h.closed() => {}
        }
        h.closed().await;
        g.cancel();
    });
    let io = CommandIo {
        stdin: stdin.map(|s| s.data),
        resize: resize.map(|s| s.data),
        out: Box::new(SpdyOutput {
            handle,
            stdout: stdout.map(|s| s.id),
            stderr: stderr.map(|s| s.id),
            error: error.map(|s| s.id),
        }),
        gone,
        json_status: protocol == "v4.channel.k8s.io",
    };
    run::run(io, opts, start).await;
    drop(tasks);
    drop(session.handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_query() {
        let o = CommandOptions::from_query(
            "stdin=true&stdout=1&tty=1&stderr=1&command=sh&command=-c&command=echo+a%3Bb",
        )
        .unwrap();
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
        assert_eq!(o.command, ["sh", "-c", "echo a;b"]);
        assert_eq!(
            CommandOptions::from_query("command=ls&tty=1").unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
    }
}
