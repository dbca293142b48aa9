//! The proxy to an aggregated API server: one TLS connection per request, the front-proxy
//! client certificate, and the requesting user in X-Remote-User / X-Remote-Group.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{Aggregator, Backend};
use crate::status::json_response;

/// Who the proxy is (its client certificate) and whom it speaks for.
#[derive(Clone)]
pub struct ProxyIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub user: String,
    pub groups: Vec<String>,
}

/// `insecureSkipTLSVerify`: any server certificate is taken.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(backend: &Backend, id: &ProxyIdentity) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if backend.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let pem = backend.ca_bundle.clone().unwrap_or_default();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            roots.add(cert).map_err(|e| e.to_string())?;
        }
        builder.with_root_certificates(roots)
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut id.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut id.key_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .ok_or("the proxy key is missing")?;
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| e.to_string())
}

/// Send one request to a backend and return its response as it comes.
pub(super) async fn send(
    backend: &Backend,
    id: &ProxyIdentity,
    mut req: Request,
) -> Result<Response, String> {
    let config = tls_config(backend, id)?;
    let tcp = tokio::net::TcpStream::connect(backend.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", backend.addr))?;
    let name = ServerName::try_from(backend.server_name.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {}: {e}", backend.addr))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let headers = req.headers_mut();
    for h in [
        header::AUTHORIZATION.as_str(),
        "x-remote-user",
        "x-remote-group",
    ] {
        headers.remove(h);
    }
    headers.retain_impersonation_free();
    if let Ok(v) = HeaderValue::from_str(&id.user) {
        headers.insert("x-remote-user", v);
    }
    for g in &id.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append("x-remote-group", v);
        }
    }
    if let Ok(host) = HeaderValue::from_str(&backend.server_name) {
        headers.insert(header::HOST, host);
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = path
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.map(Body::new))
}

trait RetainImpersonationFree {
    fn retain_impersonation_free(&mut self);
}

impl RetainImpersonationFree for axum::http::HeaderMap {
    /// Drop `Impersonate-*` headers: the proxy states the user itself.
    fn retain_impersonation_free(&mut self) {
        let names: Vec<_> = self
            .keys()
            .filter(|k| k.as_str().starts_with("impersonate-"))
            .cloned()
            .collect();
        for n in names {
            self.remove(n);
        }
    }
}

pub(super) async fn forward(agg: &Aggregator, backend: &Backend, req: Request) -> Response {
    let Some(id) = agg.identity() else {
        return unavailable("the aggregation proxy has no client certificate".into());
    };
    match send(backend, &id, req).await {
        Ok(resp) => resp,
        Err(e) => unavailable(e),
    }
}

fn unavailable(why: String) -> Response {
    tracing::warn!(error = %why, "aggregated API request failed");
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("error trying to reach service: {why}"),
        "reason": "ServiceUnavailable", "code": 503});
    json_response(StatusCode::SERVICE_UNAVAILABLE, &body, &[]).into_response()
}
