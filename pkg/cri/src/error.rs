//! Errors of the CRI client: each says which endpoint or which call failed and why.

use std::path::PathBuf;
use std::time::Duration;

/// A CRI client error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a `unix://` socket address.
    #[error("container runtime endpoint {0:?} is not supported: use unix:///path/to/socket")]
    UnsupportedEndpoint(String),
    /// Nothing listens at the endpoint: the socket file does not exist.
    #[error(
        "container runtime endpoint {}: the socket does not exist (is the runtime running?)",
        path.display()
    )]
    EndpointMissing {
        /// The socket path.
        path: PathBuf,
    },
    /// The connection to the socket failed or timed out.
    #[error("connecting to container runtime endpoint {endpoint}: {source}")]
    Connect {
        /// The endpoint as given.
        endpoint: String,
        /// What went wrong.
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime does not serve CRI runtime.v1 (an older runtime serving only v1alpha2,
    /// or something that is not a CRI runtime at all).
    #[error("container runtime at {endpoint} does not serve CRI runtime.v1: {detail}")]
    UnsupportedApi {
        /// The endpoint as given.
        endpoint: String,
        /// What the runtime answered.
        detail: String,
    },
    /// A call did not finish within its deadline.
    #[error("CRI {op} timed out after {timeout:?}")]
    Timeout {
        /// The gRPC method.
        op: &'static str,
        /// The deadline it had.
        timeout: Duration,
    },
    /// The runtime answered a call with an error status.
    #[error("CRI {op}: {}: {}", status.code(), status.message())]
    Status {
        /// The gRPC method.
        op: &'static str,
        /// The runtime's status.
        #[source]
        status: tonic::Status,
    },
    /// The runtime answered without a field the call's result needs.
    #[error("CRI {op}: the runtime's answer has no {field}")]
    MissingField {
        /// The gRPC method.
        op: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

impl Error {
    /// Whether the runtime said the object (sandbox, container, image) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Status { status, .. } if status.code() == tonic::Code::NotFound)
    }
}

/// A CRI client result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
