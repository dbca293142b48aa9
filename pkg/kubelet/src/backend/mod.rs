//! What the kubelet's runtime layer (embedded/) needs of a container runtime: pod
//! sandboxes, containers, exec and images, behind one object-safe trait, so the same pod
//! logic (volumes, env, security, probes, hooks, init containers, restarts, GC) drives
//! either minik's own runtime or an external CRI runtime (`--container-runtime-endpoint`),
//! as kubelet's kuberuntime drives any CRI runtime.
//!
//! - embedded.rs: [`Embedded`], minik-runtime's containers (a shim each) and image store.
//! - cri/: [`cri::Cri`], a CRI runtime.v1 server (containerd, CRI-O) through `minik-cri`.
//!
//! Ids are the kubelet's: a sandbox is named by its pod's uid and a container by the id the
//! kubelet chose for it; a backend whose runtime names things itself keeps the mapping.
//! Reads (`sandbox`, `container`, `containers`, `image`, ...) are synchronous: the pod
//! workers ask them on every sync, so a remote backend answers from a cache it keeps fresh.
//! The streaming calls (`exec_streams`, `attach_input`, `resize`, `port_forward`) give the
//! kubelet's streaming server (minik-streaming) the process or port side of `kubectl
//! exec`, `attach` and `port-forward`.

pub mod cri;
mod embedded;
mod network;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

pub use embedded::Embedded;
use minik_runtime::{
    Auth, Container, ContainerConfig, ExecResult, Image, ImageConfig, Result, Sandbox,
    SandboxConfig, Stats,
};
pub(crate) use network::collect as collect_network;

/// The error of a backend whose runtime streams exec and attach itself (`stream_url`), or
/// does not at all, when the kubelet is asked to.
fn own_streaming(what: &str, id: &str) -> minik_runtime::Error {
    minik_runtime::Error::Failed(format!(
        "{what} container {id}: this runtime does not stream through the kubelet"
    ))
}

/// A boxed future, as an object-safe trait returns one.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connection made on a blocking thread (in a pod's network namespace) as a tokio one.
fn duplex(stream: std::net::TcpStream) -> Result<Box<dyn minik_streaming::Duplex>> {
    let registered = stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(stream));
    let stream = registered.map_err(minik_runtime::Error::io(
        "registering a forwarded connection",
    ))?;
    Ok(Box::new(stream))
}

/// A container runtime as the kubelet's pod logic drives it.
pub trait Backend: Send + Sync + 'static {
    /// Create the pod's sandbox (its namespaces); `config.id` is the pod's uid.
    fn create_sandbox<'a>(&'a self, config: &'a SandboxConfig) -> BoxFuture<'a, Result<Sandbox>>;
    fn sandbox(&self, id: &str) -> Option<Sandbox>;
    fn sandboxes(&self) -> Vec<Sandbox>;
    /// Whether the pod's sandbox can run containers (None: there is none). A stopped one
    /// (its runtime lost it, after a reboot) is made again by `create_sandbox`.
    fn sandbox_ready(&self, id: &str) -> Option<bool> {
        self.sandbox(id).map(|_| true)
    }
    /// Remove a sandbox whose containers are all removed.
    fn remove_sandbox<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Create and start a container; returns once its process runs (or failed to start:
    /// then it is Exited with reason "StartError").
    fn start_container(&self, config: ContainerConfig) -> BoxFuture<'_, Result<Container>>;
    fn container(&self, id: &str) -> Option<Container>;
    /// Every container, oldest first.
    fn containers(&self) -> Vec<Container>;
    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone.
    fn stop_container<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<()>>;
    /// Remove a stopped container (its log file stays).
    fn remove_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Run `argv` in a running container (probes, hooks), killed past `timeout`.
    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        env: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecResult>>;
    /// CPU and memory use of a running container.
    fn stats(&self, id: &str) -> Option<Stats>;

    /// Start `argv` in running container `id` with its streams given back (`kubectl
    /// exec`): its stdin when `stdin`, stdout when `stdout`, stderr when `stderr` (never
    /// with a `tty`, a terminal of that first size: it has one output), a resize with a
    /// `tty`; `exit` resolves with its exit code. Dropping the `Streams` kills the process.
    fn exec_streams<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        tty: Option<minik_streaming::TerminalSize>,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> BoxFuture<'a, Result<minik_streaming::Streams>> {
        let _ = (argv, tty, stdin, stdout, stderr);
        Box::pin(async move { Err(own_streaming("exec in", id)) })
    }
    /// Where the runtime's own streaming server serves an exec (`opts.command`) or, with
    /// `attach`, an attachment to running container `id`: a CRI runtime's Exec or Attach
    /// URL, where the kubelet sends the client's connection on. None: the kubelet serves
    /// it itself (`exec_streams`, `attach_input`).
    fn stream_url<'a>(
        &'a self,
        _id: &'a str,
        _opts: &'a minik_streaming::CommandOptions,
        _attach: bool,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async { Ok(None) })
    }
    /// Running container `id`'s stdin, to write to (`kubectl attach -i`; the container was
    /// made with `stdin: true`). Closing it leaves the container's stdin open.
    fn attach_input<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<minik_streaming::Writer>> {
        Box::pin(async move { Err(own_streaming("attach to", id)) })
    }
    /// Set the size of container `id`'s terminal (`tty: true`).
    fn resize<'a>(
        &'a self,
        id: &'a str,
        size: minik_streaming::TerminalSize,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = size;
        Box::pin(async move { Err(own_streaming("resize", id)) })
    }
    /// A connection to localhost:`port` inside sandbox `sandbox_id`'s network namespace
    /// (`kubectl port-forward`).
    fn port_forward<'a>(
        &'a self,
        sandbox_id: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<Box<dyn minik_streaming::Duplex>>>;

    /// An image by reference or id, if present.
    fn image(&self, reference: &str) -> Option<Image>;
    /// Every image present.
    fn images(&self) -> Result<Vec<Image>>;
    /// Pull `reference` (with `auth` when given).
    fn pull<'a>(
        &'a self,
        reference: &'a str,
        auth: Option<&'a Auth>,
    ) -> BoxFuture<'a, Result<Image>>;
    /// What the image's config says about running it.
    fn image_config<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ImageConfig>>;
    /// The image's unpacked layers, lowest first, where the kubelet can read them (the
    /// image's /etc/passwd and /etc/group); empty when the runtime keeps them to itself.
    fn layers(&self, id: &str) -> Result<Vec<PathBuf>>;
    /// Remove an image.
    fn remove_image<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Ids of images image GC must keep (air-gap images, the runtime's pinned ones).
    fn pinned_images(&self) -> BTreeSet<String>;
    /// Ids of images held for containers being created.
    fn leased_images(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }
    /// Hold image `id` for container `holder` while it is created.
    fn lease(&self, _holder: &str, _id: &str) -> Result<()> {
        Ok(())
    }
    fn release(&self, _holder: &str) -> Result<()> {
        Ok(())
    }
    /// The directory on the filesystem images live on (imagefs for stats and eviction).
    fn image_root(&self) -> PathBuf;
    /// nodeInfo.containerRuntimeVersion ("containerd://1.6.20"); None: minik's own.
    fn runtime_version(&self) -> Option<String> {
        None
    }
    /// A container as containerStatuses[].containerID names it ("<runtime>://<its id>").
    fn container_uri(&self, id: &str) -> String {
        format!("minik://{id}")
    }
    /// minik's own image store, when this is the embedded runtime (air-gap imports).
    fn image_store(&self) -> Option<&minik_runtime::ImageStore> {
        None
    }
    /// minik's own container runtime, when this is the embedded runtime (the streaming
    /// parts that read a container's stdin pipe).
    fn embedded(&self) -> Option<&minik_runtime::Runtime> {
        None
    }
}
