//! The real node: the kubelet of `minik server` (and of `minik agent`) running pods in
//! real containers through the embedded runtime. It registers the Node the machine
//! describes (machine.rs), renews its Lease and refreshes its status (status.rs), imports
//! the air-gap images (images.rs), watches only the pods bound to it
//! (`spec.nodeName=<name>`), runs them with the same pod workers as simulated nodes, finds
//! containers that changed by relisting the runtime every second (kubelet's PLEG), stops
//! what the runtime runs for pods the API no longer has, garbage collects dead containers
//! and unused images and rotates container logs (gc/), evicts pods under node pressure
//! (eviction/), runs the static pods of its manifests directory with their mirror pods
//! (static_pods/), reports usage for the metrics
//! API, and serves the kubelet API (server/) on its port, reported in the Node's
//! status.daemonEndpoints.
//!
//! A pod on the host's network gets the node's address as its IP; other pods join the pod
//! network given in the options (minik-network's bridge or CNI plugins), whose address
//! becomes their IP.

pub mod images;
pub mod static_pods;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher;
use minik_api::usage::UsageStore;
use minik_controllers::Store;
use minik_controllers::{Informer, Metrics, Queue, Reconcile};
use tokio_util::sync::CancellationToken;

use crate::embedded::{EmbeddedOptions, EmbeddedRuntime};
use crate::machine::{Machine, MachineError, MachineOptions};
use crate::pods::{NodeHandle, Workers};
use crate::runtime::{ContainerRuntime, PodState, RuntimeError};

/// How often the runtime is relisted for changed containers and orphaned pods.
const RELIST: Duration = Duration::from_secs(1);
/// How often a node whose pod network is not ready looks again.
const NETWORK_POLL: Duration = Duration::from_millis(200);
/// Pod workers running at once beyond max-pods (for static pods and pods being deleted).
/// kubelet runs one worker per pod: a pod starting or stopping (for its whole grace
/// period) never waits for another.
const SPARE_WORKERS: usize = 16;

/// Where the node keeps things and what it says about itself.
#[derive(Clone)]
pub struct Options {
    /// The node's name, labels, taints and address.
    pub machine: MachineOptions,
    /// minik's data dir: images and containers under agent/, air-gap images in
    /// agent/images/.
    pub data_dir: PathBuf,
    /// Container logs (/var/log/pods).
    pub log_dir: PathBuf,
    /// Files that do not survive a reboot (/run/minik).
    pub run_dir: PathBuf,
    /// The program and leading arguments that run a container's shim.
    pub shim: Vec<String>,
    /// registries.yaml (mirrors and credentials).
    pub registries: PathBuf,
    /// An external CRI runtime (`--container-runtime-endpoint`) to run containers with
    /// instead of minik's own.
    pub runtime_endpoint: Option<String>,
    /// The cluster DNS service's address, for pods of dnsPolicy ClusterFirst.
    pub cluster_dns: Option<String>,
    pub cluster_domain: String,
    /// The kubelet server's certificate; None runs no server.
    pub server: Option<crate::server::Serving>,
    /// The pod network minik's runtime attaches sandboxes to (a CRI runtime has its own).
    pub network: Option<Arc<dyn minik_network::PodNetwork>>,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("describing the machine: {0}")]
    Machine(#[from] MachineError),
    #[error("starting the container runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Join(String),
    #[error("{0}")]
    Server(#[from] crate::server::ServerError),
}

struct LocalWorkers(Workers<EmbeddedRuntime>);

impl Reconcile for LocalWorkers {
    async fn reconcile(&self, key: String) -> minik_controllers::Result<Option<Duration>> {
        match self.0.sync(&key).await {
            Ok(next) => Ok(next),
            Err(e) => {
                tracing::warn!(pod = key, error = %e, "syncing pod");
                Err(e.into())
            }
        }
    }
}

/// Run the node until `stop`. `client` acts as the node (`system:node:<name>`).
pub async fn run(
    options: Options,
    client: kube::Client,
    metrics: Metrics,
    usage: UsageStore,
    stop: CancellationToken,
) -> Result<(), Error> {
    let machine_options = options.machine.clone();
    let mut machine = tokio::task::spawn_blocking(move || Machine::probe(&machine_options))
        .await
        .map_err(|e| Error::Join(e.to_string()))??;
    let name = machine.name.clone();
    let kubelet_args = &options.machine.kubelet;
    let listener = match &options.server {
        Some(_) => {
            let l = crate::server::bind(kubelet_args.address, kubelet_args.port).await?;
            machine.kubelet_port = l.local_addr().map_or(kubelet_args.port, |a| a.port());
            Some(l)
        }
        None => None,
    };
    let embedded_network = options
        .network
        .clone()
        .filter(|_| options.runtime_endpoint.is_none());
    let embedded_options = EmbeddedOptions {
        data_dir: options.data_dir.clone(),
        log_dir: options.log_dir.clone(),
        run_dir: options.run_dir.clone(),
        shim: options.shim.clone(),
        registries: options.registries.clone(),
        client: client.clone(),
        node_name: name.clone(),
        cluster_dns: options.cluster_dns.clone(),
        cluster_domain: options.cluster_domain.clone(),
        network: embedded_network.clone(),
    };
    let runtime = Arc::new(match &options.runtime_endpoint {
        None => EmbeddedRuntime::new(embedded_options)?,
        Some(endpoint) => {
            let cri = crate::backend::cri::Cri::connect(endpoint, options.log_dir.clone())
                .await
                .map_err(|e| RuntimeError::Failed(format!("connecting to {endpoint}: {e}")))?;
            if let Some(version) = crate::backend::Backend::runtime_version(cri.as_ref()) {
                machine.node_info.container_runtime_version = version;
            }
            EmbeddedRuntime::with_backend(embedded_options, cri)?
        }
    });
    let airgap = options.data_dir.join("agent").join("images");
    let rt = runtime.clone();
    let imported = tokio::task::spawn_blocking(move || match rt.backend().image_store() {
        Some(store) => images::import_dir(store, &airgap),
        None => 0,
    })
    .await
    .map_err(|e| Error::Join(e.to_string()))?;
    tracing::info!(node = name, address = %machine.address, imported, "starting the node");
    let nodes: Api<Node> = Api::all(client.clone());
    status::register(&nodes, &machine)
        .await
        .map_err(|source| Error::Register {
            node: name.clone(),
            source,
        })?;
    // The pressure the eviction manager sees: the node's conditions, and whether new pods
    // may start.
    let admission = crate::eviction::Admission::default();
    tokio::spawn(heartbeat(
        client.clone(),
        machine.clone(),
        runtime.clone(),
        admission.clone(),
        // Minik's own pod network decides readiness; an external CRI runtime has its own.
        embedded_network,
        stop.clone(),
    ));

    let selector = watcher::Config::default().fields(&format!("spec.nodeName={name}"));
    let pods: Arc<Informer<Pod>> = Informer::with_config(Api::all(client.clone()), selector);
    let queue = Queue::new("kubelet", metrics.clone());
    let q = queue.clone();
    pods.on(move |pod: &Pod, _| q.add(minik_controllers::util::key(pod)));
    let handle = Arc::new(NodeHandle {
        name: name.clone(),
        host_ip: machine.address.to_string(),
        client: client.clone(),
        // Pod addresses come from the pod network, when the sandbox joins it.
        ipam: Box::new(|| None),
    });
    let workers = LocalWorkers(Workers {
        runtime: runtime.clone(),
        nodes: [(name.clone(), handle)].into_iter().collect(),
        pods: pods.store().clone(),
        backoff: Mutex::default(),
        known: Mutex::default(),
        admission: admission.clone(),
        written: Default::default(),
    });
    let manifests = (kubelet_args.pod_manifest_path.clone())
        .unwrap_or_else(|| options.data_dir.join("agent").join("pod-manifests"));
    let statics = static_pods::spawn(
        manifests,
        runtime.clone(),
        workers.0.nodes[&name].clone(),
        &pods,
        &metrics,
        &stop,
    );
    tokio::spawn(pods.clone().run(stop.clone()));
    if let (Some(listener), Some(serving)) = (listener, &options.server) {
        let tls = serving.material(&options.data_dir.join("agent"), &name, machine.address)?;
        let images = runtime.clone();
        let ctx = Arc::new(crate::server::Context {
            node: name.clone(),
            runtime: runtime.clone(),
            pods: pods.store().clone(),
            usage: usage.clone(),
            data_dir: options.data_dir.clone(),
            log_dir: options.log_dir.clone(),
            image_bytes: Box::new(move || {
                let list = images.backend().images().unwrap_or_default();
                list.iter().map(|i| i.size).sum()
            }),
            started: k8s_openapi::jiff::Timestamp::now(),
            authorizer: crate::server::auth::Authorizer::new(client.clone(), name.clone()),
            metrics: crate::server::metrics::KubeletMetrics::new(&name),
            cpu: Default::default(),
        });
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::server::serve(listener, tls, ctx, stop).await {
                tracing::error!(error = %e, "the kubelet server failed");
            }
        });
    }
    tokio::select! {
        () = pods.synced() => {}
        () = stop.cancelled() => return Ok(()),
    }
    tokio::spawn(crate::stats::run(
        runtime.clone(),
        vec![name.clone()],
        pods.store().clone(),
        usage,
        stop.clone(),
    ));
    let gc = Arc::new(crate::gc::Gc::new(
        runtime.clone(),
        pods.store().clone(),
        kubelet_args.gc,
        options.log_dir.clone(),
        client.clone(),
        &name,
    ));
    tokio::spawn(gc.clone().run(stop.clone()));
    let evictions = crate::eviction::Manager {
        runtime: runtime.clone(),
        pods: pods.store().clone(),
        thresholds: kubelet_args.eviction.clone(),
        data_dir: options.data_dir.clone(),
        log_dir: options.log_dir.clone(),
        image_dir: runtime.backend().image_root(),
        client: client.clone(),
        recorder: minik_controllers::events::Recorder::new(client.clone(), "kubelet"),
        admission,
        gc: Some(gc.clone()),
    };
    tokio::spawn(evictions.run(stop.clone()));
    tokio::spawn(relist(
        runtime.clone(),
        pods.store().clone(),
        statics,
        queue.clone(),
        stop.clone(),
    ));
    let count = usize::try_from(kubelet_args.max_pods).unwrap_or(usize::MAX);
    let count = count.saturating_add(SPARE_WORKERS);
    minik_controllers::spawn_workers("kubelet", &queue, count, Arc::new(workers), &metrics);
    stop.cancelled().await;
    queue.shut_down();
    tracing::info!(node = name, "node stopped; its containers keep running");
    Ok(())
}

/// Renew the Lease and refresh the status every 10 s until `stop` (registering the Node
/// again if it was deleted).
async fn heartbeat(
    client: kube::Client,
    machine: Machine,
    runtime: Arc<EmbeddedRuntime>,
    pressure: crate::eviction::Admission,
    network: Option<Arc<dyn minik_network::PodNetwork>>,
    stop: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let reporter_for =
        || status::Reporter::with_pressure(pressure.clone()).with_network(network.clone());
    let mut reporter = reporter_for();
    loop {
        if let Err(e) = crate::node::renew(&leases, &machine.name).await {
            tracing::warn!(node = machine.name, error = %e, "renewing the node lease");
        }
        let current = match nodes.get_opt(&machine.name).await {
            // Deleted behind its back: register again, as kubelet does.
            Ok(None) => {
                if let Err(e) = status::register(&nodes, &machine).await {
                    tracing::warn!(node = machine.name, error = %e, "registering the node");
                }
                reporter = reporter_for();
                None
            }
            Ok(node) => node,
            Err(_) => None,
        };
        let images = runtime.backend().images().unwrap_or_default();
        if let Err(e) = reporter
            .tick(&nodes, &machine, status::images(images), current.as_ref())
            .await
        {
            tracing::warn!(node = machine.name, error = %e, "posting the node status");
        }
        // While the pod network is not ready, look again soon: the node turns Ready as
        // soon as it is.
        let wait = match reporter.network_ready() {
            Ok(()) => status::UPDATE,
            Err(_) => NETWORK_POLL,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Every `RELIST`: queue the pods whose containers changed in the runtime since the last
/// look (a container exited, say), and stop what the runtime runs for pods the API no
/// longer has (deleted while minik was down) and that are not static pods (`statics`).
async fn relist<R: ContainerRuntime>(
    runtime: Arc<R>,
    pods: Store<Pod>,
    statics: Store<Pod>,
    queue: Queue,
    stop: CancellationToken,
) {
    let mut seen: HashMap<String, Option<PodState>> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RELIST) => {}
        }
        let mut next = HashMap::new();
        let mut uids = HashSet::new();
        for pod in pods.state() {
            let uid = pod.uid().unwrap_or_default();
            let state = runtime.pod_state(&uid);
            // A pod seen for the first time is synced too: its state may have changed (a
            // probe passed) between its last sync and this look.
            if seen.get(&uid).is_none_or(|before| *before != state) {
                queue.add(minik_controllers::util::key(pod.as_ref()));
            }
            uids.insert(uid.clone());
            next.insert(uid, state);
        }
        seen = next;
        uids.extend(statics.state().iter().filter_map(|p| p.uid()));
        for uid in runtime.pods() {
            if !uids.contains(&uid) {
                tracing::info!(uid, "stopping an orphaned pod");
                if let Err(e) = runtime.stop_pod(&uid, Duration::ZERO).await {
                    tracing::warn!(uid, error = %e, "stopping an orphaned pod");
                }
            }
        }
    }
}
