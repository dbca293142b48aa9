//! Connecting to a pod's port: from inside its network namespace (pods have no routed
//! address yet), by a short-lived thread that joins the sandbox's netns file first, or from
//! the host for pods on the host's network. The socket stays in the namespace it was made
//! in, so the caller uses it from any thread.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// Where a pod's ports are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The sandbox's network namespace; None on the host's network.
    pub netns: Option<PathBuf>,
    /// The pod's address, when it has one.
    pub pod_ip: Option<String>,
}

impl Endpoint {
    /// The host a probe without one connects to: the pod's address, or loopback inside
    /// the pod's own namespace.
    pub fn default_host(&self) -> String {
        self.pod_ip.clone().unwrap_or_else(|| "127.0.0.1".into())
    }

    /// Connect to host:port within `timeout`.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, String> {
        let netns = self.netns.clone();
        let target = format!("{host}:{port}");
        let connect = move || -> Result<TcpStream, String> {
            if let Some(path) = &netns {
                let file = std::fs::File::open(path)
                    .map_err(|e| format!("opening {}: {e}", path.display()))?;
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("joining the pod's network namespace: {e}"))?;
            }
            let addrs: Vec<SocketAddr> = (host_only(&target), port)
                .to_socket_addrs()
                .map_err(|e| format!("dial tcp {target}: {e}"))?
                .collect();
            let mut last = format!("dial tcp {target}: no address");
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = format!("dial tcp {addr}: connect: {}", describe(&e)),
                }
            }
            Err(last)
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread of its own: joining a namespace must not touch the runtime's threads.
        std::thread::Builder::new()
            .name("probe-connect".into())
            .spawn(move || {
                let _ = tx.send(connect());
            })
            .map_err(|e| format!("starting a probe thread: {e}"))?;
        let stream = rx
            .await
            .map_err(|_| "the probe thread ended".to_string())??;
        stream
            .set_nonblocking(true)
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
        tokio::net::TcpStream::from_std(stream).map_err(|e| format!("dial tcp {host}:{port}: {e}"))
    }
}

/// "host" of "host:port" (brackets of IPv6 literals removed).
fn host_only(target: &str) -> String {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// An error as Go's net package words it ("connection refused", "i/o timeout").
fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_from_the_host_without_a_namespace() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let host = Endpoint {
            netns: None,
            pod_ip: None,
        };
        assert_eq!(host.default_host(), "127.0.0.1");
        host.connect("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap();
        drop(listener);
        let refused = host
            .connect("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(refused.ends_with("connection refused"), "{refused}");
        assert_eq!(host_only("[::1]:80"), "::1");
    }
}
