//! Calling a service configured by a kubeconfig file, as kube-apiserver's webhook config
//! files are (token review, authorization, image policy): the first cluster's server URL and
//! CA, the first user's client certificate or token. Also the admin client of the CLI.

use std::path::Path;
use std::time::Duration;

use crate::client::{ClientCert, JsonRequest, TlsTarget};
use base64::Engine;
use serde_json::Value;

/// A configured webhook endpoint.
pub struct WebhookClient {
    host: String,
    port: u16,
    path: String,
    ca: Option<Vec<u8>>,
    insecure: bool,
    cert: Option<ClientCert>,
    token: Option<String>,
    timeout: Duration,
}

/// A kubeconfig's `<name>` or `<name>-data` value, read relative to the file.
fn data(entry: &Value, name: &str, dir: &Path) -> Result<Option<Vec<u8>>, String> {
    if let Some(d) = entry[format!("{name}-data")].as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(d)
            .map(Some)
            .map_err(|e| format!("{name}-data is not base64: {e}"));
    }
    match entry[name].as_str() {
        Some(p) => std::fs::read(dir.join(p))
            .map(Some)
            .map_err(|e| format!("reading {p}: {e}")),
        None => Ok(None),
    }
}

impl WebhookClient {
    /// For an https URL, trusting `ca` (PEM; None: the system's roots are not used, so a
    /// CA is needed unless the server's certificate chains to one given).
    pub fn for_url(url: &str, ca: Option<Vec<u8>>) -> Result<WebhookClient, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{url:?} must be an https URL"));
        }
        Ok(WebhookClient {
            host: uri
                .host()
                .unwrap_or("")
                .trim_matches(['[', ']'])
                .to_string(),
            port: uri.port_u16().unwrap_or(443),
            path: uri.path_and_query().map_or("/".into(), |p| p.to_string()),
            ca,
            insecure: false,
            cert: None,
            token: None,
            timeout: Duration::from_secs(10),
        })
    }

    /// GET the configured URL.
    pub async fn get(&self) -> Result<Value, String> {
        self.request("GET", &self.path, None).await
    }

    /// From a kubeconfig file.
    pub fn from_kubeconfig(path: &Path) -> Result<WebhookClient, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {shown}: {e}"))?;
        let doc: Value =
            serde_saphyr::from_str(&text).map_err(|e| format!("{shown} is not valid YAML: {e}"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let cluster = &doc["clusters"][0]["cluster"];
        let server = cluster["server"]
            .as_str()
            .ok_or_else(|| format!("{shown}: clusters[0].cluster.server is missing"))?;
        let user = &doc["users"][0]["user"];
        let bad = |e: String| format!("{shown}: {e}");
        let cert = match (
            data(user, "client-certificate", dir).map_err(bad)?,
            data(user, "client-key", dir).map_err(bad)?,
        ) {
            (Some(c), Some(k)) => Some(ClientCert {
                cert_pem: String::from_utf8_lossy(&c).into_owned(),
                key_pem: String::from_utf8_lossy(&k).into_owned(),
            }),
            _ => None,
        };
        let ca = data(cluster, "certificate-authority", dir).map_err(bad)?;
        let mut client = WebhookClient::for_url(server, ca).map_err(bad)?;
        client.insecure = cluster["insecure-skip-tls-verify"] == true;
        client.cert = cert;
        client.token = user["token"].as_str().map(str::to_string);
        client.timeout = Duration::from_secs(30);
        Ok(client)
    }

    /// POST a review to the configured path; the answer as JSON.
    pub async fn post(&self, review: &Value) -> Result<Value, String> {
        self.request("POST", &self.path, Some(review)).await
    }

    /// A request to `path` on the configured server; the answer as JSON (a Status body
    /// of a failure becomes its message).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))?;
        let target = TlsTarget {
            addr,
            server_name: self.host.clone(),
            ca_bundle: self.ca.clone(),
            insecure: self.insecure,
        };
        JsonRequest {
            target: &target,
            client: self.cert.as_ref(),
            method,
            path,
            bearer: self.token.as_deref(),
            body,
            timeout: self.timeout,
        }
        .send()
        .await
    }
}
