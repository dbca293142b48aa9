//! The one home of minik's version numbers.

/// minik's own version (from Cargo).
pub const MINIK_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// The Kubernetes release whose API minik serves (k8s-openapi feature `v1_37`).
pub const KUBERNETES_VERSION: &str = "v1.37.0";

/// Major and minor of the served Kubernetes API, as `/version` reports them.
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "37";

/// The line `minik --version` prints after the program name.
pub const VERSION_LINE: &str = concat!("v", env!("CARGO_PKG_VERSION"), " (Kubernetes v1.37.0)");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_line_names_both_versions() {
        assert!(VERSION_LINE.starts_with(MINIK_VERSION));
        assert!(VERSION_LINE.contains(KUBERNETES_VERSION));
        assert_eq!(
            KUBERNETES_VERSION,
            format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0")
        );
    }
}
