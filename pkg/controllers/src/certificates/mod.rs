//! CertificateSigningRequests, as kube-controller-manager's certificate controllers handle
//! them:
//!
//! - csrapproving approves kubelet client certificate requests whose requester may create
//!   `certificatesigningrequests/nodeclient` (a new node) or `/selfnodeclient` (a node
//!   renewing its own), by SubjectAccessReview;
//! - csrsigning issues approved requests of the `kubernetes.io` signers with the cluster's
//!   CAs, or marks the invalid ones Failed;
//! - csrcleaner deletes requests that are done with (hourly, and once at start).

mod approver;
mod cleaner;
pub mod request;
pub mod sign;
mod signer;

#[cfg(test)]
mod tests;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

pub use approver::start as start_approver;
pub use cleaner::start as start_cleaner;
pub use signer::start as start_signer;

/// A CA's certificate and key (PEM).
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// The CAs the `kubernetes.io` signers issue with (as k3s wires kube-controller-manager):
/// client certificates (kube-apiserver-client, kube-apiserver-client-kubelet) from the CA
/// the API server trusts for clients; kubelet-serving and legacy-unknown from the server CA.
#[derive(Clone, Debug)]
pub struct SigningCas {
    pub client: Ca,
    pub server: Ca,
    /// The longest a certificate is issued for (`--cluster-signing-duration`; requests may
    /// ask for less with `spec.expirationSeconds`).
    pub duration: std::time::Duration,
}

/// Whether the request has a condition of type `t` that is not False.
pub fn has_condition(csr: &CertificateSigningRequest, t: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == t && c.status != "False")
}

/// Approved and not denied.
pub fn is_approved(csr: &CertificateSigningRequest) -> bool {
    has_condition(csr, "Approved") && !has_condition(csr, "Denied")
}

/// Whether a certificate was issued.
pub fn is_issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// The request of `csr`, read and its signature checked.
pub fn parse(csr: &CertificateSigningRequest) -> crate::Result<request::Request> {
    request::parse(&csr.spec.request.0).map_err(|e| {
        let name = csr.metadata.name.as_deref().unwrap_or_default();
        crate::Error::Other(format!("unable to parse csr {name:?}: {e}"))
    })
}

/// The usages the request lists.
pub fn usages(csr: &CertificateSigningRequest) -> &[String] {
    csr.spec.usages.as_deref().unwrap_or_default()
}
