//! An external CRI runtime (containerd, CRI-O) as a [`Backend`], as kubelet's kuberuntime
//! drives one through `--container-runtime-endpoint`.
//!
//! The runtime names sandboxes and containers itself; the kubelet's names (the pod uid,
//! the container id it chose) travel as CRI labels, so the mapping is rebuilt from a relist
//! after a restart. The synchronous reads answer from a cache a relist task refreshes every
//! second and every call that changes something updates at once.
//!
//! - convert.rs: the kubelet's configs as CRI's `PodSandboxConfig` and `ContainerConfig`.
//! - status.rs: CRI statuses, images and stats in the kubelet's terms.
//! - info.rs: containerd's verbose info (a sandbox's netns, a container's pid, an image's
//!   config, the runtime's sandbox image).
//! - cache.rs: the cache, and how a relist merges with concurrent changes.
//! - relist.rs: the relist (ListPodSandbox, ListContainers, ListContainerStats, ListImages).
//! - sandboxes.rs, containers.rs, images.rs: the calls that change things.
//! - streaming.rs: port-forward (a connection made in the sandbox's network namespace);
//!   exec and attach through the runtime's own streaming server are not done yet.

mod cache;
mod containers;
mod convert;
mod images;
mod info;
mod relist;
mod sandboxes;
mod status;
mod streaming;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use minik_cri::CriClient;
use minik_runtime::{
    Auth, Container, ContainerConfig, Error, ExecResult, Image, ImageConfig, Result, Sandbox,
    SandboxConfig, Stats,
};

use super::{Backend, BoxFuture};
use cache::Cache;
use convert::Layout;

/// Where containerd keeps images when the runtime does not say (ImageFsInfo).
const DEFAULT_IMAGE_ROOT: &str = "/var/lib/containerd";
/// The cgroupfs parent of pod cgroups, as the kubelet's cgroupfs driver names it.
pub const DEFAULT_CGROUP_ROOT: &str = "/kubepods";

/// How a [`Cri`] lays pods out on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriOptions {
    /// Pod log directories go under it (/var/log/pods).
    pub log_root: PathBuf,
    /// Pod cgroups go under it: a pod's sandbox gets `<cgroup_root>/pod<uid>` as its cgroup
    /// parent ([`DEFAULT_CGROUP_ROOT`]).
    pub cgroup_root: String,
}

/// A CRI runtime: its client, the node's layout and the cache of what it runs.
pub struct Cri {
    client: CriClient,
    layout: Layout,
    image_root: PathBuf,
    /// The image the runtime runs sandboxes with (pinned: image GC keeps it).
    sandbox_image: Option<String>,
    cache: Mutex<Cache>,
    /// One relist at a time.
    relisting: tokio::sync::Mutex<()>,
}

/// A CRI client error as the runtime's error, saying what was being done (the client's
/// error names the call).
fn cri_error(context: impl std::fmt::Display, e: minik_cri::Error) -> Error {
    match e {
        minik_cri::Error::Timeout { timeout, .. } => Error::Timeout(timeout),
        e => Error::Failed(format!("{context}: {e}")),
    }
}

impl Cri {
    /// Connect to the runtime at `endpoint` (`unix:///run/containerd/containerd.sock`),
    /// pods logging under `log_root` and their cgroups under [`DEFAULT_CGROUP_ROOT`].
    pub async fn connect(endpoint: &str, log_root: PathBuf) -> Result<Arc<Cri>> {
        let options = CriOptions {
            log_root,
            cgroup_root: DEFAULT_CGROUP_ROOT.to_string(),
        };
        Self::connect_with(endpoint, options).await
    }

    /// Connect to the runtime at `endpoint`, read where it keeps images, list what it has,
    /// and keep relisting every second until the last `Arc` is dropped.
    pub async fn connect_with(endpoint: &str, options: CriOptions) -> Result<Arc<Cri>> {
        let client = CriClient::connect(endpoint)
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        let image_root = match client.image_fs_info().await {
            Ok(fs) => fs
                .image_filesystems
                .first()
                .and_then(|f| f.fs_id.as_ref())
                .map(|id| PathBuf::from(&id.mountpoint))
                .filter(|p| !p.as_os_str().is_empty()),
            Err(e) => {
                tracing::warn!(endpoint, error = %e, "reading the runtime's image filesystem");
                None
            }
        }
        .unwrap_or_else(|| PathBuf::from(DEFAULT_IMAGE_ROOT));
        let sandbox_image = match client.status(true).await {
            Ok(status) => info::sandbox_image(&status.info),
            Err(e) => {
                tracing::warn!(endpoint, error = %e, "reading the runtime's status");
                None
            }
        };
        let cri = Arc::new(Cri {
            client,
            layout: Layout {
                log_root: options.log_root,
                cgroup_root: options.cgroup_root,
            },
            image_root,
            sandbox_image,
            cache: Mutex::new(Cache::default()),
            relisting: tokio::sync::Mutex::new(()),
        });
        cri.relist().await?;
        tokio::spawn(relist::run(Arc::downgrade(&cri)));
        Ok(cri)
    }

    /// The client, for what the trait does not cover (streaming, version, status).
    pub fn client(&self) -> &CriClient {
        &self.client
    }

    /// Whether pod `uid`'s sandbox is ready (None: it has none). A sandbox the runtime
    /// stopped (its pause process died, the node rebooted) is still reported by
    /// [`Backend::sandbox`] until removed; `create_sandbox` replaces it with a new attempt.
    pub fn sandbox_ready(&self, uid: &str) -> Option<bool> {
        self.lock().sandbox(uid).map(|(_, e)| e.ready)
    }

    /// Refresh the cache from the runtime now (the relist task does so every second).
    pub async fn refresh_now(&self) -> Result<()> {
        self.relist().await
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for Cri {
    fn create_sandbox<'a>(&'a self, config: &'a SandboxConfig) -> BoxFuture<'a, Result<Sandbox>> {
        Box::pin(self.run_sandbox(config))
    }

    fn sandbox(&self, id: &str) -> Option<Sandbox> {
        self.lock().sandbox(id).map(|(_, e)| e.sandbox.clone())
    }

    fn sandbox_ready(&self, id: &str) -> Option<bool> {
        Cri::sandbox_ready(self, id)
    }

    fn sandboxes(&self) -> Vec<Sandbox> {
        let cache = self.lock();
        let uids: BTreeSet<&str> = cache
            .sandboxes
            .values()
            .map(|e| e.sandbox.config.id.as_str())
            .collect();
        let list = uids
            .into_iter()
            .filter_map(|uid| cache.sandbox(uid).map(|(_, e)| e.sandbox.clone()))
            .collect();
        relist::sandboxes_oldest_first(list)
    }

    fn remove_sandbox<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete_sandbox(id))
    }

    fn start_container(&self, config: ContainerConfig) -> BoxFuture<'_, Result<Container>> {
        Box::pin(self.run_container(config))
    }

    fn container(&self, id: &str) -> Option<Container> {
        self.lock().container(id).map(|(_, e)| e.container.clone())
    }

    fn containers(&self) -> Vec<Container> {
        let list = self
            .lock()
            .containers
            .values()
            .map(|e| e.container.clone())
            .collect();
        relist::oldest_first(list)
    }

    fn stop_container<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.halt_container(id, grace))
    }

    fn remove_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete_container(id))
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        env: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecResult>> {
        Box::pin(self.exec_in(id, argv, env, timeout))
    }

    fn stats(&self, id: &str) -> Option<Stats> {
        self.lock().stats.get(id).copied()
    }

    fn stream_url<'a>(
        &'a self,
        id: &'a str,
        opts: &'a minik_streaming::CommandOptions,
        attach: bool,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move { self.stream_url(id, opts, attach).await.map(Some) })
    }

    fn port_forward<'a>(
        &'a self,
        sandbox_id: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<Box<dyn minik_streaming::Duplex>>> {
        Box::pin(self.forward(sandbox_id, port))
    }

    fn image(&self, reference: &str) -> Option<Image> {
        images::find(&self.lock().image_list(), reference).cloned()
    }

    fn images(&self) -> Result<Vec<Image>> {
        Ok(self.lock().image_list())
    }

    fn pull<'a>(
        &'a self,
        reference: &'a str,
        auth: Option<&'a Auth>,
    ) -> BoxFuture<'a, Result<Image>> {
        Box::pin(self.pull_image(reference, auth))
    }

    fn image_config<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ImageConfig>> {
        Box::pin(self.config_of(id))
    }

    fn layers(&self, _id: &str) -> Result<Vec<PathBuf>> {
        // The runtime keeps its snapshots to itself.
        Ok(Vec::new())
    }

    fn remove_image<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete_image(id))
    }

    fn pinned_images(&self) -> BTreeSet<String> {
        let cache = self.lock();
        let mut pinned: BTreeSet<String> = cache
            .images
            .values()
            .filter(|e| e.pinned)
            .map(|e| e.image.id.clone())
            .collect();
        let list = cache.image_list();
        let sandbox = self.sandbox_image.as_deref();
        if let Some(image) = sandbox.and_then(|r| images::find(&list, r)) {
            pinned.insert(image.id.clone());
        }
        pinned
    }

    fn image_root(&self) -> PathBuf {
        self.image_root.clone()
    }

    fn runtime_version(&self) -> Option<String> {
        let v = self.client.runtime_version();
        Some(format!("{}://{}", v.runtime_name, v.runtime_version))
    }

    fn container_uri(&self, id: &str) -> String {
        let name = &self.client.runtime_version().runtime_name;
        match self.lock().container(id) {
            Some((cri_id, _)) => format!("{name}://{cri_id}"),
            None => format!("{name}://{id}"),
        }
    }
}
