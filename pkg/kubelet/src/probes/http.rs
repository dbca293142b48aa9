//! httpGet probes and hooks, as kubelet's prober does them: GET scheme://host:port/path
//! with the given headers (User-Agent kube-probe/<version>, Accept */*), HTTPS without
//! verifying the certificate; 200-399 passes; redirects are followed (up to 10) while they
//! stay on the same host, and a redirect elsewhere passes with a warning.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::net::Endpoint;

/// At most this much of a response body is kept for messages.
const MAX_BODY: usize = 10 * 1024;
const MAX_REDIRECTS: usize = 10;

/// What a GET gave: passed (maybe with a warning) or failed, in kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpResult {
    Success,
    Warning(String),
    Failure(String),
}

/// A request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// What a response means: 2xx and 3xx pass (a 3xx reached here was not followed).
pub fn judge(status: u16, body: &[u8]) -> HttpResult {
    let body = String::from_utf8_lossy(body);
    if (200..400).contains(&status) {
        if status >= 300 {
            return HttpResult::Warning(format!(
                "Probe terminated redirects, Response body: {body}"
            ));
        }
        return HttpResult::Success;
    }
    HttpResult::Failure(format!("HTTP probe failed with statuscode: {status}"))
}

/// Where a redirect leads, if it stays on `host` (kubelet compares host names only):
/// (port, path-and-query).
pub fn same_host_redirect(
    location: &str,
    host: &str,
    port: u16,
    https: bool,
) -> Option<(bool, u16, String)> {
    if location.starts_with('/') {
        return Some((https, port, location.to_string()));
    }
    let uri: hyper::Uri = location.parse().ok()?;
    let to_https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return None,
    };
    if uri.host()?.trim_start_matches('[').trim_end_matches(']') != host {
        return None;
    }
    let to_port = uri.port_u16().unwrap_or(if to_https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    Some((to_https, to_port, path))
}

/// Make the GET (following same-host redirects) within `timeout`.
pub async fn get(endpoint: &Endpoint, request: Get, timeout: Duration) -> HttpResult {
    match tokio::time::timeout(timeout, follow(endpoint, request, timeout)).await {
        Ok(r) => r,
        Err(_) => HttpResult::Failure(format!(
            "Get: context deadline exceeded (Client.Timeout exceeded while awaiting headers) after {timeout:?}"
        )),
    }
}

async fn follow(endpoint: &Endpoint, mut request: Get, timeout: Duration) -> HttpResult {
    for _ in 0..=MAX_REDIRECTS {
        let url = format!(
            "{}://{}:{}{}",
            if request.https { "https" } else { "http" },
            request.host,
            request.port,
            request.path
        );
        let (status, location, body) = match once(endpoint, &request, timeout).await {
            Ok(r) => r,
            Err(e) => return HttpResult::Failure(format!("Get \"{url}\": {e}")),
        };
        if (300..400).contains(&status)
            && let Some(location) = location
            && let Some((https, port, path)) =
                same_host_redirect(&location, &request.host, request.port, request.https)
        {
            request = Get {
                https,
                port,
                path,
                ..request
            };
            continue;
        }
        return judge(status, &body);
    }
    HttpResult::Failure("stopped after 10 redirects".into())
}

/// One request: status, Location, the start of the body.
async fn once(
    endpoint: &Endpoint,
    request: &Get,
    timeout: Duration,
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let tcp = endpoint
        .connect(&request.host, request.port, timeout)
        .await?;
    if request.https {
        let tls = tls_connector()?;
        let name = rustls::pki_types::ServerName::try_from(request.host.clone())
            .map_err(|e| e.to_string())?;
        let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
        exchange(stream, request).await
    } else {
        exchange(tcp, request).await
    }
}

async fn exchange<S>(io: S, request: &Get) -> Result<(u16, Option<String>, Vec<u8>), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = hyper::Request::get(request.path.as_str());
    let has = |name: &str| {
        request
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        builder = builder.header("Host", format!("{}:{}", request.host, request.port));
    }
    if !has("user-agent") {
        builder = builder.header(
            "User-Agent",
            format!(
                "kube-probe/{}.{}",
                minik_version::KUBERNETES_MAJOR,
                minik_version::KUBERNETES_MINOR
            ),
        );
    }
    if !has("accept") {
        builder = builder.header("Accept", "*/*");
    }
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let req = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < MAX_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = MAX_BODY - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    Ok((status, location, kept))
}

/// TLS that accepts any certificate (kubelet's probes skip verification).
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(minik_auth::tls::any_server_certificate(provider))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_judged_as_kubelet_does() {
        assert_eq!(judge(200, b""), HttpResult::Success);
        assert_eq!(
            judge(399, b"x").clone(),
            HttpResult::Warning("Probe terminated redirects, Response body: x".into())
        );
        assert_eq!(
            judge(404, b""),
            HttpResult::Failure("HTTP probe failed with statuscode: 404".into())
        );
        assert!(matches!(judge(500, b""), HttpResult::Failure(_)));
        assert!(matches!(judge(199, b""), HttpResult::Failure(_)));
    }

    #[test]
    fn redirects_are_followed_on_the_same_host_only() {
        assert_eq!(
            same_host_redirect("/healthz?x=1", "10.0.0.1", 8080, false),
            Some((false, 8080, "/healthz?x=1".into()))
        );
        assert_eq!(
            same_host_redirect("https://10.0.0.1:9443/ok", "10.0.0.1", 8080, false),
            Some((true, 9443, "/ok".into()))
        );
        assert_eq!(
            same_host_redirect("http://example.com/", "10.0.0.1", 8080, false),
            None
        );
    }
}
