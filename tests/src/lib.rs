//! Shared helpers of minik's integration and end-to-end tests.

pub mod api;
pub mod containerd;
pub mod grpc_health;
pub mod node;
pub mod registry;
pub mod server;
pub mod store_contract;
pub mod tls_server;

use std::path::PathBuf;

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
