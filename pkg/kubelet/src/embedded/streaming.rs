//! `kubectl exec`, `attach` and `port-forward` on the embedded runtime's containers:
//!
//! - exec: the command runs in the container through the backend (its own pipes or
//!   terminal); dropping the streams kills it.
//! - attach: the container's stdin pipe (when it was made with `stdin: true`), its output
//!   followed from its log file as it is written (stdout and stderr apart, or the terminal's
//!   output), and terminal resizes sent to it; the attachment ends when the container does,
//!   and leaving it leaves the container running.
//! - port-forward: a connection made inside the pod's network namespace.
//!
//! A CRI runtime serves exec and attach from its own streaming server (`stream_url`).

use std::sync::Arc;
use std::time::Duration;

use minik_runtime::ContainerState;
use minik_streaming::{CommandOptions, Duplex, Reader, Streams, TerminalSize};
use tokio::sync::mpsc;

use super::EmbeddedRuntime;
use crate::backend::Backend;
use crate::logs::{self, Options};

/// How often an attached container is looked at to see whether it still runs.
const WATCH: Duration = Duration::from_millis(200);

/// The running container `name` of pod `uid` (its latest run).
fn running(
    rt: &EmbeddedRuntime,
    uid: &str,
    name: &str,
) -> Result<minik_runtime::Container, String> {
    rt.containers_of(uid)
        .into_iter()
        .rev()
        .find(|c| c.config.name == name && matches!(c.state, ContainerState::Running { .. }))
        .ok_or_else(|| format!("container {name:?} is not running"))
}

pub(super) async fn stream_url(
    rt: &EmbeddedRuntime,
    uid: &str,
    name: &str,
    opts: &CommandOptions,
    attach: bool,
) -> Result<Option<String>, String> {
    let c = running(rt, uid, name)?;
    rt.runtime
        .stream_url(&c.config.id, opts, attach)
        .await
        .map_err(|e| e.to_string())
}

pub(super) async fn exec(
    rt: &EmbeddedRuntime,
    uid: &str,
    name: &str,
    opts: CommandOptions,
) -> Result<Streams, String> {
    let c = running(rt, uid, name)?;
    if opts.command.is_empty() {
        return Err("no command given".into());
    }
    rt.runtime
        .exec_streams(
            &c.config.id,
            &opts.command,
            opts.tty.then(|| {
                opts.size.unwrap_or(TerminalSize {
                    width: 0,
                    height: 0,
                })
            }),
            opts.stdin,
            opts.stdout,
            opts.stderr && !opts.tty,
        )
        .await
        .map_err(|e| e.to_string())
}

fn is_running(backend: &dyn Backend, id: &str) -> bool {
    backend
        .container(id)
        .is_some_and(|c| matches!(c.state, ContainerState::Running { .. }))
}

/// What the container writes to `stream` (None: both) from now on, until it stops.
fn follow(
    backend: Arc<dyn Backend>,
    c: &minik_runtime::Container,
    stream: Option<&'static str>,
) -> Reader {
    let opts = Options {
        follow: true,
        stream,
        ..Options::default()
    };
    let id = c.config.id.clone();
    let (tx, rx) = mpsc::channel(16);
    let running = move || is_running(backend.as_ref(), &id);
    // From where the file ends now: what was written before the attachment is not shown,
    // and what the container writes from now on is.
    let path = c.config.log_path.clone();
    let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
    tokio::spawn(logs::stream_from(path, offset, opts, running, tx));
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Box::pin(tokio_util::io::StreamReader::new(chunks))
}

pub(super) async fn attach(
    rt: &EmbeddedRuntime,
    uid: &str,
    name: &str,
    opts: CommandOptions,
) -> Result<Streams, String> {
    let c = running(rt, uid, name)?;
    let id = c.config.id.clone();
    let backend = rt.runtime.clone();
    let stdin = if opts.stdin && c.config.stdin {
        Some(backend.attach_input(&id).await.map_err(|e| e.to_string())?)
    } else {
        None
    };
    let tty = opts.tty && c.config.tty;
    let stdout = opts
        .stdout
        .then(|| follow(backend.clone(), &c, (!tty).then_some("stdout")));
    let stderr = (opts.stderr && !tty).then(|| follow(backend.clone(), &c, Some("stderr")));
    let resize: Option<Box<dyn Fn(minik_streaming::TerminalSize) + Send + Sync>> = tty.then(|| {
        let (backend, id) = (backend.clone(), id.clone());
        Box::new(move |size| {
            let (backend, id) = (backend.clone(), id.clone());
            tokio::spawn(async move {
                if let Err(e) = backend.resize(&id, size).await {
                    tracing::debug!(container = id, error = %e, "resizing a terminal");
                }
            });
        }) as Box<dyn Fn(minik_streaming::TerminalSize) + Send + Sync>
    });
    let exit = Box::pin(async move {
        loop {
            match backend.container(&id).map(|c| c.state) {
                // As kubelet: an attachment ends in Success however the container did.
                Some(ContainerState::Exited { .. }) => return Ok(0),
                None => return Err(format!("container {id} is gone")),
                _ => tokio::time::sleep(WATCH).await,
            }
        }
    });
    Ok(Streams {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    })
}

pub(super) async fn port_forward(
    rt: &EmbeddedRuntime,
    uid: &str,
    port: u16,
) -> std::io::Result<Box<dyn Duplex>> {
    if rt.runtime.sandbox(uid).is_none() {
        return Err(std::io::Error::other(format!(
            "pod sandbox {uid} not found"
        )));
    }
    rt.runtime
        .port_forward(uid, port)
        .await
        .map_err(std::io::Error::other)
}
