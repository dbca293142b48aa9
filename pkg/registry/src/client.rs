//! Calls from the API server to servers in the cluster (aggregated API servers, conversion
//! webhooks): a service resolved to one of its endpoints, and an HTTP/1.1 connection over
//! TLS verified with a CA bundle (or not, when told so), with an optional client
//! certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

use crate::{ApiError, Registry};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub addr: SocketAddr,
    /// The name the server's certificate must have (`<service>.<namespace>.svc`).
    pub server_name: String,
    pub ca_bundle: Option<Vec<u8>>,
    pub insecure: bool,
}

/// A client certificate (PEM).
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

fn tls_config(t: &TlsTarget, client: Option<&ClientCert>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if t.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(minik_auth::tls::any_server_certificate(provider))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let pem = t.ca_bundle.clone().unwrap_or_default();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            roots.add(cert).map_err(|e| e.to_string())?;
        }
        builder.with_root_certificates(roots)
    };
    let Some(c) = client else {
        return Ok(builder.with_no_client_auth());
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut c.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut c.key_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .ok_or("the client key is missing")?;
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| e.to_string())
}

/// An HTTP/1.1 connection to `t`, ready for requests (upgrades too).
pub async fn connect<B>(
    t: &TlsTarget,
    client: Option<&ClientCert>,
) -> Result<hyper::client::conn::http1::SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = tls_config(t, client)?;
    let tcp = tokio::net::TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", t.addr))?;
    let name = ServerName::try_from(t.server_name.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {}: {e}", t.addr))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    Ok(sender)
}

/// Why a service could not be reached: (reason, message), as APIService conditions say it.
pub type Unreachable = (&'static str, String);

impl Registry {
    /// The address of one endpoint of service `ns/name` for its port `port`.
    pub async fn service_endpoint(
        &self,
        ns: &str,
        name: &str,
        port: i64,
    ) -> Result<SocketAddr, Unreachable> {
        let find = |plural| minik_api::builtin("", "v1", plural);
        let service = self
            .get_stored(find("services"), Some(ns), name)
            .await
            .map_err(|_| {
                (
                    "ServiceNotFound",
                    format!("service/{name} in \"{ns}\" is not present"),
                )
            })?;
        let sp = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(port))
            .cloned()
            .ok_or((
                "ServicePortError",
                format!("service/{name} in \"{ns}\" is not listening on port {port}"),
            ))?;
        let endpoints = self
            .get_stored(find("endpoints"), Some(ns), name)
            .await
            .map_err(|e| match e {
                ApiError::NotFound { .. } => (
                    "EndpointsNotFound",
                    format!("cannot find endpoints for service/{name} in \"{ns}\""),
                ),
                other => ("EndpointsNotFound", other.to_string()),
            })?;
        let wanted_name = sp.get("name").cloned();
        let target = sp.get("targetPort").cloned().unwrap_or_else(|| json!(port));
        for subset in endpoints
            .get("subsets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ep_port = subset
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name") == wanted_name.as_ref() || p.get("port") == Some(&target))
                .and_then(|p| p["port"].as_u64());
            let ip = subset
                .pointer("/addresses/0/ip")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
            if let (Some(ip), Some(p)) = (ip, ep_port) {
                return Ok(SocketAddr::new(ip, p as u16));
            }
        }
        Err((
            "MissingEndpoints",
            format!(
                "endpoints for service/{name} in \"{ns}\" have no addresses with port name or number {port}"
            ),
        ))
    }
}

impl Registry {
    /// POST a review to a webhook's clientConfig (url, or service with path and port).
    pub async fn call_webhook(
        &self,
        config: &Value,
        review: &Value,
        timeout: std::time::Duration,
    ) -> std::result::Result<Value, String> {
        let ca_bundle = config
            .get("caBundle")
            .and_then(Value::as_str)
            .and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
            });
        let (target, path) = match config.get("url").and_then(Value::as_str) {
            Some(url) => {
                let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
                let host = uri.host().ok_or("the url has no host")?.to_string();
                let port = uri.port_u16().unwrap_or(443);
                let addr = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|e| e.to_string())?
                    .next()
                    .ok_or("the url's host has no address")?;
                let path = uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or("/".into());
                (
                    TlsTarget {
                        addr,
                        server_name: host,
                        ca_bundle,
                        insecure: false,
                    },
                    path,
                )
            }
            None => {
                let svc = config
                    .get("service")
                    .ok_or("the clientConfig has no url or service")?;
                let ns = svc["namespace"].as_str().unwrap_or("default");
                let name = svc["name"].as_str().unwrap_or("");
                let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
                let addr = self
                    .service_endpoint(ns, name, port)
                    .await
                    .map_err(|(_, m)| m)?;
                let path = svc
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string();
                let server_name = format!("{name}.{ns}.svc");
                (
                    TlsTarget {
                        addr,
                        server_name,
                        ca_bundle,
                        insecure: false,
                    },
                    path,
                )
            }
        };
        post_json(&target, &path, review, timeout).await
    }
}

/// A JSON request over the shared TLS client.
pub struct JsonRequest<'a> {
    pub target: &'a TlsTarget,
    pub client: Option<&'a ClientCert>,
    pub method: &'a str,
    pub path: &'a str,
    pub bearer: Option<&'a str>,
    pub body: Option<&'a Value>,
    pub timeout: std::time::Duration,
}

impl JsonRequest<'_> {
    /// Send it; the answer as JSON. A failure's Status message is part of the error.
    pub async fn send(&self) -> std::result::Result<Value, String> {
        use http_body_util::{BodyExt, Full};
        let mut sender = connect::<Full<bytes::Bytes>>(self.target, self.client).await?;
        let mut req = hyper::Request::builder()
            .method(self.method)
            .uri(self.path)
            .header("content-type", "application/json")
            .header("host", self.target.server_name.as_str());
        if let Some(t) = self.bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let payload = self.body.map(Value::to_string).unwrap_or_default();
        let req = req
            .body(Full::new(bytes::Bytes::from(payload)))
            .map_err(|e| e.to_string())?;
        let timeout = self.timeout;
        let resp = tokio::time::timeout(timeout, sender.send_request(req))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let answer = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(format!("the server answered {status} {message}")
                .trim()
                .to_string());
        }
        serde_json::from_slice(&answer).map_err(|e| format!("the answer is not JSON: {e}"))
    }
}

/// A JSON POST over the shared TLS client.
async fn post_json(
    target: &TlsTarget,
    path: &str,
    body: &Value,
    timeout: std::time::Duration,
) -> std::result::Result<Value, String> {
    JsonRequest {
        target,
        client: None,
        method: "POST",
        path,
        bearer: None,
        body: Some(body),
        timeout,
    }
    .send()
    .await
}
