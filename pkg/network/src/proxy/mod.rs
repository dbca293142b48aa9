//! The service proxy, as kube-proxy's nftables mode does it: Services and EndpointSlices
//! become one nftables table (`ip minik-proxy`) that DNATs cluster, external, load-balancer
//! IPs and node ports to endpoints. Each sync renders the whole table and puts it in place in one
//! transaction. Also ServiceLB (servicelb.rs), which gives LoadBalancer services the nodes'
//! addresses as k3s does.
//!
//! - model.rs: Services and slices to one plan per service port (endpoints chosen).
//! - render.rs: plans to the table's nft contents.
//! - update.rs: the transaction that puts them in place (a new table, or an update that
//!   keeps session-affinity memory).
//! - servicelb.rs: the LoadBalancer status controller.
//! - conntrack.rs: UDP flows to endpoints that went away are flushed after a sync.

mod conntrack;
mod model;
mod render;
mod servicelb;
#[cfg(test)]
mod tests;
mod update;

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use minik_controllers::Informer;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::nft::{Nft, NftError};

pub use servicelb::run_servicelb;

/// The proxy's table unless the options name another (family and name).
#[cfg(test)]
pub(crate) const TABLE: &str = "ip minik-proxy";
/// How long a failed sync waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// How this node's proxy is set up.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub node_name: String,
    /// The cluster CIDR ("10.42.0.0/16"): pod traffic leaving it is masqueraded.
    pub cluster_cidr: String,
    /// Cluster IPs served on this host itself (the cluster DNS address): no rules for them.
    pub skip_ips: Vec<IpAddr>,
    /// The table's name (family ip), "minik-proxy".
    pub table: String,
}

impl ProxyOptions {
    fn table(&self) -> String {
        format!("ip {}", self.table)
    }
}

/// Why the proxy stopped or could not clean up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    #[error("API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cluster CIDR {0:?} is not an IPv4 CIDR (a.b.c.d/n)")]
    ClusterCidr(String),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The whole table `ip minik-proxy` as one nft script: it (re)creates the table atomically
/// (`table ip minik-proxy {}`, `delete table ip minik-proxy`, then the full table), so
/// applying it twice is fine.
pub fn render(services: &[Service], slices: &[EndpointSlice], options: &ProxyOptions) -> String {
    update::recreate(&options.table(), &render_body(services, slices, options))
}

/// The table's contents alone (no delete): what the proxy keeps to compare the next sync with.
pub fn render_body(
    services: &[Service],
    slices: &[EndpointSlice],
    options: &ProxyOptions,
) -> String {
    let plans = model::plan(services, slices, &options.node_name, &options.skip_ips);
    render::body(&options.table(), &plans, &options.cluster_cidr)
}

/// The one transaction that turns the table applied from body `previous` into `next`
/// (only what changed), as each sync after the first applies it.
pub fn update_script(options: &ProxyOptions, previous: &str, next: &str) -> String {
    update::update(&options.table(), previous, next)
}

/// Whether `s` is an IPv4 CIDR such as 10.42.0.0/16 (it goes into the rules as is).
fn ipv4_cidr(s: &str) -> bool {
    s.split_once('/').is_some_and(|(ip, len)| {
        ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
    })
}

/// The script that removes the table (and is fine when it is absent).
pub fn delete_script(table: &str) -> String {
    format!("table {table} {{}}\ndelete table {table}\n")
}

/// Keep the table in step with the cluster until `stop`: informers on Services and
/// EndpointSlices; after a change the table is re-rendered and applied (bursts coalesce: at
/// most one sync runs and one waits). On stop the table stays, so services keep working while
/// minik restarts (as kube-proxy's rules do); `delete_script` removes it.
pub async fn run(
    client: kube::Client,
    options: ProxyOptions,
    nft: Arc<dyn Nft>,
    stop: CancellationToken,
) -> Result<(), ProxyError> {
    if !ipv4_cidr(&options.cluster_cidr) {
        return Err(ProxyError::ClusterCidr(options.cluster_cidr));
    }
    let services = Informer::new(Api::<Service>::all(client.clone()));
    let slices = Informer::new(Api::<EndpointSlice>::all(client));
    let wake = Arc::new(Notify::new());
    wake_on(&services, &wake);
    wake_on(&slices, &wake);
    let watches = stop.child_token();
    let _stop_watches = watches.clone().drop_guard();
    tokio::spawn(services.clone().run(watches.clone()));
    tokio::spawn(slices.clone().run(watches));

    let synced = async {
        services.synced().await;
        slices.synced().await;
    };
    tokio::select! {
        () = stop.cancelled() => return Ok(()),
        () = synced => {}
    }
    wake.notify_one();
    // The body the kernel has from the last sync; None: unknown, recreate.
    let mut applied: Option<String> = None;
    // The plans of the last sync applied, for the UDP flows to flush.
    let mut previous: Vec<model::PortPlan> = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = wake.notified() => {}
        }
        let svcs = cached(&services);
        let eps = cached(&slices);
        let started = Instant::now();
        let plans = model::plan(&svcs, &eps, &options.node_name, &options.skip_ips);
        let body = render::body(&options.table(), &plans, &options.cluster_cidr);
        let rendered = started.elapsed();
        match sync(&nft, &options.table(), body, &mut applied).await {
            Ok(how) => {
                let stale = conntrack::stale(&previous, &plans);
                previous = plans;
                if !stale.is_empty() {
                    tokio::task::spawn_blocking(move || conntrack::flush(&stale)).await?;
                }
                tracing::debug!(
                    services = svcs.len(),
                    slices = eps.len(),
                    how,
                    render_ms = rendered.as_millis() as u64,
                    total_ms = started.elapsed().as_millis() as u64,
                    "proxy rules synced"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "proxy rules sync failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(RETRY) => wake.notify_one(),
                }
            }
        }
    }
    Ok(())
}

/// Wake `wake` on every change `informer` sees (a Notify keeps one wake-up: changes during
/// a sync make one more sync).
fn wake_on<K>(informer: &Informer<K>, wake: &Arc<Notify>)
where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let wake = wake.clone();
    informer.on(move |_, _| wake.notify_one());
}

/// A copy of what `informer` holds.
fn cached<K>(informer: &Informer<K>) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    informer
        .store()
        .state()
        .iter()
        .map(|o| (**o).clone())
        .collect()
}

/// Put `body` in place: an update of what the last sync left (keeping session-affinity
/// memory), else, or if that fails, a whole new table. Says which it did.
async fn sync(
    nft: &Arc<dyn Nft>,
    table: &str,
    body: String,
    applied: &mut Option<String>,
) -> Result<&'static str, ProxyError> {
    if let Some(previous) = applied.take() {
        if previous == body {
            *applied = Some(body);
            return Ok("unchanged");
        }
        let script = update::update(table, &previous, &body);
        match apply(nft, script).await? {
            Ok(()) => {
                *applied = Some(body);
                return Ok("update");
            }
            Err(e) => tracing::warn!(error = %e, "proxy rules update failed; recreating the table"),
        }
    }
    apply(nft, update::recreate(table, &body)).await??;
    *applied = Some(body);
    Ok("recreate")
}

/// `nft.apply(script)` off the async threads.
async fn apply(nft: &Arc<dyn Nft>, script: String) -> Result<Result<(), NftError>, ProxyError> {
    let nft = nft.clone();
    Ok(tokio::task::spawn_blocking(move || nft.apply(&script)).await?)
}
