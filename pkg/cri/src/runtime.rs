//! The RuntimeService calls: runtime status, pod sandboxes, containers, exec (ExecSync, and
//! Exec and Attach for the streaming server) and stats.
//!
//! Each call gets the client's request deadline; `StopContainer` and `ExecSync` get their
//! own wait added to it, as kubelet's remote runtime does.

use std::time::Duration;

use crate::client::{CriClient, call, request};
use crate::error::{Error, Result};
use crate::proto::{
    AttachRequest, Container, ContainerConfig, ContainerFilter, ContainerStats,
    ContainerStatsFilter, ContainerStatsRequest, ContainerStatusRequest, ContainerStatusResponse,
    CreateContainerRequest, ExecRequest, ExecSyncRequest, ExecSyncResponse,
    ListContainerStatsRequest, ListContainersRequest, ListPodSandboxRequest, PodSandbox,
    PodSandboxConfig, PodSandboxFilter, PodSandboxStatusRequest, PodSandboxStatusResponse,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StatusRequest, StatusResponse, StopContainerRequest, StopPodSandboxRequest,
};

impl CriClient {
    fn deadline(&self) -> Option<Duration> {
        Some(self.options.request_timeout)
    }

    /// The runtime's conditions (RuntimeReady, NetworkReady); with `verbose`, its config.
    pub async fn status(&self, verbose: bool) -> Result<StatusResponse> {
        let t = self.deadline();
        let req = request(StatusRequest { verbose }, t);
        call("Status", t, self.runtime.clone().status(req)).await
    }

    /// Create and start a pod sandbox; its id.
    pub async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let op = "RunPodSandbox";
        let t = self.deadline();
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.to_string(),
        };
        let resp = call(op, t, self.runtime.clone().run_pod_sandbox(request(req, t))).await?;
        if resp.pod_sandbox_id.is_empty() {
            return Err(Error::MissingField {
                op,
                field: "pod_sandbox_id",
            });
        }
        Ok(resp.pod_sandbox_id)
    }

    /// Stop a pod sandbox and every container in it (idempotent).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let t = self.deadline();
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        call(
            "StopPodSandbox",
            t,
            self.runtime.clone().stop_pod_sandbox(request(req, t)),
        )
        .await?;
        Ok(())
    }

    /// Remove a pod sandbox and its containers (idempotent).
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let t = self.deadline();
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let mut rt = self.runtime.clone();
        let fut = rt.remove_pod_sandbox(request(req, t));
        call("RemovePodSandbox", t, fut).await?;
        Ok(())
    }

    /// The status of a pod sandbox.
    pub async fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse> {
        let t = self.deadline();
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose,
        };
        let mut rt = self.runtime.clone();
        let fut = rt.pod_sandbox_status(request(req, t));
        call("PodSandboxStatus", t, fut).await
    }

    /// The pod sandboxes matching `filter` (all with `None`).
    pub async fn list_pod_sandbox(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> Result<Vec<PodSandbox>> {
        let t = self.deadline();
        let req = ListPodSandboxRequest { filter };
        let mut rt = self.runtime.clone();
        let fut = rt.list_pod_sandbox(request(req, t));
        Ok(call("ListPodSandbox", t, fut).await?.items)
    }

    /// Create a container in sandbox `sandbox_id` (created with `sandbox_config`); its id.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        let op = "CreateContainer";
        let t = self.deadline();
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let resp = call(
            op,
            t,
            self.runtime.clone().create_container(request(req, t)),
        )
        .await?;
        if resp.container_id.is_empty() {
            return Err(Error::MissingField {
                op,
                field: "container_id",
            });
        }
        Ok(resp.container_id)
    }

    /// Start a created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let t = self.deadline();
        let req = StartContainerRequest {
            container_id: id.to_string(),
        };
        call(
            "StartContainer",
            t,
            self.runtime.clone().start_container(request(req, t)),
        )
        .await?;
        Ok(())
    }

    /// Stop a container: SIGTERM (or the image's stop signal), then SIGKILL after
    /// `grace` (whole seconds; zero kills at once). Idempotent.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let t = Some(self.options.request_timeout + grace);
        let req = StopContainerRequest {
            container_id: id.to_string(),
            timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        };
        call(
            "StopContainer",
            t,
            self.runtime.clone().stop_container(request(req, t)),
        )
        .await?;
        Ok(())
    }

    /// Remove a container, killing it if it runs (idempotent).
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let t = self.deadline();
        let req = RemoveContainerRequest {
            container_id: id.to_string(),
        };
        let mut rt = self.runtime.clone();
        let fut = rt.remove_container(request(req, t));
        call("RemoveContainer", t, fut).await?;
        Ok(())
    }

    /// The containers matching `filter` (all with `None`).
    pub async fn list_containers(&self, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
        let t = self.deadline();
        let req = ListContainersRequest { filter };
        let mut rt = self.runtime.clone();
        let fut = rt.list_containers(request(req, t));
        Ok(call("ListContainers", t, fut).await?.containers)
    }

    /// The status of a container.
    pub async fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse> {
        let t = self.deadline();
        let req = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        };
        let mut rt = self.runtime.clone();
        let fut = rt.container_status(request(req, t));
        call("ContainerStatus", t, fut).await
    }

    /// Run `cmd` in a running container and wait for it, at most `timeout` (whole seconds;
    /// zero waits for as long as it runs); its output and exit code.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        let t = (!timeout.is_zero()).then(|| self.options.request_timeout + timeout);
        let req = ExecSyncRequest {
            container_id: id.to_string(),
            cmd,
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        call(
            "ExecSync",
            t,
            self.runtime.clone().exec_sync(request(req, t)),
        )
        .await
    }

    /// Where the runtime's streaming server serves `req` (an exec in a running container):
    /// the URL the client's upgraded connection is sent on to.
    pub async fn exec(&self, req: ExecRequest) -> Result<String> {
        let t = self.deadline();
        let resp = call("Exec", t, self.runtime.clone().exec(request(req, t))).await?;
        Ok(resp.url)
    }

    /// Where the runtime's streaming server serves an attachment to a running container.
    pub async fn attach(&self, req: AttachRequest) -> Result<String> {
        let t = self.deadline();
        let resp = call("Attach", t, self.runtime.clone().attach(request(req, t))).await?;
        Ok(resp.url)
    }

    /// The resource usage of one container.
    pub async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let op = "ContainerStats";
        let t = self.deadline();
        let req = ContainerStatsRequest {
            container_id: id.to_string(),
        };
        let resp = call(op, t, self.runtime.clone().container_stats(request(req, t))).await?;
        resp.stats.ok_or(Error::MissingField { op, field: "stats" })
    }

    /// The resource usage of the containers matching `filter` (all with `None`).
    pub async fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>> {
        let t = self.deadline();
        let req = ListContainerStatsRequest { filter };
        let mut rt = self.runtime.clone();
        let fut = rt.list_container_stats(request(req, t));
        Ok(call("ListContainerStats", t, fut).await?.stats)
    }
}
