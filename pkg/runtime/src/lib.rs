//! The embedded container runtime, shaped like the CRI so the kubelet can use it or an
//! external CRI runtime alike:
//! - `images`: a content-addressed store (blobs by digest, layers unpacked once into
//!   snapshot directories, whiteouts honoured), import of OCI-layout and docker-archive
//!   tarballs, pulls from registries (registries.yaml mirrors, credentials), removal.
//! - `sandbox`: a pod's shared network, IPC and UTS namespaces, held by bind-mounted
//!   namespace files (no pause process).
//! - `container`: each container run by its own `minik shim` process through libcontainer
//!   (so containers outlive a minik restart), an overlayfs root over the image's layers,
//!   cgroups v1 and v2, CRI-format logs, exit codes and OOM kills recorded on disk;
//!   exec (captured for probes, or interactive with pipes or a terminal for `kubectl
//!   exec`), attach (a container's stdin pipe, its terminal resized through its shim), and
//!   a connection made in a sandbox's network namespace (`dial`, port-forward).
//!
//! Nothing here knows Kubernetes types: the kubelet translates pods into these configs.

mod cgroups;
pub mod container;
mod dial;
mod fdstream;
pub mod images;
mod logs;
mod process;
mod sandbox;
mod shim;
mod tty;
pub mod types;

pub use container::{ExecProcess, ExecResult, Runtime, Terminal, shim_main};
pub use dial::dial;
pub use fdstream::FdStream;
pub use images::{ImageStore, Registries, normalize};
pub use types::*;
