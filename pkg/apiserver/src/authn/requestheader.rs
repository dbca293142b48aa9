//! Front-proxy (request-header) authentication: a client whose certificate the
//! request-header CA signed, with a common name in `--requestheader-allowed-names`, says who
//! the user is in `X-Remote-User` and `X-Remote-Group` headers, as kube-apiserver's
//! `--requestheader-*` flags configure.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use super::UserInfo;

/// A trusted authenticating proxy.
#[derive(Clone)]
pub struct RequestHeader {
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Common names a proxy's certificate may have (empty: any the CA signed).
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
}

impl RequestHeader {
    /// kube-apiserver's usual headers, for the proxy named `allowed`.
    pub fn new(verifier: Arc<dyn ClientCertVerifier>, allowed_names: Vec<String>) -> Self {
        RequestHeader {
            verifier,
            allowed_names: allowed_names
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect(),
            username_headers: vec!["x-remote-user".into()],
            group_headers: vec!["x-remote-group".into()],
        }
    }

    /// Whether a connection's certificates are a trusted proxy's.
    pub fn trusts(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        if self
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_err()
        {
            return false;
        }
        if self.allowed_names.is_empty() {
            return true;
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return false;
        };
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or("");
        self.allowed_names.iter().any(|n| n == cn)
    }

    /// The user the headers name (None: no user header).
    pub fn user(&self, headers: &axum::http::HeaderMap) -> Option<UserInfo> {
        let name = self
            .username_headers
            .iter()
            .find_map(|h| headers.get(h).and_then(|v| v.to_str().ok()))
            .filter(|n| !n.is_empty())?
            .to_string();
        let groups = self
            .group_headers
            .iter()
            .flat_map(|h| headers.get_all(h))
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        Some(UserInfo {
            name,
            uid: String::new(),
            groups,
        })
    }
}
