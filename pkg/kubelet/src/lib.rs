//! The node agent: registration and heartbeat (node.rs), the pod workers (pods.rs) over a
//! `ContainerRuntime` (runtime.rs), pod status as the kubelet writes it (status.rs,
//! conditions.rs), the embedded runtime of real nodes (embedded/), ephemeral containers'
//! specs as containers (ephemeral.rs),
//! resource usage for the metrics API (stats.rs), simulated nodes on a fake runtime
//! (sim.rs, fake.rs), and the real node (local/) on the embedded runtime (embedded/), as
//! the machine describes it (machine.rs) with the labels and taints (labels.rs) and
//! `--kubelet-arg`s (kubelet_args.rs) it was given, and the kubelet's HTTPS server on
//! :10250 (server/).

pub mod backend;
pub mod conditions;
pub mod embedded;
pub mod ephemeral;
pub mod eviction;
pub mod fake;
pub mod gc;
pub mod kubelet_args;
pub mod labels;
pub mod local;
pub mod logs;
pub mod machine;
pub mod node;
pub mod pods;
pub mod probes;
pub mod runtime;
pub mod server;
pub mod sim;
pub mod stats;
pub mod status;

pub use runtime::ContainerRuntime;
