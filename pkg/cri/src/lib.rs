//! minik-cri: a client of the Kubernetes Container Runtime Interface, runtime.v1.
//!
//! The kubelet talks to an external container runtime (containerd, CRI-O) through two gRPC
//! services on a unix socket: `RuntimeService` (pod sandboxes, containers, exec, stats) and
//! `ImageService` (images). [`proto`] holds the messages and generated clients of the subset
//! of runtime.v1 minik uses (proto/runtime_v1.proto, wire-compatible with upstream);
//! [`CriClient`] connects to an endpoint such as `unix:///run/containerd/containerd.sock`,
//! checks that the runtime serves runtime.v1, and wraps every call with a deadline and an
//! error that names the call.

mod client;
mod endpoint;
mod error;
mod image;
mod runtime;

pub use client::{CriClient, Options};
pub use endpoint::socket_path;
pub use error::{Error, Result};
pub use image::image_spec;

/// The CRI runtime.v1 messages and the generated `RuntimeService` and `ImageService` clients.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("runtime.v1");
}

/// The CRI API version this client speaks (`VersionRequest.version`, and what
/// `VersionResponse.runtime_api_version` must say).
pub const API_VERSION: &str = "v1";
