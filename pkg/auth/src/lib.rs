//! PKI and credentials: the cluster CAs, the API server's serving certificate, the admin
//! client certificate, and the admin kubeconfig.

pub mod certs;
pub mod join_token;
mod kubeconfig;
mod pki;
pub mod tls;

pub use kubeconfig::{admin_kubeconfig, write_mode, write_private};
pub use pki::{CertPair, Pki, kubelet_serving};

/// Errors of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate {what}: {message}")]
    Cert { what: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
