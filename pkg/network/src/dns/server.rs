//! The DNS server's sockets: one task per UDP socket (answers from Records inline, upstream
//! work in its own task, bounded), one per TCP listener and one per TCP connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::handler::{Start, start};
use super::records::Records;
use super::upstream::{read_framed, write_framed};

/// How many requests may wait on upstreams at once; more are dropped (clients retry).
const MAX_PENDING: usize = 1024;

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What every socket task shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub records: watch::Receiver<Arc<Records>>,
    pub upstreams: Arc<[SocketAddr]>,
    pub pending: Arc<Semaphore>,
}

impl Shared {
    pub(crate) fn new(records: watch::Receiver<Arc<Records>>, upstreams: &[SocketAddr]) -> Self {
        Shared {
            records,
            upstreams: upstreams.into(),
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
        }
    }

    fn start(&self, raw: &[u8], tcp: bool) -> Start {
        let records = self.records.borrow().clone();
        start(&records, raw, !self.upstreams.is_empty(), tcp)
    }
}

/// Answer the queries arriving on `socket` until `stop`.
pub(crate) async fn serve_udp(socket: UdpSocket, shared: Shared, stop: CancellationToken) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            () = stop.cancelled() => return,
            got = socket.recv_from(&mut buf) => match got {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS UDP receive");
                    continue;
                }
            },
        };
        let Some(raw) = buf.get(..n) else { continue };
        match shared.start(raw, false) {
            Start::Ignore => {}
            Start::Reply(bytes) => send(&socket, &bytes, peer).await,
            Start::Network(pending) => {
                let Ok(permit) = shared.pending.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many DNS queries waiting upstream; dropped");
                    continue;
                };
                let socket = socket.clone();
                let upstreams = shared.upstreams.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    tokio::select! {
                        () = stop.cancelled() => {}
                        bytes = pending.finish(&upstreams) => {
                            if let Some(bytes) = bytes {
                                send(&socket, &bytes, peer).await;
                            }
                        }
                    }
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, peer).await {
        tracing::debug!(%peer, error = %e, "DNS UDP send");
    }
}

/// Accept TCP connections on `listener` until `stop`.
pub(crate) async fn serve_tcp(listener: TcpListener, shared: Shared, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (shared, stop) = (shared.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = connection(stream, peer, shared) => {}
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "DNS TCP accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answer one connection's queries in turn until it closes or idles.
async fn connection(mut stream: TcpStream, peer: SocketAddr, shared: Shared) {
    loop {
        let raw = match tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(_)) | Err(_) => return,
        };
        let bytes = match shared.start(&raw, true) {
            Start::Ignore => continue,
            Start::Reply(bytes) => Some(bytes),
            Start::Network(pending) => pending.finish(&shared.upstreams).await,
        };
        if let Some(bytes) = bytes
            && let Err(e) = write_framed(&mut stream, &bytes).await
        {
            tracing::debug!(%peer, error = %e, "DNS TCP write");
            return;
        }
    }
}
