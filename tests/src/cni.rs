//! A CNI network for the private containerd of the CRI tests (tests/src/containerd.rs):
//! Debian's containernetworking-plugins (`bridge`, `host-local`, `loopback` from
//! /usr/lib/cni) linked into its bin dir, and a conflist giving pods addresses on a bridge
//! of the test's own (`mkcri<n>`, in 10.199.<n>.0/24, no masquerade). The bridge is
//! deleted with the containerd.

use std::path::Path;
use std::process::Command;

/// Where Debian installs the plugins.
const PLUGINS: &str = "/usr/lib/cni";

/// The network of one containerd: its bridge and subnet.
#[derive(Debug, Clone)]
pub struct Network {
    pub bridge: String,
    /// e.g. 10.199.7.0/24.
    pub subnet: String,
    /// The first three octets, "10.199.7".
    pub prefix: String,
}

/// Link the plugins into `<dir>/cni/bin` and write `<dir>/cni/net.d/10-minik-test.conflist`.
pub fn configure(dir: &Path) -> Network {
    let n = std::process::id() % 250;
    let network = Network {
        bridge: format!("mkcri{n}"),
        subnet: format!("10.199.{n}.0/24"),
        prefix: format!("10.199.{n}"),
    };
    let bin = dir.join("cni").join("bin");
    for plugin in ["bridge", "host-local", "loopback"] {
        let source = Path::new(PLUGINS).join(plugin);
        assert!(
            source.exists(),
            "{} is missing (scripts/deps.sh installs containernetworking-plugins)",
            source.display()
        );
        std::os::unix::fs::symlink(&source, bin.join(plugin)).expect("link a CNI plugin");
    }
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "minik-test",
        "plugins": [{
            "type": "bridge",
            "bridge": network.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": network.subnet}]],
                "dataDir": dir.join("cni").join("ipam"),
            },
        }],
    });
    std::fs::write(
        dir.join("cni").join("net.d").join("10-minik-test.conflist"),
        serde_json::to_string_pretty(&conf).expect("conflist"),
    )
    .expect("write the CNI conflist");
    network
}

/// Delete the network's bridge (the veths of stopped pods are gone with their namespaces).
pub fn remove(network: &Network) {
    let _ = Command::new("ip")
        .args(["link", "delete", &network.bridge])
        .output();
}
