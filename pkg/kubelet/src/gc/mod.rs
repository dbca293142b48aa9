//! The node's garbage collection and log rotation, as kubelet runs them:
//!
//! - containers.rs: every minute, dead containers beyond the one kept per container of a
//!   pod, and those of pods gone for good, are removed (with their logs);
//! - images.rs: every 5 minutes, when the image filesystem is at or over
//!   `image-gc-high-threshold` percent used, unused images are removed, least recently
//!   used first, down to `image-gc-low-threshold` ("FreeDiskSpaceFailed" and, when it
//!   fails twice in a row, "ImageGCFailed" warnings on the Node when not enough can go);
//! - logs.rs: every 10 s, running containers' logs over `container-log-max-size` are
//!   rotated, keeping at most `container-log-max-files` files each;
//! - policy.rs: the `--kubelet-arg` settings.
//!
//! `Gc::reclaim` frees what can be freed at once, for eviction under disk pressure.

pub mod containers;
pub mod images;
pub mod logs;
pub mod policy;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use minik_controllers::Store;
use minik_controllers::events::{Kind, Recorder};
use minik_runtime::ContainerState;
use tokio_util::sync::CancellationToken;

use crate::embedded::EmbeddedRuntime;
use crate::runtime::ContainerRuntime;
use policy::Policy;

/// kubelet's ContainerGCPeriod.
pub const CONTAINER_GC_PERIOD: Duration = Duration::from_secs(60);
/// kubelet's ImageGCPeriod.
pub const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
/// kubelet's container log monitor period.
pub const LOG_ROTATION_PERIOD: Duration = Duration::from_secs(10);

/// Garbage collection of one node's containers, images and logs.
pub struct Gc {
    runtime: Arc<EmbeddedRuntime>,
    pods: Store<Pod>,
    policy: Policy,
    log_dir: PathBuf,
    recorder: Recorder,
    /// The Node as kubelet refers to it in events (uid: the node's name).
    node: Node,
    records: Mutex<images::Records>,
    /// The pods this node has had (other minik nodes of the machine may share the log
    /// directory: only the logs of pods known here are removed).
    known: Mutex<HashSet<String>>,
    /// One image collection at a time (the periodic one and `reclaim`).
    collecting: tokio::sync::Mutex<()>,
    failed_before: AtomicBool,
}

impl Gc {
    pub fn new(
        runtime: Arc<EmbeddedRuntime>,
        pods: Store<Pod>,
        policy: Policy,
        log_dir: PathBuf,
        client: kube::Client,
        node: &str,
    ) -> Gc {
        Gc {
            runtime,
            pods,
            policy,
            log_dir,
            recorder: Recorder::new(client, "kubelet"),
            node: Node {
                metadata: ObjectMeta {
                    name: Some(node.into()),
                    uid: Some(node.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            records: Mutex::default(),
            known: Mutex::default(),
            collecting: tokio::sync::Mutex::new(()),
            failed_before: AtomicBool::new(false),
        }
    }

    /// Run the three collectors until `stop`, each first at once.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(policy = ?self.policy, "garbage collection and log rotation started");
        let every = |period: Duration| {
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let (mut c, mut i, mut l) = (
            every(CONTAINER_GC_PERIOD),
            every(IMAGE_GC_PERIOD),
            every(LOG_ROTATION_PERIOD),
        );
        let (gc, stopped) = (self.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    _ = l.tick() => gc.rotate_logs().await,
                }
            }
        });
        let (gc, stopped) = (self.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    _ = i.tick() => { let _ = gc.collect_images().await; }
                }
            }
        });
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = c.tick() => { self.collect_containers().await; }
            }
        }
    }

    /// Free what can be freed now, for eviction under disk pressure: dead containers as
    /// the periodic collection removes them, then every unused image old enough, whatever
    /// the thresholds. The bytes the image filesystem gained.
    pub async fn reclaim(&self) -> u64 {
        let root = self.runtime.backend().image_root();
        let before = images::Usage::of(&root).map(|u| u.available).unwrap_or(0);
        self.collect_containers().await;
        let _turn = self.collecting.lock().await;
        let freed = self.remove_unused_images(u64::MAX).await;
        tracing::info!(images_bytes = freed, "reclaimed disk space");
        let after = images::Usage::of(&root).map(|u| u.available).unwrap_or(0);
        after.saturating_sub(before)
    }

    /// One container collection; how many containers were removed.
    pub async fn collect_containers(&self) -> usize {
        let all = self.runtime.backend().containers();
        let live: HashSet<String> = self.pods.state().iter().filter_map(|p| p.uid()).collect();
        let sandboxes: HashSet<String> = self.runtime.pods().into_iter().collect();
        let candidates: Vec<containers::Candidate> =
            all.iter().map(containers::Candidate::of).collect();
        let doomed = containers::select(
            &candidates,
            containers::KEEP_PER_CONTAINER,
            containers::gone(&live, &sandboxes),
        );
        let mut removed = 0;
        for c in all.iter().filter(|c| doomed.contains(&c.config.id)) {
            match self.runtime.remove_dead(c).await {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(
                        container = c.config.id,
                        name = c.config.name,
                        pod = c.config.sandbox_id,
                        "garbage collected a dead container"
                    );
                }
                // Removed meanwhile (by the pod's own sync).
                Err(_) if self.runtime.backend().container(&c.config.id).is_none() => {}
                Err(e) => {
                    tracing::warn!(container = c.config.id, error = %e, "removing a dead container")
                }
            }
        }
        self.remove_pod_log_dirs(&live, &sandboxes);
        removed
    }

    /// kubelet's evictPodLogsDirectories: the log directories of pods gone for good (of
    /// the pods this node has known since it started).
    fn remove_pod_log_dirs(&self, live: &HashSet<String>, sandboxes: &HashSet<String>) {
        let owners: HashSet<String> = self
            .runtime
            .backend()
            .containers()
            .into_iter()
            .map(|c| c.config.sandbox_id)
            .collect();
        let present =
            |uid: &str| live.contains(uid) || sandboxes.contains(uid) || owners.contains(uid);
        let gone: HashSet<String> = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            known.extend(live.iter().chain(sandboxes).chain(&owners).cloned());
            let gone = known.iter().filter(|u| !present(u)).cloned().collect();
            known.retain(|u| present(u));
            gone
        };
        if gone.is_empty() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.log_dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            // <namespace>_<name>_<uid>
            let Some((_, uid)) = name.rsplit_once('_') else {
                continue;
            };
            if gone.contains(uid) && e.file_type().is_ok_and(|t| t.is_dir()) {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => tracing::info!(dir = name, "removed the logs of a pod gone"),
                    Err(e) => tracing::warn!(dir = name, error = %e, "removing a pod's logs"),
                }
            }
        }
    }

    /// One image collection: when over the high threshold, remove images down to the low
    /// one. Err(why) when it could not free enough.
    pub async fn collect_images(&self) -> Result<u64, String> {
        let _turn = self.collecting.lock().await;
        let policy = self.policy.images;
        let root = self.runtime.backend().image_root();
        let result = match images::Usage::of(&root) {
            Err(e) => Err(format!("reading the image filesystem's usage: {e}")),
            Ok(usage) if !usage.over(&policy) => {
                // Still note what is used, so a later collection knows.
                self.candidates();
                Ok(0)
            }
            Ok(usage) => {
                let amount = usage.to_free(policy.low);
                tracing::info!(
                    usage = usage.percent(),
                    high = policy.high,
                    low = policy.low,
                    amount,
                    "image filesystem usage over the high threshold; freeing images"
                );
                let freed = self.remove_unused_images(amount).await;
                if freed < amount {
                    let message = format!(
                        "Failed to garbage collect required amount of images. Attempted to \
                         free {amount} bytes, but only found {freed} bytes eligible to free."
                    );
                    self.recorder
                        .event(&self.node, Kind::Warning, "FreeDiskSpaceFailed", &message);
                    Err(message)
                } else {
                    Ok(freed)
                }
            }
        };
        match &result {
            Err(e) if self.failed_before.swap(true, Ordering::Relaxed) => {
                tracing::error!(
                    error = e,
                    "image garbage collection failed multiple times in a row"
                );
                self.recorder
                    .event(&self.node, Kind::Warning, "ImageGCFailed", e);
            }
            Err(e) => tracing::warn!(error = e, "image garbage collection failed"),
            Ok(_) => self.failed_before.store(false, Ordering::Relaxed),
        }
        result
    }

    /// The store's images as candidates now (noting which are in use).
    fn candidates(&self) -> Vec<images::Candidate> {
        let backend = self.runtime.backend();
        let list = match backend.images() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listing images");
                return Vec::new();
            }
        };
        let pinned = backend.pinned_images();
        let mut in_use: BTreeSet<String> = backend
            .containers()
            .into_iter()
            .map(|c| c.config.image_id)
            .collect();
        in_use.extend(backend.leased_images());
        let images: Vec<(String, u64, bool)> = list
            .into_iter()
            .map(|i| {
                let p = pinned.contains(&i.id);
                (i.id, i.size, p)
            })
            .collect();
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .detect(&images, &in_use, SystemTime::now())
    }

    /// Remove unused images (least recently used first) until `amount` bytes are freed;
    /// the bytes (image sizes) freed.
    async fn remove_unused_images(&self, amount: u64) -> u64 {
        let candidates = self.candidates();
        let (ids, _) = images::select(
            &candidates,
            amount,
            self.policy.images.min_age,
            SystemTime::now(),
        );
        let mut freed = 0u64;
        for id in ids {
            let size = candidates.iter().find(|c| c.id == id).map_or(0, |c| c.size);
            match self.runtime.backend().remove_image(&id).await {
                Ok(()) => {
                    freed = freed.saturating_add(size);
                    tracing::info!(image = id, size, "garbage collected an unused image");
                }
                Err(e) => tracing::warn!(image = id, error = %e, "removing an unused image"),
            }
        }
        freed
    }

    /// One look at the running containers' logs, rotating those over the size.
    pub async fn rotate_logs(&self) {
        let logs: Vec<(String, PathBuf)> = self
            .runtime
            .backend()
            .containers()
            .into_iter()
            .filter(|c| matches!(c.state, ContainerState::Running { .. }))
            .map(|c| (c.config.id, c.config.log_path))
            .collect();
        if logs.is_empty() {
            return;
        }
        let policy = self.policy.logs;
        let done = tokio::task::spawn_blocking(move || {
            for (id, log) in logs {
                match logs::rotate_if_needed(&log, &policy, chrono::Utc::now()) {
                    Ok(true) => tracing::debug!(container = id, log = %log.display(), "rotated a container log"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(container = id, log = %log.display(), error = %e, "rotating a container log"),
                }
            }
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "rotating container logs");
        }
    }
}
