//! HTTPS: rustls with ALPN (h2, http/1.1), client certificates requested but not required
//! and not judged during the handshake (authentication checks them per request, so a bad
//! certificate is a 401 as in kube-apiserver), hyper serving the router on each connection.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::PrivateKeyDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// PEM material for the listener.
pub struct TlsFiles<'a> {
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
    pub client_ca_pem: &'a str,
}

pub use minik_auth::tls::{certs, client_verifier};

fn config(files: &TlsFiles<'_>) -> std::io::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut files.key_pem.as_bytes())?
            .ok_or_else(|| std::io::Error::other("no private key in the serving key file"))?;
    let verifier = minik_auth::tls::deferred(client_verifier(files.client_ca_pem)?);
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(files.cert_pem)?, key)
        .map_err(std::io::Error::other)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serve `app` over TLS on `listener` until `shutdown` is cancelled.
pub async fn serve_tls(
    listener: TcpListener,
    files: TlsFiles<'_>,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(config(&files)?));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (acceptor, app, shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        tokio::spawn(async move { connection(acceptor, tcp, peer, app, shutdown).await });
    }
}

/// The address a request's connection came from.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) {
    // Watch events are small writes that must leave at once (Go servers do the same).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let tls = match acceptor.accept(tcp).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    // The certificates the client showed, for authentication to judge per request.
    let peer_certs = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let app = app
        .layer(axum::Extension(crate::authn::PeerCerts(
            Arc::new(peer_certs),
            Default::default(),
            Default::default(),
        )))
        .layer(axum::Extension(PeerAddr(peer)));
    let service = TowerToHyperService::new(app);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Informers keep many watches open on one HTTP/2 connection (kube-apiserver allows 1000).
    builder.http2().max_concurrent_streams(1000);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        },
        _ = shutdown.cancelled() => {}
    }
}
