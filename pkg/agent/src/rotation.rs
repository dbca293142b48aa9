//! Certificate rotation, as kubelet's certificate manager does it: each of the node's two
//! certificates (the client one it talks to the API server with, and its kubelet server's
//! serving one) is renewed through a new CSR once a jittered 70-90% of its lifetime has
//! passed. The new client certificate serves every later request (through a new
//! connection pool, so the server sees the new identity, as kubelet closes its connections
//! after a rotation); the new serving certificate every later TLS handshake. Both are kept
//! in the data dir, so a restart uses the newest. A client certificate the server no longer
//! accepts (it expired while the agent was stopped or suspended) is renewed with the join
//! token instead, as a new node would be.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use minik_auth::CertPair;
use minik_kubelet::server::ServingCert;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::credentials::{self, Auth};

/// The first retry after a failed renewal; it doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A `kube::Client` (from `client()`) whose requests go to whichever client is current:
/// `replace` swaps in one made with a new certificate for every later request, and the old
/// one's connections close once its last request (a watch, say) ends.
#[derive(Clone)]
pub struct Swappable(Arc<RwLock<kube::Client>>);

impl Swappable {
    pub fn new(client: kube::Client) -> Swappable {
        Swappable(Arc::new(RwLock::new(client)))
    }

    /// A client that always uses the current one.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    pub fn replace(&self, client: kube::Client) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = client;
    }

    fn current(&self) -> kube::Client {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

type Request = http::Request<kube::client::Body>;
type Response = http::Response<kube::client::Body>;

impl tower::Service<Request> for Swappable {
    type Response = Response;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let client = self.current();
        Box::pin(async move { client.send(request).await })
    }
}

/// When a certificate is due for renewal: `fraction` (0.7-0.9, jittered) of the way from
/// its notBefore to its notAfter, as kubelet's nextRotationDeadline. `None` when it cannot
/// be read.
pub fn deadline(cert_pem: &str, fraction: f64) -> Option<SystemTime> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let from = u64::try_from(cert.validity().not_before.timestamp()).ok()?;
    let to = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    let lifetime = to.checked_sub(from)? as f64;
    let after = Duration::from_secs_f64(lifetime * fraction.clamp(0.0, 1.0));
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(from) + after)
}

/// A jittered fraction in [0.7, 0.9).
fn jittered() -> f64 {
    0.7 + 0.2 * rand::random::<f64>()
}

/// What renewing needs.
pub struct Rotation {
    /// `<data-dir>/agent`, where the certificates and kubelet.kubeconfig are kept.
    pub dir: PathBuf,
    pub server: String,
    /// The server CA (PEM) the agent trusts.
    pub ca: String,
    /// The join token's credential, for a client certificate the server no longer takes.
    pub token: String,
    pub node: String,
    pub ip: IpAddr,
    pub client: Swappable,
    pub serving: ServingCert,
}

#[derive(Clone, Copy, Debug)]
enum Which {
    Client,
    Serving,
}

impl Rotation {
    /// Renew both certificates whenever due, until `stop`. `client_pem` and `serving_pem`
    /// are the certificates in use now.
    pub async fn run(self, client_pem: &str, serving_pem: &str, stop: CancellationToken) {
        let mut due = [
            (Which::Client, deadline(client_pem, jittered())),
            (Which::Serving, deadline(serving_pem, jittered())),
        ];
        let mut backoff = MIN_BACKOFF;
        loop {
            let Some((i, when)) = due
                .iter()
                .enumerate()
                .filter_map(|(i, (_, when))| Some((i, (*when)?)))
                .min_by_key(|(_, when)| *when)
            else {
                tracing::warn!("the node's certificates cannot be read; they are not rotated");
                return;
            };
            let wait = when
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let which = due[i].0;
            tracing::info!(node = self.node, certificate = ?which, "rotating the certificate");
            match self.renew(which).await {
                Ok(pem) => {
                    due[i].1 = deadline(&pem, jittered());
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    tracing::warn!(node = self.node, certificate = ?which, error = %e,
                        retry_in = ?backoff, "rotating the certificate failed");
                    due[i].1 = Some(SystemTime::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Renew one certificate and put it to use; its PEM.
    async fn renew(&self, which: Which) -> Result<String, Error> {
        let client = self.client.client();
        match which {
            Which::Client => {
                let pair = match credentials::renew_client(&self.dir, &client, &self.node).await {
                    Err(Error::Rejected) => {
                        let auth = Auth::Token(&self.token);
                        let bootstrap = credentials::client(&self.server, &self.ca, &auth).await?;
                        credentials::renew_client(&self.dir, &bootstrap, &self.node).await?
                    }
                    other => other?,
                };
                let next = use_client_cert(&self.dir, &self.server, &self.ca, &pair).await?;
                self.client.replace(next);
                Ok(pair.cert_pem)
            }
            Which::Serving => {
                let pair =
                    credentials::renew_serving(&self.dir, &client, &self.node, self.ip).await?;
                self.serving
                    .replace(&pair.cert_pem, &pair.key_pem)
                    .map_err(|e| Error::Csr(format!("the new serving certificate: {e}")))?;
                Ok(pair.cert_pem)
            }
        }
    }
}

/// Write `<dir>/kubelet.kubeconfig` with the client certificate `pair`; a client using it.
pub async fn use_client_cert(
    dir: &std::path::Path,
    server: &str,
    ca: &str,
    pair: &CertPair,
) -> Result<kube::Client, Error> {
    let auth = Auth::Cert(pair);
    let kubeconfig = credentials::kubeconfig(server, ca, &auth);
    minik_auth::write_mode(
        &dir.join("kubelet.kubeconfig"),
        kubeconfig.to_string().as_bytes(),
        0o600,
    )?;
    credentials::client(server, ca, &auth).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: i64, not_after: i64) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["n1".to_string()]).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn renewal_is_due_part_way_through_the_lifetime() {
        let pem = cert(1_000_000, 1_001_000);
        let at = |f| deadline(&pem, f).unwrap();
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(at(0.7)), 1_000_700);
        assert_eq!(secs(at(0.9)), 1_000_900);
        // Out-of-range fractions stay within the lifetime.
        assert_eq!(secs(at(2.0)), 1_001_000);
        assert!(deadline("not a certificate", 0.8).is_none());
        for _ in 0..100 {
            let f = jittered();
            assert!((0.7..0.9).contains(&f), "{f}");
        }
    }
}
