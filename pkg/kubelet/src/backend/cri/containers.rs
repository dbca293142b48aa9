//! Containers through CreateContainer, StartContainer, StopContainer, RemoveContainer and
//! ExecSync, named by the kubelet's ids (the `minik.io/container-id` label finds them again
//! after a restart). A container that fails to start is Exited with reason "StartError",
//! as kubelet reports it; exec has no environment in CRI, so `env` runs argv through env(1).

use std::time::{Duration, SystemTime};

use minik_runtime::container::MAX_OUTPUT;
use minik_runtime::{Container, ContainerConfig, ContainerState, Error, ExecResult, Result};

use super::cache::ContainerEntry;
use super::{Cri, convert, cri_error, info, relist, status};

/// How long a stopped container may take to report its exit beyond its grace period.
const AFTER_STOP: Duration = Duration::from_secs(30);
/// How often a stopping container's status is asked.
const POLL: Duration = Duration::from_millis(100);

/// A duration in whole seconds, rounded up (CRI timeouts are whole seconds).
pub(super) fn ceil_secs(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs)
}

/// The argv ExecSync runs for `argv` with extra environment `env` ("K=V").
pub(super) fn exec_argv(argv: &[String], env: &[String]) -> Vec<String> {
    if env.is_empty() {
        return argv.to_vec();
    }
    let mut cmd = Vec::with_capacity(1 + env.len() + argv.len());
    cmd.push("env".to_string());
    cmd.extend(env.iter().cloned());
    cmd.extend(argv.iter().cloned());
    cmd
}

/// stdout then stderr, at most `MAX_OUTPUT` bytes, as the embedded runtime's exec gives.
pub(super) fn exec_output(stdout: Vec<u8>, stderr: &[u8]) -> Vec<u8> {
    let mut output = stdout;
    output.extend_from_slice(stderr);
    output.truncate(MAX_OUTPUT);
    output
}

impl Cri {
    /// The runtime's id of the container the kubelet calls `id`.
    pub(super) fn cri_id(&self, id: &str) -> Result<String> {
        self.lock()
            .container(id)
            .map(|(cri_id, _)| cri_id.clone())
            .ok_or_else(|| Error::ContainerNotFound(id.to_string()))
    }

    /// Create and start a container; Exited with "StartError" when it fails to start.
    pub(super) async fn run_container(&self, config: ContainerConfig) -> Result<Container> {
        let (sandbox_id, sandbox, sandbox_config) = self
            .lock()
            .sandbox(&config.sandbox_id)
            .map(|(cri_id, e)| (cri_id.clone(), e.sandbox.config.clone(), e.config.clone()))
            .ok_or_else(|| Error::SandboxNotFound(config.sandbox_id.clone()))?;
        let mut cri_config = convert::container_config(&config, &sandbox, &self.layout);
        if let Some(target) = &config.target_pid_ns {
            let target = self.cri_id(target)?;
            convert::target_pid_namespace(&mut cri_config, &target);
        }
        let sandbox_config = convert::for_container(sandbox_config, &config);
        let (id, name) = (&config.id, &config.name);
        tracing::debug!(container = %id, name = %name, "CRI CreateContainer");
        let cri_id = self
            .client
            .create_container(&sandbox_id, cri_config, sandbox_config)
            .await
            .map_err(|e| cri_error(format!("creating container {name} ({id})"), e))?;
        tracing::info!(container = %id, id = %cri_id, pod = %config.sandbox_id, name = %name, "container created");
        tracing::debug!(container = %id, "CRI StartContainer");
        let started = self.client.start_container(&cri_id).await;
        let (s, pid) = match self.client.container_status(&cri_id, true).await {
            Ok(r) => (r.status, info::container_pid(&r.info)),
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "status after start");
                (None, None)
            }
        };
        let cri_state = s.as_ref().map_or(0, |s| s.state);
        let created = s
            .as_ref()
            .and_then(|s| status::time(s.created_at))
            .unwrap_or_else(SystemTime::now);
        let state = match (&started, &s) {
            (Ok(()), Some(s)) => match status::state(s) {
                ContainerState::Running { started, .. } => ContainerState::Running {
                    pid: pid.unwrap_or(0),
                    started,
                },
                state => state,
            },
            (Ok(()), None) => ContainerState::Running {
                pid: 0,
                started: SystemTime::now(),
            },
            (Err(e), s) => {
                tracing::info!(container = %id, error = %e, "container failed to start");
                // containerd records the failure itself (128, "StartError"); say so anyway.
                let (exit_code, message, finished) = match s.as_ref().map(status::state) {
                    Some(ContainerState::Exited {
                        exit_code,
                        message,
                        finished,
                        ..
                    }) => (exit_code, message, finished),
                    _ => (128, None, SystemTime::now()),
                };
                ContainerState::Exited {
                    exit_code,
                    reason: "StartError".to_string(),
                    message: message.or_else(|| Some(e.to_string())),
                    started: None,
                    finished,
                }
            }
        };
        let container = Container {
            config,
            state,
            created,
        };
        let entry = ContainerEntry {
            container: container.clone(),
            cri_state,
            touched: 0,
        };
        self.lock().put_container(&cri_id, entry);
        Ok(container)
    }

    /// Stop a container (SIGTERM, SIGKILL after `grace`) and wait until it has exited.
    pub(super) async fn halt_container(&self, id: &str, grace: Duration) -> Result<()> {
        let cri_id = self.cri_id(id)?;
        let grace = ceil_secs(grace);
        tracing::debug!(container = id, ?grace, "CRI StopContainer");
        match self.client.stop_container(&cri_id, grace).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                self.lock().remove_container(&cri_id);
                return Ok(());
            }
            Err(e) => return Err(cri_error(format!("stopping container {id}"), e)),
        }
        let deadline = tokio::time::Instant::now() + grace + AFTER_STOP;
        loop {
            let Some(s) = relist::container_status(&self.client, &cri_id).await? else {
                self.lock().remove_container(&cri_id);
                return Ok(());
            };
            // Done once it has exited (or never ran: a created container stays created).
            if !matches!(status::state(&s), ContainerState::Running { .. }) {
                self.refresh(&cri_id, &s);
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(grace + AFTER_STOP));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Put a container's fresh status in the cache (keeping the config the kubelet gave).
    fn refresh(&self, cri_id: &str, s: &minik_cri::proto::ContainerStatus) {
        let mut cache = self.lock();
        let images = cache.image_list();
        let cached = cache.containers.get(cri_id).cloned();
        if let Some(entry) = relist::container_entry(s, cached.as_ref(), &images) {
            cache.put_container(cri_id, entry);
        }
    }

    /// Remove a container (its log file stays); one already gone is removed.
    pub(super) async fn delete_container(&self, id: &str) -> Result<()> {
        let cri_id = self.cri_id(id)?;
        tracing::debug!(container = id, "CRI RemoveContainer");
        match self.client.remove_container(&cri_id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(cri_error(format!("removing container {id}"), e)),
        }
        self.lock().remove_container(&cri_id);
        tracing::info!(container = id, id = %cri_id, "container removed");
        Ok(())
    }

    /// Run `argv` (with `env`) in a running container within `timeout`.
    pub(super) async fn exec_in(
        &self,
        id: &str,
        argv: &[String],
        env: &[String],
        timeout: Duration,
    ) -> Result<ExecResult> {
        let cri_id = self.cri_id(id)?;
        let cmd = exec_argv(argv, env);
        tracing::debug!(container = id, ?cmd, ?timeout, "CRI ExecSync");
        let resp = self
            .client
            .exec_sync(&cri_id, cmd, ceil_secs(timeout))
            .await
            .map_err(|e| match e {
                minik_cri::Error::Status { ref status, .. }
                    if status.code() == tonic::Code::DeadlineExceeded =>
                {
                    Error::Timeout(timeout)
                }
                e => cri_error(format!("exec in container {id}"), e),
            })?;
        Ok(ExecResult {
            exit_code: resp.exit_code,
            output: exec_output(resp.stdout, &resp.stderr),
        })
    }
}
