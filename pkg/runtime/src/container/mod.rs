//! Sandboxes and containers: the runtime's API to the kubelet.
//!
//! Each container is run by its own shim process (`minik shim`, see `crate::shim`) through
//! libcontainer, so containers keep running when minik exits and a new minik finds them in
//! the state directory. Reading a container's state reads two small files and spawns
//! nothing, so the kubelet may poll as often as it likes.
//!
//! On disk:
//! ```text
//! <state>/sandboxes/<id>.json        a sandbox's record
//! <state>/containers/<id>/           a container's directory (see state.rs)
//! <run>/sandboxes/<id>/{net,ipc,uts} the sandbox's namespaces (bind mounts)
//! <run>/sandboxes/<id>/shm/          its /dev/shm (tmpfs); hostname: its /etc/hostname
//! <run>/containers/<id>/             libcontainer's state, while the container runs
//! ```

mod attach;
pub mod cleanup;
mod exec;
mod rootfs;
mod seccomp;
mod spec;
mod start;
pub(crate) mod state;
mod stop;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::cgroups::Cgroups;
use crate::sandbox::{Sandboxes, validate_id};
use crate::types::{
    Container, ContainerConfig, ContainerState, Error, Result, Sandbox, SandboxConfig, Stats,
};
use state::{ContainerDir, Record, read_json};

pub use crate::shim::shim_main;
pub use exec::{ExecProcess, ExecResult, MAX_OUTPUT, Terminal};

/// The runtime's state: sandboxes and containers on disk, shims running them. Cheap to
/// clone (shared).
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `<state>/containers`.
    containers: PathBuf,
    /// `<run>/containers`: libcontainer's root.
    libcontainer_root: PathBuf,
    shim: Vec<String>,
    sandboxes: Sandboxes,
    cgroups: Cgroups,
    /// container.json never changes: read once per container.
    records: RwLock<HashMap<String, Arc<Record>>>,
}

impl Runtime {
    /// `state`: <data-dir>/agent/containers (survives restarts); `run`: /run/minik (namespace
    /// files, sockets); `shim`: the program and leading arguments that run a shim
    /// (the minik binary and "shim").
    pub fn open(state: &Path, run: &Path, shim: Vec<String>) -> Result<Runtime> {
        if shim.is_empty() {
            return Err(Error::Invalid("no shim program given".into()));
        }
        let containers = state.join("containers");
        let libcontainer_root = run.join("containers");
        for dir in [&containers, &libcontainer_root] {
            fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        let sandboxes = Sandboxes::new(state, run)?;
        sandboxes.restore();
        let cgroups = Cgroups::detect();
        tracing::debug!(?cgroups, state = %state.display(), run = %run.display(), "container runtime opened");
        Ok(Runtime {
            inner: Arc::new(Inner {
                containers,
                libcontainer_root,
                shim,
                sandboxes,
                cgroups,
                records: RwLock::new(HashMap::new()),
            }),
        })
    }

    pub fn create_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        self.inner.sandboxes.create(config)
    }

    pub fn sandbox(&self, id: &str) -> Option<Sandbox> {
        self.inner.sandboxes.get(id)
    }

    pub fn sandboxes(&self) -> Vec<Sandbox> {
        self.inner.sandboxes.list()
    }

    /// Record the address the pod network gave the sandbox.
    pub fn set_sandbox_ip(&self, id: &str, ip: Option<String>) -> Result<()> {
        self.inner.sandboxes.set_ip(id, ip)
    }

    /// Remove a sandbox whose containers are all removed.
    pub fn remove_sandbox(&self, id: &str) -> Result<()> {
        let left = self
            .containers()
            .into_iter()
            .filter(|c| c.config.sandbox_id == id)
            .count();
        if left > 0 {
            return Err(Error::Invalid(format!(
                "sandbox {id} still has {left} container(s); remove them first"
            )));
        }
        self.inner.sandboxes.remove(id)?;
        self.inner.cgroups.remove_pod(id);
        Ok(())
    }

    /// Create and start a container; returns once its process runs (or failed to start:
    /// then the container is Exited with reason "StartError").
    pub async fn start_container(&self, config: ContainerConfig) -> Result<Container> {
        start::start(self, config).await
    }

    pub fn container(&self, id: &str) -> Option<Container> {
        let record = self.record(id)?;
        Some(state::load(&self.dir(id), &record))
    }

    pub fn containers(&self) -> Vec<Container> {
        let Ok(entries) = fs::read_dir(&self.inner.containers) else {
            return Vec::new();
        };
        let mut containers: Vec<Container> = entries
            .flatten()
            .filter_map(|e| self.container(e.file_name().to_str()?))
            .collect();
        containers.sort_by(|a, b| {
            a.created
                .cmp(&b.created)
                .then(a.config.id.cmp(&b.config.id))
        });
        containers
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone and its exit
    /// recorded. Stopping an exited container does nothing.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        stop::stop(self, id, grace).await
    }

    /// Run `argv` in a running container, as its user, in its namespaces and cgroup, with
    /// its environment plus `env` ("NAME=value"); stdout and stderr together, capped at
    /// `MAX_OUTPUT`. Past `timeout` the process is killed: `Error::Timeout`.
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        env: &[String],
        timeout: Duration,
    ) -> Result<ExecResult> {
        self.exec_in(id, argv, env, timeout).await
    }

    /// Remove a stopped container (its root filesystem and state; its log file stays).
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let container = self
            .container(id)
            .ok_or_else(|| Error::ContainerNotFound(id.into()))?;
        if let ContainerState::Running { .. } = container.state {
            return Err(Error::Invalid(format!(
                "container {id} is running; stop it first"
            )));
        }
        if container.state == ContainerState::Created && self.shim_running(id) {
            return Err(Error::Invalid(format!("container {id} is being started")));
        }
        let dir = self.dir(id);
        rootfs::unmount_rootfs(&dir)?;
        fs::remove_dir_all(&dir.dir)
            .map_err(Error::io(format!("removing {}", dir.dir.display())))?;
        // libcontainer's state is gone unless its shim died early; never leave it behind.
        let leftover = self.inner.libcontainer_root.join(id);
        if leftover.exists() {
            let _ = fs::remove_dir_all(&leftover);
        }
        self.forget(id);
        tracing::info!(container = id, "container removed");
        Ok(())
    }

    /// CPU and memory use of a running container.
    pub fn stats(&self, id: &str) -> Option<Stats> {
        let record = self.record(id)?;
        let (cpu, memory) = self.inner.cgroups.usage(&record.cgroup)?;
        Some(Stats {
            cpu_usage_nanoseconds: cpu,
            memory_working_set_bytes: memory,
            timestamp: SystemTime::now(),
        })
    }

    /// The named pipe the container's stdin reads from (containers with `stdin: true`):
    /// what is written into it reaches the container, which never sees end-of-file.
    pub fn stdin_path(&self, id: &str) -> Option<PathBuf> {
        let record = self.record(id)?;
        record.config.stdin.then(|| self.dir(id).stdin())
    }

    fn dir(&self, id: &str) -> ContainerDir {
        ContainerDir::new(self.inner.containers.join(id))
    }

    /// A container's record, cached.
    fn record(&self, id: &str) -> Option<Arc<Record>> {
        validate_id(id).ok()?;
        if let Ok(records) = self.inner.records.read()
            && let Some(record) = records.get(id)
        {
            // The directory may have been removed by another Runtime on the same state.
            if self.dir(id).dir.exists() {
                return Some(record.clone());
            }
        }
        let record = match read_json::<Record>(&self.dir(id).record()) {
            Ok(Some(r)) => Arc::new(r),
            Ok(None) => {
                self.forget(id);
                return None;
            }
            Err(e) => {
                tracing::warn!(container = id, error = %e, "unreadable container record");
                return None;
            }
        };
        if let Ok(mut records) = self.inner.records.write() {
            records.insert(id.to_string(), record.clone());
        }
        Some(record)
    }

    fn forget(&self, id: &str) {
        if let Ok(mut records) = self.inner.records.write() {
            records.remove(id);
        }
    }

    /// Whether libcontainer holds state for `id` (a shim is creating or running it).
    fn shim_running(&self, id: &str) -> bool {
        self.inner.libcontainer_root.join(id).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync + Clone + 'static>() {}
    fn send<T: Send>(_: T) {}

    /// The kubelet keeps the runtime in shared state and awaits these in spawned tasks.
    #[test]
    fn runtime_and_its_futures_cross_threads() {
        shareable::<Runtime>();
        let _ = |runtime: Runtime, config: ContainerConfig| {
            send(runtime.start_container(config));
            send(runtime.stop_container("x", Duration::ZERO));
        };
    }
}
