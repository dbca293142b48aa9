//! The embedded runtime as the kubelet drives it: `EmbeddedRuntime` turns a Pod into a
//! sandbox and containers of `minik-runtime`, as the kubelet does with a CRI runtime.
//!
//! - sandbox.rs: creating a pod (sandbox, pod directory, /etc/hosts, resolv.conf) and
//!   removing it (containers stopped and removed, volumes unmounted, files gone).
//! - sync.rs: each sync of a pod: volumes set up and refreshed, ephemeral containers
//!   started once each, init containers one at a time (sidecars kept running), then the
//!   app containers; sidecars stopped once a finished pod's app containers are done.
//! - start.rs: one container: its image pulled per policy, its config made, started.
//! - state.rs: the pod's state read back from the runtime for its status.
//! - probing.rs: the containers' probes (probes/); hooks.rs: postStart and preStop.
//! - streaming.rs: exec, attach and port-forward (`kubectl exec|attach|port-forward`).
//! - pure parts: layout, expand ($(VAR), argv), env, fieldpath, resources (cgroups),
//!   security, dns, mounts, pull (policy, credentials, back-off), atomic (AtomicWriter),
//!   api (what is read from the API), volumes/.

pub mod api;
pub mod atomic;
pub mod dns;
pub mod env;
pub mod expand;
#[cfg(test)]
mod fake_api;
#[cfg(test)]
mod fake_backend;
pub mod fieldpath;
pub(crate) mod hooks;
pub mod layout;
pub mod links;
pub mod mounts;
mod probing;
pub mod pull;
pub mod resources;
mod sandbox;
pub mod security;
mod services;
mod start;
mod state;
mod streaming;
mod sync;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use minik_controllers::events::Recorder;

use crate::backend::{Backend, Embedded};
use crate::runtime::{ContainerRuntime, ContainerStats, PodState, RuntimeError};
use layout::Layout;

/// Labels kept on sandboxes and containers (the kubelet's, and minik's own).
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    pub const MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
    /// "true" on init containers (sidecars included).
    pub const INIT: &str = "minik.io/init-container";
    /// "true" on ephemeral containers.
    pub const EPHEMERAL: &str = "minik.io/ephemeral-container";
    /// What containerStatuses[].image and imageID show for this run.
    pub const IMAGE: &str = "minik.io/image";
    pub const IMAGE_REF: &str = "minik.io/image-ref";
}

/// Where a real node keeps things and how it reaches the API.
#[derive(Clone)]
pub struct EmbeddedOptions {
    /// <data-dir>: images (agent/store), container state (agent/containers) and pod dirs
    /// (agent/pods).
    pub data_dir: PathBuf,
    /// Container logs, /var/log/pods.
    pub log_dir: PathBuf,
    /// Runtime files that do not survive a reboot, /run/minik.
    pub run_dir: PathBuf,
    /// The program and leading arguments that run a shim: [minik exe, "shim"].
    pub shim: Vec<String>,
    /// /etc/minik/registries.yaml.
    pub registries: PathBuf,
    /// Acts as system:node:<node_name>.
    pub client: kube::Client,
    pub node_name: String,
    /// The cluster DNS address pods of dnsPolicy ClusterFirst use.
    pub cluster_dns: Option<String>,
    /// cluster.local.
    pub cluster_domain: String,
    /// The pod network new sandboxes join (None: pods get loopback only; a CRI runtime
    /// brings its own).
    pub network: Option<Arc<dyn minik_network::PodNetwork>>,
}

/// Why a container is waiting rather than running (ErrImagePull, ImagePullBackOff,
/// CreateContainerConfigError, ...), and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: Option<String>,
    pub retry: Instant,
}

/// What pod_state needs of a pod, besides the runtime's containers.
struct Shared {
    pod: Pod,
    /// The pod's address (None until pod networking gives one).
    ip: Option<String>,
    /// Containers that could not be created, by name.
    waiting: HashMap<String, Waiting>,
    /// Termination messages of exited containers, by container id.
    messages: HashMap<String, Option<String>>,
    /// Containers being stopped in the background (sidecars of a finished pod).
    stopping: HashSet<String>,
}

/// What a sync of a pod works with (one sync of a pod at a time).
#[derive(Default)]
struct Work {
    volumes: Option<volumes::Volumes>,
    refreshed: Option<Instant>,
    tokens: volumes::projection::Tokens,
    /// The last volume error reported (each new one is an event).
    mount_error: Option<String>,
}

struct Entry {
    shared: Mutex<Shared>,
    work: tokio::sync::Mutex<Work>,
}

impl Entry {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The kubelet's side of the embedded runtime.
pub struct EmbeddedRuntime {
    layout: Layout,
    /// The containers and images under it: minik's own runtime or a CRI runtime.
    runtime: Arc<dyn Backend>,
    client: kube::Client,
    cluster_dns: Option<String>,
    cluster_domain: String,
    node: api::NodeCache,
    services: services::ServiceCache,
    recorder: Recorder,
    pods: Mutex<HashMap<String, Arc<Entry>>>,
    /// Pod uid -> its containers' ids, so a pod's state reads only its own containers.
    index: Mutex<HashMap<String, Vec<String>>>,
    pulls: Mutex<pull::Backoff>,
    /// The probe workers of running containers and their results.
    probes: crate::probes::Manager,
}

fn failed(context: &str) -> impl FnOnce(minik_runtime::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::Failed(format!("{context}: {e}"))
}

/// A runtime time as the kubelet's.
fn timestamp(t: std::time::SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl EmbeddedRuntime {
    /// Over minik's own runtime: its image store and containers under the data dir.
    pub fn new(opts: EmbeddedOptions) -> Result<Self, RuntimeError> {
        let agent = opts.data_dir.join("agent");
        let images =
            minik_runtime::ImageStore::open(&minik_runtime::images::store_root(&opts.data_dir))
                .map_err(failed("opening the image store"))?;
        let runtime = minik_runtime::Runtime::open(
            &agent.join("containers"),
            &opts.run_dir,
            opts.shim.clone(),
        )
        .map_err(failed("opening the container runtime"))?;
        let registries = minik_runtime::Registries::load(&opts.registries)
            .map_err(failed(&format!("reading {}", opts.registries.display())))?;
        if let Some(network) = &opts.network {
            crate::backend::collect_network(network.as_ref(), &runtime);
        }
        let backend = Embedded {
            runtime,
            images,
            registries,
            network: opts.network.clone(),
        };
        Self::with_backend(opts, Arc::new(backend))
    }

    /// Over `runtime` (a CRI runtime, or minik's own).
    pub fn with_backend(
        opts: EmbeddedOptions,
        runtime: Arc<dyn Backend>,
    ) -> Result<Self, RuntimeError> {
        let layout = Layout::new(&opts.data_dir, &opts.log_dir);
        std::fs::create_dir_all(&layout.pods).map_err(|e| {
            RuntimeError::Failed(format!("creating {}: {e}", layout.pods.display()))
        })?;
        let mut index: HashMap<String, Vec<String>> = HashMap::new();
        for c in runtime.containers() {
            index
                .entry(c.config.sandbox_id.clone())
                .or_default()
                .push(c.config.id.clone());
        }
        Ok(EmbeddedRuntime {
            layout,
            runtime,
            node: api::NodeCache::new(opts.client.clone(), &opts.node_name),
            services: services::ServiceCache::new(opts.client.clone()),
            recorder: Recorder::new(opts.client.clone(), "kubelet"),
            client: opts.client,
            cluster_dns: opts.cluster_dns,
            cluster_domain: opts.cluster_domain,
            pods: Mutex::default(),
            index: Mutex::new(index),
            pulls: Mutex::default(),
            probes: crate::probes::Manager::default(),
        })
    }

    /// The containers and images under it.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.runtime
    }

    fn entry(&self, uid: &str) -> Option<Arc<Entry>> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
    }

    /// The pod's entry, made (for a pod found running after a restart) if missing.
    fn entry_for(&self, pod: &Pod, ip: Option<String>) -> Arc<Entry> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pods.entry(uid).or_insert_with(|| {
            Arc::new(Entry {
                shared: Mutex::new(Shared {
                    pod: pod.clone(),
                    ip: ip.clone(),
                    waiting: HashMap::new(),
                    messages: HashMap::new(),
                    stopping: HashSet::new(),
                }),
                work: tokio::sync::Mutex::new(Work::default()),
            })
        });
        entry.shared().pod = pod.clone();
        entry.clone()
    }

    /// The runtime's containers of a pod, oldest first.
    fn containers_of(&self, uid: &str) -> Vec<minik_runtime::Container> {
        let ids = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
            .unwrap_or_default();
        let mut found: Vec<_> = ids
            .iter()
            .filter_map(|id| self.runtime.container(id))
            .collect();
        found.sort_by_key(|c| (c.created, c.config.attempt));
        found
    }

    fn index_add(&self, uid: &str, id: &str) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.entry(uid.into()).or_default().push(id.into());
    }

    fn index_remove(&self, uid: &str, id: &str) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ids) = index.get_mut(uid) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                index.remove(uid);
            }
        }
    }

    fn pulls(&self) -> MutexGuard<'_, pull::Backoff> {
        self.pulls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop (if running) and remove one container, its image lease and log file.
    async fn remove_container(
        &self,
        uid: &str,
        c: &minik_runtime::Container,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let id = &c.config.id;
        self.runtime
            .stop_container(id, grace)
            .await
            .map_err(failed("stopping a container"))?;
        self.runtime
            .remove_container(id)
            .await
            .map_err(failed("removing a container"))?;
        if let Err(e) = self.runtime.release(id) {
            tracing::debug!(container = id, error = %e, "releasing an image lease");
        }
        let _ = std::fs::remove_file(&c.config.log_path);
        crate::gc::logs::remove_rotated(&c.config.log_path);
        self.index_remove(uid, id);
        Ok(())
    }

    /// Remove an exited container (container garbage collection): as `remove_container`,
    /// and its termination message file. A running container, or one being started, stays.
    pub(crate) async fn remove_dead(
        &self,
        c: &minik_runtime::Container,
    ) -> Result<(), RuntimeError> {
        if !matches!(c.state, minik_runtime::ContainerState::Exited { .. }) {
            return Err(RuntimeError::Failed(format!(
                "container {} has not exited",
                c.config.id
            )));
        }
        let uid = &c.config.sandbox_id;
        self.remove_container(uid, c, Duration::ZERO).await?;
        let _ = std::fs::remove_file(self.layout.termination_log(
            uid,
            &c.config.name,
            &c.config.id,
        ));
        Ok(())
    }
}

impl ContainerRuntime for EmbeddedRuntime {
    async fn start_pod(&self, pod: &Pod, ip: Option<String>) -> Result<(), RuntimeError> {
        sandbox::create(self, pod, ip).await
    }

    async fn sync_pod(&self, pod: &Pod) -> Result<Option<Duration>, RuntimeError> {
        let next = sync::sync(self, pod).await;
        probing::sync(self, pod);
        next
    }

    fn images_present(&self, pod: &Pod) -> bool {
        let spec = pod.spec.as_ref();
        spec.iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .all(|c| {
                pull::policy(c) != "Always"
                    && self
                        .runtime
                        .image(c.image.as_deref().unwrap_or_default())
                        .is_some()
            })
    }

    fn pod_state(&self, uid: &str) -> Option<PodState> {
        state::pod_state(self, uid)
    }

    async fn restart_container(&self, uid: &str, name: &str) -> Result<(), RuntimeError> {
        sync::restart(self, uid, name).await
    }

    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError> {
        sandbox::kill(self, uid, grace).await
    }

    async fn stop_pod(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError> {
        sandbox::remove(self, uid, grace).await
    }

    fn pods(&self) -> Vec<String> {
        self.runtime
            .sandboxes()
            .into_iter()
            .map(|s| s.config.id)
            .collect()
    }

    async fn exec(
        &self,
        uid: &str,
        name: &str,
        opts: minik_streaming::CommandOptions,
    ) -> Result<minik_streaming::Streams, String> {
        streaming::exec(self, uid, name, opts).await
    }

    async fn stream_url(
        &self,
        uid: &str,
        name: &str,
        opts: &minik_streaming::CommandOptions,
        attach: bool,
    ) -> Result<Option<String>, String> {
        streaming::stream_url(self, uid, name, opts, attach).await
    }

    async fn attach(
        &self,
        uid: &str,
        name: &str,
        opts: minik_streaming::CommandOptions,
    ) -> Result<minik_streaming::Streams, String> {
        streaming::attach(self, uid, name, opts).await
    }

    async fn port_forward(
        &self,
        uid: &str,
        port: u16,
    ) -> std::io::Result<Box<dyn minik_streaming::Duplex>> {
        streaming::port_forward(self, uid, port).await
    }

    fn container_stats(&self, uid: &str) -> Option<Vec<ContainerStats>> {
        let containers = self.containers_of(uid);
        if containers.is_empty() && self.runtime.sandbox(uid).is_none() {
            return None;
        }
        Some(
            containers
                .iter()
                .filter_map(|c| {
                    let minik_runtime::ContainerState::Running { started, .. } = c.state else {
                        return None;
                    };
                    let stats = self.runtime.stats(&c.config.id)?;
                    Some(ContainerStats {
                        name: c.config.name.clone(),
                        started: timestamp(started),
                        timestamp: timestamp(stats.timestamp),
                        cpu_usage_core_nanoseconds: stats.cpu_usage_nanoseconds,
                        memory_working_set_bytes: stats.memory_working_set_bytes,
                    })
                })
                .collect(),
        )
    }
}
