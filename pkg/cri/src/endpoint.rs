//! Container runtime endpoints: `unix:///path` (kubelet's `--container-runtime-endpoint`
//! form), `unix:/path`, or a bare absolute socket path (which kubelet still accepts).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The socket path of a container runtime endpoint.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.starts_with('/') {
        endpoint
    } else {
        return Err(Error::UnsupportedEndpoint(endpoint.to_string()));
    };
    if !path.starts_with('/') {
        return Err(Error::UnsupportedEndpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_endpoints_give_their_socket_path() {
        for e in [
            "unix:///run/containerd/containerd.sock",
            "unix:/run/containerd/containerd.sock",
            "/run/containerd/containerd.sock",
        ] {
            assert_eq!(
                socket_path(e).unwrap(),
                PathBuf::from("/run/containerd/containerd.sock"),
                "{e}"
            );
        }
    }

    #[test]
    fn other_endpoints_are_refused() {
        for e in [
            "tcp://127.0.0.1:1234",
            "npipe:////./pipe/containerd",
            "unix://relative.sock",
            "containerd.sock",
            "",
        ] {
            assert!(
                matches!(socket_path(e), Err(Error::UnsupportedEndpoint(_))),
                "{e}"
            );
        }
    }
}
