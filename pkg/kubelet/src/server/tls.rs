//! The kubelet server's TLS: its serving certificate and key, and client certificates
//! requested but not required. As kubelet (`tls.RequestClientCert`), a client certificate
//! is judged per request, not during the handshake: one the client CA did not sign makes
//! the request unauthenticated (401) rather than failing the connection.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

/// The serving certificate, its key and the CA that signs client certificates, PEM.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: String,
}

pub use minik_auth::tls::{certs, client_verifier};

/// The listener's TLS configuration (HTTP/2 and HTTP/1.1).
pub fn server_config(m: &TlsMaterial) -> std::io::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut m.key_pem.as_bytes())?
        .ok_or_else(|| std::io::Error::other("no private key in the kubelet serving key"))?;
    let verifier = minik_auth::tls::deferred(client_verifier(&m.client_ca_pem)?);
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&m.cert_pem)?, key)
        .map_err(std::io::Error::other)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The user a verified client certificate names: CN the user, O the groups (as
/// Kubernetes' x509 authenticator reads it).
pub fn cert_user(leaf: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((name, groups))
}

/// The user of the certificate chain `chain` (leaf first) when the client CA signed it.
pub fn verified_user(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'static>],
) -> Option<(String, Vec<String>)> {
    let (leaf, rest) = chain.split_first()?;
    match verifier.verify_client_cert(leaf, rest, UnixTime::now()) {
        Ok(_) => cert_user(leaf),
        Err(e) => {
            tracing::debug!(error = %e, "client certificate not accepted");
            None
        }
    }
}
