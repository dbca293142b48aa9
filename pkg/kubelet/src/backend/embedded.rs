//! minik's own runtime as a [`Backend`]: containers run by `minik shim`s through
//! libcontainer (minik-runtime's `Runtime`) and images in its content store with overlay
//! snapshots (`ImageStore`), pulled with the registries.yaml mirrors and credentials.
//! exec, attach and port-forward go to the runtime's interactive exec, the container's
//! stdin and resize pipes, and a connection made in the sandbox's network namespace.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use minik_runtime::{
    Auth, Container, ContainerConfig, ExecProcess, ExecResult, FdStream, Image, ImageConfig,
    ImageStore, Registries, Result, Runtime, Sandbox, SandboxConfig, Stats,
};
use minik_streaming::{Duplex, Reader, Streams, TerminalSize, Writer};

use minik_network::PodNetwork;

use super::{Backend, BoxFuture, duplex, network};

/// The embedded runtime: its containers, image store and registry settings.
pub struct Embedded {
    pub runtime: Runtime,
    pub images: ImageStore,
    pub registries: Registries,
    /// The pod network sandboxes join (None: pods have loopback only).
    pub network: Option<Arc<dyn PodNetwork>>,
}

impl Backend for Embedded {
    fn create_sandbox<'a>(&'a self, config: &'a SandboxConfig) -> BoxFuture<'a, Result<Sandbox>> {
        Box::pin(async move {
            let sandbox = self.runtime.create_sandbox(config)?;
            match &self.network {
                Some(network) => network::attach(network, &self.runtime, sandbox).await,
                None => Ok(sandbox),
            }
        })
    }

    fn sandbox(&self, id: &str) -> Option<Sandbox> {
        self.runtime.sandbox(id)
    }

    fn sandboxes(&self) -> Vec<Sandbox> {
        self.runtime.sandboxes()
    }

    fn remove_sandbox<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if let (Some(network), Some(sandbox)) = (&self.network, self.runtime.sandbox(id)) {
                network::detach(network, &sandbox).await?;
            }
            self.runtime.remove_sandbox(id)
        })
    }

    fn start_container(&self, config: ContainerConfig) -> BoxFuture<'_, Result<Container>> {
        Box::pin(self.runtime.start_container(config))
    }

    fn container(&self, id: &str) -> Option<Container> {
        self.runtime.container(id)
    }

    fn containers(&self) -> Vec<Container> {
        self.runtime.containers()
    }

    fn stop_container<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.runtime.stop_container(id, grace))
    }

    fn remove_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.runtime.remove_container(id) })
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        env: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecResult>> {
        Box::pin(self.runtime.exec(id, argv, env, timeout))
    }

    fn stats(&self, id: &str) -> Option<Stats> {
        self.runtime.stats(id)
    }

    fn exec_streams<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        tty: Option<TerminalSize>,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> BoxFuture<'a, Result<Streams>> {
        Box::pin(async move {
            let process = self
                .runtime
                .exec_interactive(id, argv, &[], tty.map(|s| (s.width, s.height)), stdin)
                .await?;
            Ok(streams(process, stdout, stderr))
        })
    }

    fn attach_input<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Writer>> {
        Box::pin(async move { Ok(Box::pin(self.runtime.attach_stdin(id)?) as Writer) })
    }

    fn resize<'a>(&'a self, id: &'a str, size: TerminalSize) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.runtime.resize_console(id, size.width, size.height) })
    }

    fn port_forward<'a>(
        &'a self,
        sandbox_id: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<Box<dyn Duplex>>> {
        Box::pin(async move { duplex(self.runtime.dial(sandbox_id, port).await?) })
    }

    fn image(&self, reference: &str) -> Option<Image> {
        self.images.get(reference)
    }

    fn images(&self) -> Result<Vec<Image>> {
        self.images.list()
    }

    fn pull<'a>(
        &'a self,
        reference: &'a str,
        auth: Option<&'a Auth>,
    ) -> BoxFuture<'a, Result<Image>> {
        Box::pin(self.images.pull(reference, auth, &self.registries))
    }

    fn image_config<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ImageConfig>> {
        Box::pin(async move { self.images.config(id) })
    }

    fn layers(&self, id: &str) -> Result<Vec<PathBuf>> {
        self.images.layers(id)
    }

    fn remove_image<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        let store = self.images.clone();
        let id = id.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || store.remove(&id))
                .await
                .map_err(|e| minik_runtime::Error::Failed(format!("removing an image: {e}")))?
        })
    }

    fn pinned_images(&self) -> BTreeSet<String> {
        self.images.pinned().unwrap_or_default()
    }

    fn leased_images(&self) -> BTreeSet<String> {
        self.images.leased().unwrap_or_default()
    }

    fn lease(&self, holder: &str, id: &str) -> Result<()> {
        self.images.lease(holder, id)
    }

    fn release(&self, holder: &str) -> Result<()> {
        self.images.release(holder)
    }

    fn image_root(&self) -> PathBuf {
        self.images.root().to_path_buf()
    }

    fn image_store(&self) -> Option<&ImageStore> {
        Some(&self.images)
    }

    fn embedded(&self) -> Option<&Runtime> {
        Some(&self.runtime)
    }
}

/// An exec'd process as the streaming server's `Streams`; the outputs the client did not
/// ask for are read and dropped (as if /dev/null), so the process never blocks on them.
fn streams(mut process: ExecProcess, stdout: bool, stderr: bool) -> Streams {
    let stdin = process.stdin.take().map(|s| Box::pin(s) as Writer);
    let stdout = wanted(process.stdout.take(), stdout);
    let stderr = wanted(process.stderr.take(), stderr);
    let resize = process.terminal().map(|terminal| {
        Box::new(move |size: TerminalSize| {
            if let Err(e) = terminal.resize(size.width, size.height) {
                tracing::debug!(error = %e, "resizing an exec's terminal");
            }
        }) as Box<dyn Fn(TerminalSize) + Send + Sync>
    });
    // The future owns the process: dropping it (with the Streams) kills the process.
    let exit = Box::pin(async move { process.wait().await.map_err(|e| e.to_string()) });
    Streams {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    }
}

/// The stream when the client wants it; else drained in the background until it ends.
fn wanted(stream: Option<FdStream>, wanted: bool) -> Option<Reader> {
    let mut stream = stream?;
    if wanted {
        return Some(Box::pin(stream));
    }
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
    });
    None
}
