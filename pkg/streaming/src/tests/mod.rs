//! End-to-end tests: a hyper server (with upgrades) on 127.0.0.1 whose handler calls
//! [`serve_command`] with fake processes and [`serve_port_forward`] with a dial to local
//! echo servers, driven by a tokio-tungstenite client and a minimal SPDY client.

mod exec;
mod port_forward;
mod spdy_client;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::body::Body;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{BoxFuture, CommandOptions, Duplex, Streams, serve_command, serve_port_forward};

/// Ids of fake processes whose streams were dropped.
static DROPPED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

struct DropFlag(String);
impl Drop for DropFlag {
    fn drop(&mut self) {
        DROPPED.lock().unwrap().insert(self.0.clone());
    }
}

/// Terminal sizes the fake processes were given, by id.
static RESIZES: LazyLock<Mutex<HashMap<String, Vec<crate::TerminalSize>>>> =
    LazyLock::new(Default::default);

pub(crate) fn resizes(id: &str) -> Vec<crate::TerminalSize> {
    RESIZES.lock().unwrap().get(id).cloned().unwrap_or_default()
}

pub(crate) fn was_dropped(id: &str) -> bool {
    DROPPED.lock().unwrap().contains(id)
}

/// Fake processes by `command[0]`: `echo` (stdin to stdout, "err\n" on stderr, exit 0 at
/// stdin EOF), `tty ID` (echo, noting its terminal sizes), `exit N` ("out\n", "err\n", exit N), `hang ID` (never exits; notes its
/// drop), `fail` (cannot start).
fn fake_start(opts: CommandOptions) -> BoxFuture<'static, Result<Streams, String>> {
    Box::pin(async move {
        let cmd = opts.command.clone();
        if let (Some("tty"), Some(size)) = (cmd.first().map(String::as_str), opts.size) {
            // The size it starts with.
            let id = cmd.get(1).cloned().unwrap_or_default();
            RESIZES.lock().unwrap().entry(id).or_default().push(size);
        }
        let (stdin_w, mut stdin_r) = tokio::io::duplex(1024);
        let (mut out_w, out_r) = tokio::io::duplex(1024);
        let (mut err_w, err_r) = tokio::io::duplex(1024);
        let exit: BoxFuture<'static, Result<i32, String>> = match cmd.first().map(String::as_str) {
            Some("echo" | "tty") => Box::pin(async move {
                let _ = err_w.write_all(b"err\n").await;
                drop(err_w);
                let mut buf = [0u8; 1024];
                loop {
                    let n = stdin_r.read(&mut buf).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Ok(0);
                    }
                    out_w
                        .write_all(&buf[..n])
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }),
            Some("exit") => {
                let code: i32 = cmd.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                Box::pin(async move {
                    // An output nobody asked for is a closed pipe.
                    let _ = out_w.write_all(b"out\n").await;
                    let _ = err_w.write_all(b"err\n").await;
                    Ok(code)
                })
            }
            Some("hang") => {
                let flag = DropFlag(cmd.get(1).cloned().unwrap_or_default());
                Box::pin(async move {
                    let _flag = flag;
                    out_w
                        .write_all(b"started\n")
                        .await
                        .map_err(|e| e.to_string())?;
                    let _keep = (out_w, err_w, stdin_r);
                    std::future::pending::<()>().await;
                    Ok(0)
                })
            }
            _ => return Err("boom: cannot start".to_string()),
        };
        Ok(Streams {
            stdin: opts.stdin.then(|| Box::pin(stdin_w) as crate::Writer),
            stdout: opts.stdout.then(|| Box::pin(out_r) as crate::Reader),
            stderr: opts.stderr.then(|| Box::pin(err_r) as crate::Reader),
            resize: (cmd.first().map(String::as_str) == Some("tty")).then(|| {
                let id = cmd.get(1).cloned().unwrap_or_default();
                Box::new(move |size| {
                    RESIZES
                        .lock()
                        .unwrap()
                        .entry(id.clone())
                        .or_default()
                        .push(size)
                }) as Box<dyn Fn(crate::TerminalSize) + Send + Sync>
            }),
            exit,
        })
    })
}

/// Starts an echo server that answers each read with `tag:` + the data.
pub(crate) async fn echo_server(tag: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut reply = format!("{tag}:").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    if s.write_all(&reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Starts the server; `ports` maps forwarded ports to local echo servers (others fail
/// to dial).
pub(crate) async fn start_server(ports: HashMap<u16, SocketAddr>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let ports = Arc::new(ports);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let ports = ports.clone();
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let ports = ports.clone();
                async move {
                    let req = req.map(Body::new);
                    let resp = if req.uri().path() == "/exec" {
                        match CommandOptions::from_query(req.uri().query().unwrap_or_default()) {
                            Ok(opts) => serve_command(req, opts, fake_start).await,
                            Err(e) => {
                                crate::negotiate::error_response(http::StatusCode::BAD_REQUEST, e)
                            }
                        }
                    } else {
                        serve_port_forward(req, move |port| {
                            let target = ports.get(&port).copied();
                            Box::pin(async move {
                                let Some(target) = target else {
                                    return Err(std::io::Error::other(format!(
                                        "failed to connect to localhost:{port} inside namespace \"test\""
                                    )));
                                };
                                let s = TcpStream::connect(target).await?;
                                Ok(Box::new(s) as Box<dyn Duplex>)
                            })
                        })
                        .await
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    });
    addr
}

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a WebSocket to `path` with the given subprotocols; returns it and the chosen one.
pub(crate) async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    protocols: &str,
) -> Result<(Ws, Option<String>), tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    if !protocols.is_empty() {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string());
    Ok((ws, proto))
}

/// The next message (failing the test after 10 s).
pub(crate) async fn next_msg(ws: &mut Ws) -> Option<Message> {
    use futures::StreamExt;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a message");
        match m {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(m)) => return Some(m),
        }
    }
}

/// Waits (at most 10 s) for a condition.
pub(crate) async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
