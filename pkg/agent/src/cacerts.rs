//! The server's CA, fetched before it is trusted (GET /cacerts over TLS that checks
//! nothing, as k3s's agent does) and then checked against the token's hash.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Error;

/// `https://host:port` split into host and port (443 when not given).
pub fn host_port(url: &str) -> Result<(String, u16), Error> {
    let bad = || Error::Url(url.to_string());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad());
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 443,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), port.parse().map_err(|_| bad())?)),
        None => Ok((authority.to_string(), 443)),
    }
}

/// GET `<server>/cacerts` without checking the server's certificate.
pub async fn fetch(server: &str) -> Result<String, Error> {
    let (host, port) = host_port(server)?;
    let unreachable = |e: String| Error::Unreachable {
        server: server.to_string(),
        reason: e,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| unreachable(e.to_string()))?
        .dangerous()
        // Any certificate: only the CA bundle is fetched, and its hash checked afterwards.
        .with_custom_certificate_verifier(minik_auth::tls::any_server_certificate(provider))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| unreachable(e.to_string()))?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| unreachable(format!("TLS: {e}")))?;
    let request = format!(
        "GET /cacerts HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut response = Vec::new();
    // A server that closes without close_notify still sent what it had.
    if let Err(e) = tls.read_to_end(&mut response).await
        && response.is_empty()
    {
        return Err(unreachable(e.to_string()));
    }
    parse_response(&response).map_err(|reason| Error::CaFetch {
        server: server.to_string(),
        reason,
    })
}

/// The body of a plain (not chunked) HTTP/1.1 200 response.
fn parse_response(response: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the server's answer is not HTTP")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "GET /cacerts answered {status:?} (is it a minik server?)"
        ));
    }
    if !body.contains("-----BEGIN CERTIFICATE-----") {
        return Err("GET /cacerts did not return a certificate".into());
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            host_port("https://10.0.0.1:6443").unwrap(),
            ("10.0.0.1".into(), 6443)
        );
        assert_eq!(
            host_port("https://example.org/").unwrap(),
            ("example.org".into(), 443)
        );
        assert_eq!(
            host_port("https://[::1]:7443").unwrap(),
            ("::1".into(), 7443)
        );
        assert!(host_port("http://10.0.0.1:6443").is_err());
        assert!(host_port("https://").is_err());
        assert!(host_port("https://h:port").is_err());
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n-----BEGIN CERTIFICATE-----\nx\n";
        assert!(parse_response(ok).unwrap().starts_with("-----BEGIN"));
        let e = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap_err();
        assert!(e.contains("404"), "{e}");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nhello").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
