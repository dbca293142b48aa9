//! Shared helpers of minik's integration and end-to-end tests.

pub mod api;
pub mod cni;
pub mod containerd;
pub mod grpc_health;
pub mod host;
pub mod node;
pub mod registry;
pub mod server;
pub mod store_contract;
pub mod tls_server;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `minik` binary built with these tests (`target/<profile>/minik`), or `$MINIK_BIN`.
pub fn minik_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MINIK_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/minik
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("minik");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p minik) or set MINIK_BIN",
        bin.display()
    );
    bin
}

/// Run `minik ARGS` (without RUST_LOG, so that its output is only what it prints) to its
/// end; its output.
pub fn minik(args: &[&str]) -> Output {
    Command::new(minik_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run minik")
}
