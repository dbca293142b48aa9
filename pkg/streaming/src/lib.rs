//! Kubernetes' streaming protocols, server side, as the kubelet serves exec, attach and
//! port-forward: the process (or port) side is given by the caller, this crate speaks the
//! wire protocols to the client.
//!
//! - [`Streams`]: what a remote command (exec, attach) is attached to.
//! - [`CommandOptions`]: what the client asked for (stdin, stdout, stderr, tty, command).
//! - [`Duplex`]: a connection to a forwarded port.
//! - [`serve_command`]: exec and attach over WebSocket (`channel.k8s.io` v1-v5, base64) or
//!   SPDY/3.1 (`X-Stream-Protocol-Version` v1-v4).
//! - [`serve_port_forward`]: port-forward over SPDY/3.1, SPDY tunnelled in WebSocket, or
//!   WebSocket channels.
//!
//! Both take the request (with hyper's upgrade extension) and return the response to
//! send: a 101 and a spawned task that runs the session, or a 400/403 with a text body
//! when the request cannot be upgraded (no upgrade headers or no
//! `X-Stream-Protocol-Version`: 400; no subprotocol in common: 403, with
//! `X-Accepted-Stream-Protocol-Versions` for SPDY; clients fall back from WebSocket to
//! SPDY on any non-101).
//!
//! What the client sees, as from the kubelet:
//! - exec/attach over WebSocket: an empty message on the lowest channel asked for (stdout,
//!   else stderr, else error) right after the upgrade; at the end the status on channel 3,
//!   then a close frame.
//! - exec/attach over SPDY: a SYN_REPLY to every stream; at the end FIN on stdout and
//!   stderr, the status and FIN on the error stream, then GOAWAY.
//! - the status: v4/v5 a JSON `metav1.Status` (see [`status`]); v1-v3 the failure's
//!   message as text, nothing on success.
//! - port-forward: a failed dial's error text on that connection's error stream/channel.

mod command;
pub(crate) mod negotiate;
mod portforward;
pub mod proxy;
pub(crate) mod spdy;
pub mod status;
mod task;
pub(crate) mod ws;

pub use command::serve_command;
pub use portforward::serve_port_forward;

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed byte source (a process's stdout or stderr).
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed byte sink (a process's stdin).
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// A two-way byte stream (a connection to a pod's port).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// A terminal's size, as the resize stream sends it (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// What a remote command's client asked for (the query of an exec or attach request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// The command (exec only; `command=` repeated).
    pub command: Vec<String>,
    /// The terminal's size as the client sent it before the command started (tty only), so
    /// the process starts with it.
    pub size: Option<TerminalSize>,
}

/// The process side of a remote command.
pub struct Streams {
    /// The process's stdin (None: the client did not ask for it).
    pub stdin: Option<Writer>,
    pub stdout: Option<Reader>,
    /// None with a TTY (its output is all on stdout).
    pub stderr: Option<Reader>,
    /// Sets the terminal's size (TTY only).
    pub resize: Option<Box<dyn Fn(TerminalSize) + Send + Sync>>,
    /// Resolves when the process ends, with its exit code (Err: why it could not run or
    /// was lost). Dropping the `Streams` (the client went away) ends what the command
    /// started: an exec'd process is killed; an attached container keeps running.
    pub exit: BoxFuture<'static, Result<i32, String>>,
}

#[cfg(test)]
mod tests;
