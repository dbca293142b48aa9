//! minik's cluster DNS, in process (in place of CoreDNS and its kubernetes plugin): answers
//! for Services, headless endpoints and pods under the cluster domain, PTRs for their
//! addresses, and every other name forwarded to the host's resolvers; UDP and TCP.
//!
//! - records.rs: Services and EndpointSlices to the records of the cluster domain.
//! - handler.rs: one request to its response; server.rs: the sockets.
//! - upstream.rs: forwarding, and the resolvers of a resolv.conf.

mod handler;
mod names;
mod records;
mod server;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use minik_controllers::Informer;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use records::{Lookup, Records, TTL};
pub use upstream::upstreams_from_resolv_conf;

/// How long `run` waits for the first lists before serving what it has (as CoreDNS does).
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// How long `run` lets changes gather before rebuilding the records.
const REBUILD_DELAY: Duration = Duration::from_millis(50);

/// Tries at a port both UDP and TCP are free on, when the port is left to the kernel.
const BIND_TRIES: usize = 16;

/// Where and what the cluster DNS serves.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// Where to serve, UDP and TCP both (production: 10.43.0.10:53; tests: 127.0.0.1:0).
    pub listen: Vec<SocketAddr>,
    /// The cluster domain, "cluster.local".
    pub domain: String,
    /// Resolvers that answer every other name (from the host's resolv.conf).
    pub upstreams: Vec<SocketAddr>,
}

/// The cluster DNS's errors.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cluster DNS: no address to listen on")]
    NoListenAddress,
    #[error("cluster DNS: cannot listen on {proto} {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("cluster DNS: a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The cluster DNS, its sockets bound.
pub struct Dns {
    options: DnsOptions,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Dns {
    /// Bind every listen address (UDP and TCP on the same port); a clear DnsError if in use.
    pub async fn bind(options: DnsOptions) -> Result<Dns, DnsError> {
        if options.listen.is_empty() {
            return Err(DnsError::NoListenAddress);
        }
        let mut dns = Dns {
            options,
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for addr in dns.options.listen.clone() {
            let (udp, tcp) = bind_pair(addr).await?;
            tracing::info!(addr = %udp.local_addr().unwrap_or(addr), "cluster DNS listening");
            dns.udp.push(udp);
            dns.tcp.push(tcp);
        }
        // Forwarding to itself would loop until the timeout.
        let local = dns.local_addrs();
        dns.options.upstreams.retain(|u| !local.contains(u));
        Ok(dns)
    }

    /// The bound addresses (actual ports).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Serve answers from `records` (swapped whole when the cluster changes) until `stop`.
    pub async fn serve(
        self,
        records: watch::Receiver<Arc<Records>>,
        stop: CancellationToken,
    ) -> Result<(), DnsError> {
        let shared = server::Shared::new(records, &self.options.upstreams);
        let mut tasks = JoinSet::new();
        for socket in self.udp {
            tasks.spawn(server::serve_udp(socket, shared.clone(), stop.clone()));
        }
        for listener in self.tcp {
            tasks.spawn(server::serve_tcp(listener, shared.clone(), stop.clone()));
        }
        while let Some(done) = tasks.join_next().await {
            done?;
        }
        Ok(())
    }

    /// Serve from the cluster's Services and EndpointSlices (watched through `client` with
    /// minik_controllers::Informer), rebuilding Records on each change.
    pub async fn run(self, client: kube::Client, stop: CancellationToken) -> Result<(), DnsError> {
        let services = Informer::new(Api::<Service>::all(client.clone()));
        let slices = Informer::new(Api::<EndpointSlice>::all(client));
        let changed = Arc::new(Notify::new());
        let notify = changed.clone();
        services.on(move |_, _| notify.notify_one());
        let notify = changed.clone();
        slices.on(move |_, _| notify.notify_one());
        let mut informers = JoinSet::new();
        informers.spawn(services.clone().run(stop.clone()));
        informers.spawn(slices.clone().run(stop.clone()));
        let synced = async {
            services.synced().await;
            slices.synced().await;
        };
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            done = tokio::time::timeout(SYNC_WAIT, synced) => if done.is_err() {
                tracing::warn!("cluster DNS: serving before the first Service and EndpointSlice lists");
            },
        }
        let domain = self.options.domain.clone();
        let build = move || {
            let svcs: Vec<Service> = services
                .store()
                .state()
                .iter()
                .map(|s| (**s).clone())
                .collect();
            let eps: Vec<EndpointSlice> = slices
                .store()
                .state()
                .iter()
                .map(|s| (**s).clone())
                .collect();
            Arc::new(Records::build(&domain, &svcs, &eps))
        };
        let (tx, rx) = watch::channel(build());
        let rebuild_stop = stop.clone();
        informers.spawn(async move {
            loop {
                tokio::select! {
                    () = rebuild_stop.cancelled() => return,
                    () = changed.notified() => {}
                }
                tokio::time::sleep(REBUILD_DELAY).await;
                tx.send_replace(build());
            }
        });
        let served = self.serve(rx, stop.clone()).await;
        stop.cancel();
        while informers.join_next().await.is_some() {}
        served
    }
}

/// A UDP socket and a TCP listener on the same address and port.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let udp_err = |source| DnsError::Bind {
        addr,
        proto: "UDP",
        source,
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let udp = UdpSocket::bind(addr).await.map_err(udp_err)?;
        let port = udp.local_addr().map_err(udp_err)?.port();
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match TcpListener::bind(tcp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // A kernel-chosen UDP port may be taken for TCP: choose again.
            Err(e) if addr.port() == 0 && tries < BIND_TRIES => {
                tracing::debug!(port, error = %e, "DNS TCP port taken; trying another");
            }
            Err(source) => {
                return Err(DnsError::Bind {
                    addr: tcp_addr,
                    proto: "TCP",
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod run_tests;
#[cfg(test)]
mod tests;
