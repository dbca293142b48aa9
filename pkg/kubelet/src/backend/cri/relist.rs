//! Relisting: what the runtime has now (sandboxes, containers, stats, images), read into
//! the cache, as kubelet's PLEG relists every second. Only sandboxes and containers with
//! minik's pod uid label (containers with the kubelet's id label too) are ours. A sandbox
//! new to the cache gets one verbose PodSandboxStatus (its netns and hostname); a container
//! new to the cache, or whose state changed, gets one ContainerStatus.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, UNIX_EPOCH};

use minik_cri::CriClient;
use minik_cri::proto::{ContainerStatus, PodSandboxState};
use minik_runtime::{Image, Result, Sandbox};

use super::cache::{ContainerEntry, ImageEntry, Listing, SandboxEntry};
use super::convert::{self, Layout};
use super::{Cri, cri_error, info, status};

/// How often the cache is refreshed.
pub(super) const PERIOD: Duration = Duration::from_secs(1);

/// Relist every `PERIOD` while the `Cri` lives (a failing runtime is logged once, then
/// again when it answers).
pub(super) async fn run(cri: Weak<Cri>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(PERIOD).await;
        let Some(cri) = cri.upgrade() else {
            return;
        };
        match cri.relist().await {
            Ok(()) if failing => {
                tracing::info!("the container runtime answers again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if failing => tracing::debug!(error = %e, "relisting the container runtime"),
            Err(e) => {
                tracing::warn!(error = %e, "relisting the container runtime");
                failing = true;
            }
        }
    }
}

/// A sandbox of ours new to the cache, from its verbose status.
pub(super) async fn sandbox_entry(
    client: &CriClient,
    layout: &Layout,
    cri_id: &str,
) -> Result<Option<SandboxEntry>> {
    let resp = match client.pod_sandbox_status(cri_id, true).await {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(cri_error(format!("sandbox {cri_id}"), e)),
    };
    let Some(s) = resp.status else {
        return Ok(None);
    };
    let info = info::sandbox(&resp.info);
    let config = status::sandbox_config(&s, info.hostname);
    if config.id.is_empty() {
        return Ok(None);
    }
    let attempt = s.metadata.as_ref().map_or(0, |m| m.attempt);
    let cri_config = convert::sandbox_config(&config, layout, attempt);
    let (netns, ip) = if config.host_network {
        (None, None)
    } else {
        let ip = s.network.as_ref().map(|n| n.ip.clone());
        (info.netns, ip.filter(|ip| !ip.is_empty()))
    };
    Ok(Some(SandboxEntry {
        sandbox: Sandbox {
            config,
            netns,
            created: status::time(s.created_at).unwrap_or(UNIX_EPOCH),
            ip,
        },
        config: cri_config,
        ready: s.state() == PodSandboxState::SandboxReady,
        touched: 0,
    }))
}

/// A container's status, None when the runtime has removed it.
pub(super) async fn container_status(
    client: &CriClient,
    cri_id: &str,
) -> Result<Option<ContainerStatus>> {
    match client.container_status(cri_id, false).await {
        Ok(r) => Ok(r.status),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(cri_error(format!("container {cri_id}"), e)),
    }
}

/// The cache entry of a container whose status is `s`: the one cached (with the config
/// the kubelet gave) with its state refreshed, else one rebuilt from the status.
pub(super) fn container_entry(
    s: &ContainerStatus,
    cached: Option<&ContainerEntry>,
    images: &[Image],
) -> Option<ContainerEntry> {
    let rebuilt = status::container(s, images)?;
    let container = match cached {
        Some(c) => {
            let mut container = c.container.clone();
            // A running container's pid is known only from its start; keep it.
            container.state = match (&c.container.state, rebuilt.state) {
                (
                    minik_runtime::ContainerState::Running { pid, .. },
                    minik_runtime::ContainerState::Running { started, .. },
                ) => minik_runtime::ContainerState::Running { pid: *pid, started },
                (_, state) => state,
            };
            container
        }
        None => rebuilt,
    };
    Some(ContainerEntry {
        container,
        cri_state: s.state,
        touched: 0,
    })
}

impl Cri {
    /// Read what the runtime has into the cache.
    pub(super) async fn relist(&self) -> Result<()> {
        let _one = self.relisting.lock().await;
        let (since, cached_sandboxes, cached_containers) = {
            let cache = self.lock();
            (
                cache.generation(),
                cache.sandboxes.clone(),
                cache.containers.clone(),
            )
        };
        let c = &self.client;
        let (sandboxes, containers, stats, images) = tokio::join!(
            c.list_pod_sandbox(None),
            c.list_containers(None),
            c.list_container_stats(None),
            c.list_images(None),
        );
        let sandboxes = sandboxes.map_err(|e| cri_error("listing sandboxes", e))?;
        let containers = containers.map_err(|e| cri_error("listing containers", e))?;
        let images = images.map_err(|e| cri_error("listing images", e))?;
        let stats = stats.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "listing container stats");
            Vec::new()
        });
        let mut listing = Listing::default();
        for i in &images {
            let entry = ImageEntry {
                image: status::image(i),
                pinned: i.pinned,
                touched: 0,
            };
            listing.images.insert(i.id.clone(), entry);
        }
        let image_list: Vec<Image> = listing.images.values().map(|e| e.image.clone()).collect();
        for s in sandboxes {
            if status::pod_uid(&s.labels).is_none() {
                continue;
            }
            let ready = s.state() == PodSandboxState::SandboxReady;
            let entry = match cached_sandboxes.get(&s.id) {
                Some(e) => Some(SandboxEntry { ready, ..e.clone() }),
                None => sandbox_entry(c, &self.layout, &s.id)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::debug!(error = %e, "a new sandbox's status (next relist)");
                        None
                    }),
            };
            if let Some(entry) = entry {
                listing.sandboxes.insert(s.id, entry);
            }
        }
        for listed in containers {
            if status::kubelet_id(&listed.labels).is_none() {
                continue;
            }
            let cached = cached_containers.get(&listed.id);
            if let Some(e) = cached.filter(|e| e.cri_state == listed.state) {
                listing.containers.insert(listed.id, e.clone());
                continue;
            }
            let entry = match container_status(c, &listed.id).await {
                Ok(Some(s)) => container_entry(&s, cached, &image_list),
                Ok(None) => None,
                Err(e) => {
                    // Asked again next relist; until then it stays as it was.
                    tracing::debug!(error = %e, "a changed container's status");
                    cached.cloned()
                }
            };
            if let Some(entry) = entry {
                listing.containers.insert(listed.id, entry);
            }
        }
        let ids: HashMap<&str, &str> = listing
            .containers
            .iter()
            .map(|(cri_id, e)| (cri_id.as_str(), e.container.config.id.as_str()))
            .collect();
        let stats: HashMap<String, _> = stats
            .iter()
            .filter_map(|s| {
                let cri_id = s.attributes.as_ref()?.id.as_str();
                Some((ids.get(cri_id)?.to_string(), status::stats(s)?))
            })
            .collect();
        listing.stats = stats;
        tracing::trace!(
            sandboxes = listing.sandboxes.len(),
            containers = listing.containers.len(),
            images = listing.images.len(),
            "relisted the container runtime"
        );
        self.lock().apply(listing, since);
        Ok(())
    }
}

/// Containers sorted oldest first (then by id).
pub(super) fn oldest_first(
    mut containers: Vec<minik_runtime::Container>,
) -> Vec<minik_runtime::Container> {
    containers.sort_by(|a, b| {
        a.created
            .cmp(&b.created)
            .then(a.config.id.cmp(&b.config.id))
    });
    containers
}

/// Sandboxes oldest first (then by pod uid).
pub(super) fn sandboxes_oldest_first(mut sandboxes: Vec<Sandbox>) -> Vec<Sandbox> {
    sandboxes.sort_by(|a, b| {
        a.created
            .cmp(&b.created)
            .then(a.config.id.cmp(&b.config.id))
    });
    sandboxes
}
