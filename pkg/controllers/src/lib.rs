//! The controller manager. Every controller watches through shared informers, reads their
//! caches, queues keys in rate-limited work queues and writes through `kube::Client` like any
//! other client. Only the holder of the `kube-controller-manager` Lease runs them.

pub mod events;
pub mod expectations;
pub mod history;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod util;

mod aggregation;
mod bootstrap;
pub mod certificates;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod gc;
mod hpa;
mod job;
mod namespace;
pub mod nodeaffinity;
pub mod nodeipam;
mod nodelifecycle;
mod podgc;
mod replicaset;
mod resourcequota;
mod rootca;
mod serviceaccount;
mod statefulset;
pub mod volume;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::Api;
use tokio_util::sync::CancellationToken;

pub use informer::{Change, Informer, Store};
pub use metrics::Metrics;
pub use queue::Queue;

/// Why one reconcile failed (the key is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The informers controllers share (one watch per resource). Add a resource here when a
/// controller needs its cache.
#[derive(Clone)]
pub struct Informers {
    /// Cancelled once every cache has been filled (controllers' workers wait for it).
    pub ready: CancellationToken,
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
    /// Node heartbeats (kube-node-lease).
    pub leases: Arc<Informer<Lease>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub services: Arc<Informer<Service>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub statefulsets: Arc<Informer<StatefulSet>>,
    pub daemonsets: Arc<Informer<DaemonSet>>,
    pub revisions: Arc<Informer<ControllerRevision>>,
    pub jobs: Arc<Informer<Job>>,
    pub cronjobs: Arc<Informer<CronJob>>,
    pub endpoints: Arc<Informer<k8s_openapi::api::core::v1::Endpoints>>,
    pub endpointslices: Arc<Informer<k8s_openapi::api::discovery::v1::EndpointSlice>>,
    pub serviceaccounts: Arc<Informer<k8s_openapi::api::core::v1::ServiceAccount>>,
    pub configmaps: Arc<Informer<k8s_openapi::api::core::v1::ConfigMap>>,
    /// Bootstrap-token secrets (kube-system).
    pub system_secrets: Arc<Informer<k8s_openapi::api::core::v1::Secret>>,
    pub clusterroles: Arc<Informer<k8s_openapi::api::rbac::v1::ClusterRole>>,
    pub pvcs: Arc<Informer<k8s_openapi::api::core::v1::PersistentVolumeClaim>>,
    pub hpas: Arc<Informer<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>>,
    pub resourcequotas: Arc<Informer<k8s_openapi::api::core::v1::ResourceQuota>>,
    pub pvs: Arc<Informer<k8s_openapi::api::core::v1::PersistentVolume>>,
    pub storageclasses: Arc<Informer<k8s_openapi::api::storage::v1::StorageClass>>,
    pub csrs: Arc<Informer<k8s_openapi::api::certificates::v1::CertificateSigningRequest>>,
    pub replicationcontrollers: Arc<Informer<k8s_openapi::api::core::v1::ReplicationController>>,
    pub pdbs: Arc<Informer<k8s_openapi::api::policy::v1::PodDisruptionBudget>>,
}

impl Informers {
    pub fn new(client: &kube::Client) -> Self {
        Informers {
            ready: CancellationToken::new(),
            pods: Informer::new(Api::all(client.clone())),
            nodes: Informer::new(Api::all(client.clone())),
            leases: Informer::new(Api::namespaced(client.clone(), "kube-node-lease")),
            namespaces: Informer::new(Api::all(client.clone())),
            services: Informer::new(Api::all(client.clone())),
            replicasets: Informer::new(Api::all(client.clone())),
            deployments: Informer::new(Api::all(client.clone())),
            statefulsets: Informer::new(Api::all(client.clone())),
            daemonsets: Informer::new(Api::all(client.clone())),
            revisions: Informer::new(Api::all(client.clone())),
            jobs: Informer::new(Api::all(client.clone())),
            cronjobs: Informer::new(Api::all(client.clone())),
            endpoints: Informer::new(Api::all(client.clone())),
            endpointslices: Informer::new(Api::all(client.clone())),
            serviceaccounts: Informer::new(Api::all(client.clone())),
            configmaps: Informer::new(Api::all(client.clone())),
            system_secrets: Informer::new(Api::namespaced(client.clone(), "kube-system")),
            clusterroles: Informer::new(Api::all(client.clone())),
            pvcs: Informer::new(Api::all(client.clone())),
            hpas: Informer::new(Api::all(client.clone())),
            resourcequotas: Informer::new(Api::all(client.clone())),
            pvs: Informer::new(Api::all(client.clone())),
            storageclasses: Informer::new(Api::all(client.clone())),
            csrs: Informer::new(Api::all(client.clone())),
            replicationcontrollers: Informer::new(Api::all(client.clone())),
            pdbs: Informer::new(Api::all(client.clone())),
        }
    }

    /// Watch every resource until `stop`; returns once every cache is filled.
    pub async fn start(&self, stop: &CancellationToken) {
        let mut synced = Vec::new();
        let mut go = |run: futures::future::BoxFuture<'static, ()>,
                      ready: futures::future::BoxFuture<'static, ()>| {
            tokio::spawn(run);
            synced.push(ready);
        };
        macro_rules! each {
            ($($f:ident),* $(,)?) => {$(
                let i = self.$f.clone();
                go(Box::pin(i.clone().run(stop.clone())), Box::pin(async move { i.synced().await }));
            )*};
        }
        each!(
            pods,
            nodes,
            leases,
            namespaces,
            services,
            replicasets,
            deployments,
            statefulsets,
            daemonsets,
            revisions,
            jobs,
            cronjobs,
            endpoints,
            endpointslices,
            serviceaccounts,
            configmaps,
            system_secrets,
            clusterroles,
            pvcs,
            hpas,
            resourcequotas,
            pvs,
            storageclasses,
            csrs,
            replicationcontrollers,
            pdbs
        );
        futures::future::join_all(synced).await;
        self.ready.cancel();
    }
}

impl Ctx {
    /// Run `workers` workers of the controller `name` on `queue` once every informer's cache
    /// is filled (so no key is reconciled against an empty cache), until the queue is shut
    /// down.
    pub fn spawn_workers<R: Reconcile>(
        &self,
        name: &'static str,
        queue: &Queue,
        workers: usize,
        reconciler: Arc<R>,
    ) {
        let (ready, queue, metrics) = (
            self.informers.ready.clone(),
            queue.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            ready.cancelled().await;
            spawn_workers(name, &queue, workers, reconciler, &metrics);
        });
    }
}

/// What every controller gets.
#[derive(Clone)]
pub struct Ctx {
    pub client: kube::Client,
    pub informers: Informers,
    pub metrics: Metrics,
    /// Cancelled when leadership is lost or the server stops.
    pub stop: CancellationToken,
}

/// One control loop: a name, and the reconcile of one key. `Ok(Some(d))` asks to look
/// again after `d`.
pub trait Reconcile: Send + Sync + 'static {
    fn reconcile(&self, key: String) -> impl Future<Output = Result<Option<Duration>>> + Send;
}

/// Run `workers` workers on `queue` until it is shut down.
pub fn spawn_workers<R: Reconcile>(
    name: &'static str,
    queue: &Queue,
    workers: usize,
    reconciler: Arc<R>,
    metrics: &Metrics,
) {
    for _ in 0..workers {
        let (queue, reconciler, metrics) = (queue.clone(), reconciler.clone(), metrics.clone());
        tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                let start = Instant::now();
                let outcome = reconciler.reconcile(key.clone()).await;
                let result = match outcome {
                    Ok(None) => {
                        queue.forget(&key);
                        "success"
                    }
                    Ok(Some(after)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), after);
                        "requeue"
                    }
                    Err(e) => {
                        tracing::debug!(controller = name, key, error = %e, "reconcile failed");
                        queue.add_rate_limited(key.clone());
                        "error"
                    }
                };
                metrics.reconciled(name, result, start.elapsed());
                queue.done(&key);
            }
        });
    }
}

/// Controller-manager options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Lease holder's name (hostname and a random suffix).
    pub identity: String,
    pub workers: usize,
    /// Where node podCIDRs come from (`--cluster-cidr`).
    pub cluster_cidr: nodeipam::Cidr,
    /// The cluster CA (PEM) published in every namespace as `kube-root-ca.crt`.
    pub root_ca: String,
    /// The server's data dir (the local-path provisioner's volumes are in `storage/`).
    pub data_dir: std::path::PathBuf,
    /// The CAs the certificate signers issue with (none: CSRs are not signed).
    pub signing: Option<certificates::SigningCas>,
}

/// Run the controller manager until `shutdown`: campaign for the lease, and while leading,
/// run every controller.
pub async fn run(
    client: kube::Client,
    options: Options,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let elector =
        leader::Elector::new(client.clone(), "kube-controller-manager", &options.identity);
    elector
        .run(shutdown, move |lost| {
            let ctx = Ctx {
                client: client.clone(),
                informers: Informers::new(&client),
                metrics: metrics.clone(),
                stop: lost.clone(),
            };
            let options = options.clone();
            async move { lead(ctx, options, lost).await }
        })
        .await;
}

/// Start every controller, wait for the caches, and run until `stop`.
async fn lead(ctx: Ctx, options: Options, stop: CancellationToken) {
    let (workers, cluster_cidr) = (options.workers, options.cluster_cidr);
    let queues = vec![
        nodeipam::start(&ctx, cluster_cidr),
        nodelifecycle::start(&ctx, workers),
        replicaset::start(&ctx, workers),
        hpa::start(&ctx, workers),
        replicaset::start_rc(&ctx, workers),
        disruption::start(&ctx, workers),
        gc::start(&ctx, workers),
        namespace::start(&ctx, workers),
        statefulset::start(&ctx, workers),
        daemonset::start(&ctx, workers),
        deployment::start(&ctx, workers),
        job::start(&ctx, workers),
        job::ttl::start(&ctx, workers),
        cronjob::start(&ctx, workers),
        endpoints::start(&ctx, workers),
        endpoints::start_slices(&ctx, workers),
        serviceaccount::start(&ctx, workers),
        rootca::start(&ctx, options.root_ca.clone(), workers),
        certificates::start_signer(&ctx, options.signing.as_ref(), workers),
        certificates::start_approver(&ctx, workers),
        certificates::start_cleaner(&ctx),
        bootstrap::start_cleaner(&ctx),
        bootstrap::start_signer(&ctx, options.root_ca.clone()),
        podgc::start(&ctx),
        resourcequota::start(&ctx, workers),
        volume::start(&ctx, workers),
        volume::localpath::start(&ctx, options.data_dir.join("storage"), workers),
        aggregation::start(&ctx, workers),
    ];
    ctx.informers.start(&stop).await;
    tracing::info!("controllers started");
    stop.cancelled().await;
    for q in queues {
        q.shut_down();
    }
}
