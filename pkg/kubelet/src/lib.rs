//! The node agent: registration and heartbeat (node.rs), the pod workers (pods.rs) over a
//! `ContainerRuntime` (runtime.rs), pod status as the kubelet writes it (status.rs),
//! resource usage for the metrics API (stats.rs), and simulated nodes on a fake runtime
//! (sim.rs, fake.rs).

pub mod fake;
pub mod node;
pub mod pods;
pub mod runtime;
pub mod sim;
pub mod stats;
pub mod status;

pub use runtime::ContainerRuntime;
