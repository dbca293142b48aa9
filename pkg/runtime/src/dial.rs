//! Connecting to a port inside a pod's network namespace (port-forward), as containerd's
//! PortForward does: a thread of its own joins the namespace (a thread's network namespace
//! is its own: a tokio worker never changes it) and connects to localhost:<port>, IPv4
//! then IPv6. The socket stays in the namespace it was made in, so the caller uses it from
//! anywhere.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::{Error, Result};

/// How long a connection may take (to localhost: only a full backlog gets near it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect to localhost:`port` in network namespace `netns` (None: the node's own, a
/// host-network pod); `name` names the namespace in errors (the sandbox's id), worded as
/// containerd's.
pub async fn dial(netns: Option<PathBuf>, name: &str, port: u16) -> Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let name = name.to_string();
    std::thread::Builder::new()
        .name("port-forward-dial".into())
        .spawn(move || {
            let _ = tx.send(connect(netns, &name, port));
        })
        .map_err(Error::io("starting a thread to connect with"))?;
    rx.await
        .map_err(|_| Error::Failed("the connecting thread ended without an answer".into()))?
}

/// On a thread that is then dropped: join `netns`, connect.
fn connect(netns: Option<PathBuf>, name: &str, port: u16) -> Result<TcpStream> {
    if let Some(path) = &netns {
        let ns = File::open(path).map_err(Error::io(format!(
            "opening network namespace {}",
            path.display()
        )))?;
        // SAFETY: setns on a namespace file we hold open; it changes this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(Error::io(format!(
                "entering network namespace {}",
                path.display()
            ))(std::io::Error::last_os_error()));
        }
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let e4 = match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(stream) => return Ok(stream),
        Err(e) => e,
    };
    let e6 = match TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT) {
        Ok(stream) => return Ok(stream),
        Err(e) => e,
    };
    Err(Error::Failed(format!(
        "failed to connect to localhost:{port} inside namespace {name:?}, IPv4: dial tcp4 {v4}: connect: {} IPv6 dial tcp6 {v6}: connect: {}",
        describe(&e4),
        describe(&e6)
    )))
}

/// An error as Go words a syscall error ("connection refused").
fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let text = nix::errno::Errno::from_raw(code).desc();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text.to_string(),
            }
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_go() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(describe(&refused), "connection refused");
    }

    #[tokio::test]
    async fn connects_in_this_namespace_without_one() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = dial(None, "host", port).await.unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), stream.local_addr().unwrap());
    }
}
