//! `minik agent`: a node that joins a server with a token, as k3s's agent does.
//!
//! 1. The server's CA is fetched from /cacerts and checked against the token's hash
//!    (`K10<hash>::...`; a token without one takes the CA on trust, with a warning).
//!    While the server cannot be reached, the agent says so and retries.
//! 2. With the token's credential (the server's secret or a bootstrap token) it asks for a
//!    kubelet client certificate by CSR; then, as `system:node:<name>`, for a serving
//!    certificate. Both are kept in `<data-dir>/agent/`, so a restarted agent rejoins as
//!    the same node without the token being asked again. While it runs, each is renewed
//!    by a new CSR once 70-90% of its lifetime has passed (rotation.rs).
//! 3. It reads the cluster's settings (cluster CIDR, DNS address and domain, whether the
//!    embedded network and DNS run) from ConfigMap kube-system/minik-config, then runs the
//!    kubelet, pod network, service proxy, DNS and network policy as the server's node does.

mod cacerts;
pub mod credentials;
pub mod rotation;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use minik_auth::join_token::{self, JoinToken};
use minik_kubelet::server::ServingCert;
use minik_server::AgentConfig;
use minik_server::join::{CLIENT_CA_KEY, CONFIG_MAP, ClusterInfo};
use tokio_util::sync::CancellationToken;

pub use cacerts::host_port;

/// What `minik agent` was asked.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `--server`: https://host:port.
    pub server: String,
    /// `--token` (or the content of `--token-file`).
    pub token: String,
    pub data_dir: PathBuf,
    /// The node's own settings (its network settings are the server's where it has them).
    pub node: AgentConfig,
}

/// Why the agent could not join or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--token: {0}")]
    Token(#[from] join_token::TokenError),
    #[error("--server {0:?} is not an https:// URL like https://10.0.0.1:6443")]
    Url(String),
    #[error("cannot reach the server at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("fetching the CA from {server}: {reason}")]
    CaFetch { server: String, reason: String },
    #[error(
        "the server at {server} presents a CA whose hash ({got}) is not the token's ({expected}): \
         wrong token, or not the server the token is for"
    )]
    CaMismatch {
        server: String,
        expected: String,
        got: String,
    },
    #[error("the server refused the token (401 Unauthorized): check --token")]
    Rejected,
    #[error("the server refused: {0}")]
    Forbidden(String),
    #[error("the kubelet certificates: {0}")]
    Csr(String),
    #[error("asking the server: {0}")]
    Api(kube::Error),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Write(#[from] minik_auth::Error),
    #[error("{0}")]
    Node(#[from] minik_server::agent::AgentError),
}

impl Error {
    /// An API error, with 401 and 403 said plainly.
    pub fn from_api(e: kube::Error) -> Error {
        match &e {
            kube::Error::Api(s) if s.code == 401 => Error::Rejected,
            kube::Error::Api(s) if s.code == 403 => Error::Forbidden(s.message.clone()),
            _ => Error::Api(e),
        }
    }
}

/// How long to wait between attempts to reach the server.
const RETRY: Duration = Duration::from_secs(2);

/// The server's CA bundle, checked against the token; retried while the server cannot be
/// reached. None when `shutdown` came first.
async fn trusted_ca(
    server: &str,
    token: &JoinToken,
    shutdown: &CancellationToken,
) -> Result<Option<String>, Error> {
    loop {
        match cacerts::fetch(server).await {
            Ok(bundle) => {
                let got = join_token::ca_hash(bundle.as_bytes());
                match &token.ca_hash {
                    Some(expected) if *expected != got => {
                        return Err(Error::CaMismatch {
                            server: server.into(),
                            expected: expected.clone(),
                            got,
                        });
                    }
                    Some(_) => {}
                    None => tracing::warn!(
                        server,
                        hash = got,
                        "the token does not pin the server's CA (K10<hash>::...); trusting the CA \
                         the server sent"
                    ),
                }
                return Ok(Some(bundle));
            }
            Err(e @ Error::Unreachable { .. }) => {
                tracing::warn!("{e}; retrying in {}s", RETRY.as_secs());
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// The cluster's settings and client CA, as the node reads them.
async fn cluster_info(client: &kube::Client) -> Result<(ClusterInfo, String), Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let cm = maps.get(CONFIG_MAP).await.map_err(Error::from_api)?;
    let data = cm.data.unwrap_or_default();
    let info = ClusterInfo::from_data(&data).map_err(Error::Config)?;
    let client_ca = data
        .get(CLIENT_CA_KEY)
        .cloned()
        .ok_or_else(|| Error::Config(format!("ConfigMap {CONFIG_MAP} has no {CLIENT_CA_KEY}")))?;
    Ok((info, client_ca))
}

/// The node's settings with the server's cluster settings applied.
fn with_cluster(mut node: AgentConfig, info: &ClusterInfo) -> AgentConfig {
    node.cluster_dns = info.cluster_dns;
    node.cluster_domain = info.cluster_domain.clone();
    node.network.cluster_cidr = info.cluster_cidr.clone();
    node.network.embedded &= info.network;
    node.network.vxlan = info.vxlan;
    node.network.dns &= info.dns;
    node
}

/// Join the server and run the node until `shutdown`.
pub async fn run(options: AgentOptions, shutdown: CancellationToken) -> Result<(), Error> {
    let token = JoinToken::parse(&options.token)?;
    let server = options.server.trim_end_matches('/').to_string();
    cacerts::host_port(&server)?;
    let name = minik_server::agent::node_name(&options.node, &options.data_dir)?;
    let Some(ca) = trusted_ca(&server, &token, &shutdown).await? else {
        return Ok(());
    };
    let dir = options.data_dir.join("agent");
    minik_auth::write_mode(&dir.join("server-ca.crt"), ca.as_bytes(), 0o644)?;
    let bootstrap = async || {
        credentials::client(&server, &ca, &credentials::Auth::Token(&token.credential)).await
    };
    let pair = credentials::client_certificate(&dir, &name, bootstrap).await?;
    let swappable =
        rotation::Swappable::new(rotation::use_client_cert(&dir, &server, &ca, &pair).await?);
    let client = swappable.client();
    let (info, client_ca) = cluster_info(&client).await?;
    let ip = minik_kubelet::machine::node_address(options.node.node_ip);
    let serving = credentials::serving_certificate(&dir, &client, &name, ip).await?;
    let node = with_cluster(options.node, &info);
    tracing::info!(node = name, server, address = %ip, "joined; starting the node");
    let serving_cert = ServingCert::from_pem(&serving.cert_pem, &serving.key_pem)
        .map_err(|e| Error::Csr(format!("the serving certificate: {e}")))?;
    let rotation = rotation::Rotation {
        dir,
        server,
        ca,
        token: token.credential,
        node: name.clone(),
        ip,
        client: swappable,
        serving: serving_cert.clone(),
    };
    let stop = shutdown.clone();
    tokio::spawn(async move { rotation.run(&pair.cert_pem, &serving.cert_pem, stop).await });
    let material = minik_kubelet::server::TlsMaterial {
        cert: serving_cert,
        client_ca_pem: client_ca,
    };
    minik_server::agent::run_node(
        &node,
        &options.data_dir,
        &name,
        client,
        minik_kubelet::server::Serving::Given(material),
        minik_controllers::Metrics::default(),
        minik_api::usage::UsageStore::default(),
        shutdown,
    )
    .await?;
    Ok(())
}
