//! Tests only: a [`Backend`] that keeps sandboxes and containers in memory, with one image
//! present, so the pod sync can be driven without processes. Containers run once started
//! and exit when a test says so; joining the PID namespace of a container that is not
//! running fails, as minik's runtime refuses it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use minik_runtime::{
    Auth, Container, ContainerConfig, ContainerState, Error, ExecResult, Image, ImageConfig,
    Result, Sandbox, SandboxConfig, Stats,
};

use crate::backend::{Backend, BoxFuture};

/// The image every test pod uses.
pub const IMAGE: &str = "docker.io/library/busybox:1.36";

/// What the fake does not do (streams).
fn unsupported() -> Error {
    Error::Failed("the fake backend has no streams".into())
}

#[derive(Default)]
pub struct FakeBackend {
    sandboxes: Mutex<BTreeMap<String, Sandbox>>,
    containers: Mutex<Vec<Container>>,
}

impl FakeBackend {
    fn containers_mut(&self) -> MutexGuard<'_, Vec<Container>> {
        self.containers.lock().unwrap()
    }

    /// The container's process exits with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        for c in self
            .containers_mut()
            .iter_mut()
            .filter(|c| c.config.id == id)
        {
            let started = match c.state {
                ContainerState::Running { started, .. } => Some(started),
                _ => None,
            };
            c.state = ContainerState::Exited {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: None,
                started,
                finished: SystemTime::now(),
            };
        }
    }

    /// Every container of the pod named `name`, oldest first.
    pub fn named(&self, name: &str) -> Vec<Container> {
        self.containers()
            .into_iter()
            .filter(|c| c.config.name == name)
            .collect()
    }

    fn image_now(&self) -> Image {
        Image {
            id: "sha256:busybox".into(),
            repo_tags: vec![IMAGE.into()],
            repo_digests: vec![],
            size: 1,
        }
    }
}

impl Backend for FakeBackend {
    fn create_sandbox<'a>(&'a self, config: &'a SandboxConfig) -> BoxFuture<'a, Result<Sandbox>> {
        let sandbox = Sandbox {
            config: config.clone(),
            netns: None,
            created: SystemTime::now(),
            ip: None,
        };
        self.sandboxes
            .lock()
            .unwrap()
            .insert(config.id.clone(), sandbox.clone());
        Box::pin(async move { Ok(sandbox) })
    }

    fn sandbox(&self, id: &str) -> Option<Sandbox> {
        self.sandboxes.lock().unwrap().get(id).cloned()
    }

    fn sandboxes(&self) -> Vec<Sandbox> {
        self.sandboxes.lock().unwrap().values().cloned().collect()
    }

    fn remove_sandbox<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.sandboxes.lock().unwrap().remove(id);
        Box::pin(async { Ok(()) })
    }

    fn start_container(&self, config: ContainerConfig) -> BoxFuture<'_, Result<Container>> {
        let target_runs = config.target_pid_ns.as_ref().map(|t| {
            self.container(t)
                .is_some_and(|c| matches!(c.state, ContainerState::Running { .. }))
        });
        let result = if target_runs == Some(false) {
            Err(Error::Invalid("target container is not running".into()))
        } else {
            let c = Container {
                config,
                state: ContainerState::Running {
                    pid: 1,
                    started: SystemTime::now(),
                },
                created: SystemTime::now(),
            };
            self.containers_mut().push(c.clone());
            Ok(c)
        };
        Box::pin(async move { result })
    }

    fn container(&self, id: &str) -> Option<Container> {
        self.containers_mut()
            .iter()
            .find(|c| c.config.id == id)
            .cloned()
    }

    fn containers(&self) -> Vec<Container> {
        self.containers_mut().clone()
    }

    fn stop_container<'a>(&'a self, id: &'a str, _grace: Duration) -> BoxFuture<'a, Result<()>> {
        if self
            .container(id)
            .is_some_and(|c| matches!(c.state, ContainerState::Running { .. }))
        {
            self.exit(id, 137);
        }
        Box::pin(async { Ok(()) })
    }

    fn remove_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.containers_mut().retain(|c| c.config.id != id);
        Box::pin(async { Ok(()) })
    }

    fn exec<'a>(
        &'a self,
        _id: &'a str,
        _argv: &'a [String],
        _env: &'a [String],
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecResult>> {
        Box::pin(async {
            Ok(ExecResult {
                exit_code: 0,
                output: Vec::new(),
            })
        })
    }

    fn stats(&self, _id: &str) -> Option<Stats> {
        None
    }

    fn port_forward<'a>(
        &'a self,
        _sandbox_id: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, Result<Box<dyn minik_streaming::Duplex>>> {
        Box::pin(async { Err(unsupported()) })
    }

    fn image(&self, reference: &str) -> Option<Image> {
        let image = self.image_now();
        (reference == IMAGE || reference == image.id).then_some(image)
    }

    fn images(&self) -> Result<Vec<Image>> {
        Ok(vec![self.image_now()])
    }

    fn pull<'a>(
        &'a self,
        reference: &'a str,
        _auth: Option<&'a Auth>,
    ) -> BoxFuture<'a, Result<Image>> {
        let result = self.image(reference).ok_or_else(|| Error::Pull {
            image: reference.into(),
            message: "not found".into(),
        });
        Box::pin(async move { result })
    }

    fn image_config<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<ImageConfig>> {
        Box::pin(async {
            Ok(ImageConfig {
                cmd: vec!["sh".into()],
                ..Default::default()
            })
        })
    }

    fn layers(&self, _id: &str) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }

    fn remove_image<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn pinned_images(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn image_root(&self) -> PathBuf {
        PathBuf::from("/nonexistent")
    }
}
