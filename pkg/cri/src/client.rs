//! The connection to a CRI runtime: endpoint checks, the runtime.v1 version handshake, and
//! the deadline every call gets (kubelet's `--runtime-request-timeout`, 2 minutes by default).
//!
//! The calls themselves are in `runtime.rs` (RuntimeService) and `image.rs` (ImageService).

use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::proto::image_service_client::ImageServiceClient;
use crate::proto::runtime_service_client::RuntimeServiceClient;
use crate::proto::{VersionRequest, VersionResponse};
use crate::{API_VERSION, endpoint};

/// The largest message the client accepts from the runtime (kubelet's limit: 16 MiB).
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// How the client connects and how long calls may take.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long connecting to the socket may take.
    pub connect_timeout: Duration,
    /// The deadline of each call (kubelet's `--runtime-request-timeout`). Calls that wait
    /// for something of their own (stopping a container, exec) get their wait added.
    pub request_timeout: Duration,
    /// The deadline of an image pull; `None` waits for as long as the pull takes (kubelet
    /// does not time pulls out).
    pub pull_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            pull_timeout: None,
        }
    }
}

/// A client of one CRI runtime (its RuntimeService and ImageService on one connection).
/// Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct CriClient {
    endpoint: String,
    pub(crate) runtime: RuntimeServiceClient<Channel>,
    pub(crate) image: ImageServiceClient<Channel>,
    pub(crate) options: Options,
    version: VersionResponse,
}

impl CriClient {
    /// Connect to `endpoint` (`unix:///run/containerd/containerd.sock`) with default options.
    pub async fn connect(endpoint: &str) -> Result<Self> {
        Self::connect_with(endpoint, Options::default()).await
    }

    /// Connect to `endpoint` and check that the runtime serves CRI runtime.v1.
    pub async fn connect_with(endpoint: &str, options: Options) -> Result<Self> {
        let path = endpoint::socket_path(endpoint)?;
        if !path.exists() {
            return Err(Error::EndpointMissing { path });
        }
        let uri = format!("unix://{}", path.display());
        let channel = Endpoint::from_shared(uri)
            .map_err(|source| Error::Connect {
                endpoint: endpoint.to_string(),
                source,
            })?
            .connect_timeout(options.connect_timeout)
            .connect()
            .await
            .map_err(|source| Error::Connect {
                endpoint: endpoint.to_string(),
                source,
            })?;
        let runtime =
            RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_SIZE);
        let image = ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
        let mut client = Self {
            endpoint: endpoint.to_string(),
            runtime,
            image,
            options,
            version: VersionResponse::default(),
        };
        client.version = client.handshake().await?;
        tracing::info!(
            endpoint,
            runtime = %client.version.runtime_name,
            version = %client.version.runtime_version,
            api = %client.version.runtime_api_version,
            "connected to the container runtime"
        );
        Ok(client)
    }

    /// Ask the runtime's version and require runtime.v1.
    async fn handshake(&self) -> Result<VersionResponse> {
        let unsupported = |detail: String| Error::UnsupportedApi {
            endpoint: self.endpoint.clone(),
            detail,
        };
        let version = match self.version_call().await {
            Ok(v) => v,
            Err(Error::Status { status, .. }) if status.code() == tonic::Code::Unimplemented => {
                return Err(unsupported(format!(
                    "runtime.v1.RuntimeService/Version is not implemented ({})",
                    status.message()
                )));
            }
            Err(e) => return Err(e),
        };
        if version.runtime_api_version != API_VERSION {
            return Err(unsupported(format!(
                "{} {} says its API version is {:?}",
                version.runtime_name, version.runtime_version, version.runtime_api_version
            )));
        }
        Ok(version)
    }

    /// The endpoint this client was connected to, as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The runtime's answer to `Version` when the client connected.
    pub fn runtime_version(&self) -> &VersionResponse {
        &self.version
    }

    /// Ask the runtime its name, version and CRI API version.
    pub async fn version(&self) -> Result<VersionResponse> {
        self.version_call().await
    }

    async fn version_call(&self) -> Result<VersionResponse> {
        let req = VersionRequest {
            version: API_VERSION.to_string(),
        };
        let t = self.options.request_timeout;
        call(
            "Version",
            Some(t),
            self.runtime.clone().version(request(req, Some(t))),
        )
        .await
    }
}

/// A request carrying its deadline (`grpc-timeout`) so the runtime can give up too.
pub(crate) fn request<M>(msg: M, timeout: Option<Duration>) -> tonic::Request<M> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = timeout {
        req.set_timeout(t);
    }
    req
}

/// Await one call within `timeout`, naming the call in its error.
pub(crate) async fn call<T>(
    op: &'static str,
    timeout: Option<Duration>,
    fut: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let res = match timeout {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| Error::Timeout { op, timeout: t })?,
        None => fut.await,
    };
    match res {
        Ok(r) => Ok(r.into_inner()),
        Err(status) => {
            tracing::debug!(op, code = %status.code(), message = status.message(), "CRI call failed");
            Err(Error::Status { op, status })
        }
    }
}
