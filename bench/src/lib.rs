//! Benchmark harness: the stores under test behind one trait, peers started as processes,
//! workloads, and the printed table.

pub mod cluster;
pub mod etcd;
pub mod kv;
pub mod report;
pub mod workloads;
