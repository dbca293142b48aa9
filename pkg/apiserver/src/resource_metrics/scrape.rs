//! The scraper, as k3s's metrics-server: every `RESOLUTION` it lists the Nodes and, for
//! each one no kubelet of this process reports (an agent's, in another process), gets
//! `https://<InternalIP>:<kubelet port>/stats/summary` with the API server's kubelet client
//! certificate (the kubelet's serving certificate checked against the CA), and puts the
//! node's and its pods' usage into the `UsageStore`. Nodes are scraped concurrently, at
//! most `MAX_IN_FLIGHT` at once, each within `TIMEOUT`. A node that fails is told once per
//! change of its error and skipped: what was scraped of it goes stale. What was scraped of
//! a deleted node is forgotten.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use http_body_util::{BodyExt, Empty, Limited};
use minik_api::usage::UsageStore;
use minik_registry::{ApiError, ListParams, Registry};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::summary::{self, SummaryError};
use crate::proxy::kubelet::{KubeletClient, kubelet_address};

/// How often nodes are scraped (metrics-server's default `--metric-resolution`).
pub const RESOLUTION: Duration = Duration::from_secs(15);
/// How long one node's scrape may take (metrics-server's: 10 s).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many nodes are scraped at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// A summary larger than this is refused.
const MAX_BODY: usize = 16 << 20;
const PATH: &str = "/stats/summary";

/// Why a node could not be scraped.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("the node has no address and port for its kubelet")]
    NoAddress,
    #[error("GET https://{addr}{PATH}: {message}")]
    Request { addr: SocketAddr, message: String },
    #[error("GET https://{addr}{PATH}: {status}: {body}")]
    Status {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
    #[error("GET https://{addr}{PATH}: timed out after {TIMEOUT:?}")]
    Timeout { addr: SocketAddr },
    #[error("https://{addr}{PATH}: {source}")]
    Summary {
        addr: SocketAddr,
        source: SummaryError,
    },
}

impl ScrapeError {
    /// Failures expected for a while (a kubelet that has not measured anything yet, or
    /// a node that says nowhere its kubelet is) are told at debug level.
    fn is_quiet(&self) -> bool {
        matches!(
            self,
            ScrapeError::NoAddress
                | ScrapeError::Summary {
                    source: SummaryError::NoNodeUsage,
                    ..
                }
        )
    }
}

/// What the scraper reads and writes.
#[derive(Clone)]
pub struct Scraper {
    pub registry: Registry,
    pub kubelet: KubeletClient,
    pub usage: UsageStore,
}

/// Scrape every `RESOLUTION` (the first time one `RESOLUTION` after the start, when this
/// process's kubelets have reported) until `stop`.
pub async fn run(scraper: Scraper, stop: CancellationToken) {
    let start = tokio::time::Instant::now() + RESOLUTION;
    let mut tick = tokio::time::interval_at(start, RESOLUTION);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = scraper.scrape_all(&mut failing) => {}
        }
    }
}

impl Scraper {
    /// One round: scrape the nodes no kubelet of this process reports, forget the
    /// deleted ones. `failing` holds each failing node's last error, told when it changes.
    pub async fn scrape_all(&self, failing: &mut HashMap<String, String>) {
        let nodes = minik_api::builtin("", "v1", "nodes");
        let list = match self
            .registry
            .list(nodes, None, &ListParams::default())
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "resource metrics: listing nodes");
                return;
            }
        };
        let names: HashSet<String> = list.items.iter().filter_map(|n| name(n)).collect();
        for gone in self
            .usage
            .scraped_nodes()
            .into_iter()
            .filter(|n| !names.contains(n))
        {
            self.usage.forget_scraped(&gone);
        }
        failing.retain(|n, _| names.contains(n));
        let targets: Vec<(String, Option<SocketAddr>)> = list
            .items
            .iter()
            .filter_map(|n| Some((name(n)?, kubelet_address(n))))
            .filter(|(n, _)| !self.usage.reported_locally(n))
            .collect();
        let results: Vec<(String, Result<(), ScrapeError>)> = futures::stream::iter(targets)
            .map(|(node, addr)| async move {
                let result = match addr {
                    Some(addr) => self.scrape(&node, addr).await,
                    None => Err(ScrapeError::NoAddress),
                };
                (node, result)
            })
            .buffer_unordered(MAX_IN_FLIGHT)
            .collect()
            .await;
        for (node, result) in results {
            tell(failing, node, result);
        }
    }

    /// Scrape one node's kubelet at `addr` into the store.
    pub async fn scrape(&self, node: &str, addr: SocketAddr) -> Result<(), ScrapeError> {
        let body = tokio::time::timeout(TIMEOUT, self.get(addr))
            .await
            .map_err(|_| ScrapeError::Timeout { addr })??;
        let (usage, pods) =
            summary::parse(&body).map_err(|source| ScrapeError::Summary { addr, source })?;
        self.usage.report_scraped(node, usage, pods);
        Ok(())
    }

    /// The body of the kubelet's summary.
    async fn get(&self, addr: SocketAddr) -> Result<bytes::Bytes, ScrapeError> {
        let failed = |e: &dyn std::fmt::Display| ScrapeError::Request {
            addr,
            message: e.to_string(),
        };
        let mut sender = self
            .kubelet
            .connect::<Empty<bytes::Bytes>>(addr)
            .await
            .map_err(|e| failed(&api_message(&e)))?;
        let req = http::Request::get(PATH)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| failed(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| failed(&e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        if !status.is_success() {
            return Err(ScrapeError::Status {
                addr,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
        Ok(body)
    }
}

fn name(node: &Value) -> Option<String> {
    node.pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An ApiError's message (its Display is the Status it would be).
fn api_message(e: &ApiError) -> String {
    match e {
        ApiError::Denied { message, .. } | ApiError::Internal(message) => message.clone(),
        other => other.to_string(),
    }
}

/// Tell a node's scrape result when it differs from the last one told.
fn tell(failing: &mut HashMap<String, String>, node: String, result: Result<(), ScrapeError>) {
    match result {
        Ok(()) => {
            if failing.remove(&node).is_some() {
                tracing::info!(node, "resource metrics: scraping the node's kubelet again");
            }
        }
        Err(e) => {
            let message = e.to_string();
            if failing.get(&node) == Some(&message) {
                return;
            }
            if e.is_quiet() {
                tracing::debug!(node, error = %message, "resource metrics: node not scraped");
            } else {
                tracing::warn!(node, error = %message, "resource metrics: scraping the node's kubelet");
            }
            failing.insert(node, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_told_once_until_it_changes_or_ends() {
        let mut failing = HashMap::new();
        let addr: SocketAddr = "10.0.0.1:10250".parse().unwrap();
        let timeout = || Err(ScrapeError::Timeout { addr });
        tell(&mut failing, "n1".into(), timeout());
        let first = failing.get("n1").cloned();
        assert!(first.as_deref().is_some_and(|m| m.contains("timed out")));
        tell(&mut failing, "n1".into(), Err(ScrapeError::NoAddress));
        assert_ne!(failing.get("n1").cloned(), first);
        tell(&mut failing, "n1".into(), Ok(()));
        assert!(failing.is_empty());
        assert!(ScrapeError::NoAddress.is_quiet());
        assert!(!ScrapeError::Timeout { addr }.is_quiet());
    }
}
