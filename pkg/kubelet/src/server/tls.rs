//! The kubelet server's TLS: its serving certificate and key, and client certificates
//! requested but not required. As kubelet (`tls.RequestClientCert`), a client certificate
//! is judged per request, not during the handshake: one the client CA did not sign makes
//! the request unauthenticated (401) rather than failing the connection.

use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The serving certificate (replaceable while serving) and the CA that signs client
/// certificates, PEM.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub cert: ServingCert,
    pub client_ca_pem: String,
}

/// The kubelet server's certificate and key. Clones share it: `replace` (an agent
/// rotating its certificate) changes what every later handshake presents, while
/// connections already open keep theirs, as kubelet's certificate manager does.
#[derive(Clone)]
pub struct ServingCert(Arc<RwLock<Arc<CertifiedKey>>>);

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert").finish_non_exhaustive()
    }
}

impl ServingCert {
    /// The certificate chain `cert_pem` with the private key `key_pem`.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> std::io::Result<ServingCert> {
        Ok(ServingCert(Arc::new(RwLock::new(certified(
            cert_pem, key_pem,
        )?))))
    }

    /// Serve `cert_pem` and `key_pem` from now on; an unusable pair changes nothing.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> std::io::Result<()> {
        let key = certified(cert_pem, key_pem)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A signing key and its certificate chain, checked to belong together.
fn certified(cert_pem: &str, key_pem: &str) -> std::io::Result<Arc<CertifiedKey>> {
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())?
        .ok_or_else(|| std::io::Error::other("no private key in the kubelet serving key"))?;
    let provider = rustls::crypto::ring::default_provider();
    let key =
        CertifiedKey::from_der(certs(cert_pem)?, key, &provider).map_err(std::io::Error::other)?;
    Ok(Arc::new(key))
}

pub use minik_auth::tls::{certs, client_verifier};

/// The listener's TLS configuration (HTTP/2 and HTTP/1.1).
pub fn server_config(m: &TlsMaterial) -> std::io::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = minik_auth::tls::deferred(client_verifier(&m.client_ca_pem)?);
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(m.cert.clone()));
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
