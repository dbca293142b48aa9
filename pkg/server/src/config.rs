//! What the user asked of a server (flags and config file), before anything is derived.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{AgentConfig, join};

/// What the user asked for (flags and config file).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_listen_port: u16,
    pub write_kubeconfig: PathBuf,
    pub write_kubeconfig_mode: u32,
    pub datastore_endpoint: String,
    pub tls_san: Vec<String>,
    pub service_cidr: minik_registry::ServiceCidr,
    /// Events are deleted this long after their last activity.
    pub event_ttl: Duration,
    /// `--token-auth-file`: static bearer tokens.
    pub token_auth_file: Option<PathBuf>,
    /// `--authorization-mode`: authorizers in order, e.g. "Node,RBAC" (the default).
    pub authorization_mode: String,
    /// `--authorization-webhook-config-file`: a kubeconfig for the Webhook authorizer.
    pub authorization_webhook_config_file: Option<PathBuf>,
    /// `--authentication-token-webhook-config-file`: a kubeconfig for token review.
    pub authentication_token_webhook_config_file: Option<PathBuf>,
    /// How long the token webhook's answers are remembered.
    pub authentication_token_webhook_cache_ttl: Duration,
    /// The `--oidc-*` flags.
    pub oidc: minik_apiserver::authn::oidc_config::OidcFlags,
    /// `--authentication-config`: an AuthenticationConfiguration with JWT authenticators.
    pub authentication_config: Option<PathBuf>,
    /// Requests in flight before 429s: non-mutating and mutating.
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
    /// Which admission plugins run, and their configuration.
    pub admission: minik_admission::Options,
    /// Common names of front proxies whose X-Remote-User headers are believed (empty: any
    /// the request-header CA signed).
    pub requestheader_allowed_names: Vec<String>,
    /// `--secrets-encryption`: seal secrets at rest (a key is made in the data dir).
    pub secrets_encryption: bool,
    /// `--cluster-cidr`: pod addresses; each node gets a /24 of it.
    pub cluster_cidr: minik_controllers::nodeipam::Cidr,
    /// `--simulated-nodes`: register this many simulated nodes.
    pub simulated_nodes: usize,
    /// Run the scheduler (`--disable-scheduler` turns it off).
    pub scheduler: bool,
    /// Run the controller manager (`--disable-controller-manager` turns it off).
    pub controllers: bool,
    /// The longest certificate the CSR signers issue (`--kube-controller-manager-arg
    /// cluster-signing-duration=...`; a year by default).
    pub cluster_signing_duration: Duration,
    /// `--audit-policy-file`, the log (`--audit-log-path`) and its rotation.
    pub audit: Option<AuditConfig>,
    /// The node this server runs (None: `--disable-agent`).
    pub agent: Option<AgentConfig>,
    /// `--disable` names: packaged components (embedded manifests) not deployed.
    pub disable: Vec<String>,
    /// `--token`: the secret agents join with (None: the kept one, or a new one).
    pub token: Option<String>,
    /// `--token-file`: a file holding `--token` (read at start; not with `token`).
    pub token_file: Option<PathBuf>,
    /// `--agent-token`: a second secret agents (only) may join with (None: none).
    pub agent_token: Option<String>,
    /// `--agent-token-file`: a file holding `--agent-token` (not with `agent_token`).
    pub agent_token_file: Option<PathBuf>,
    /// The settings agents take from the server (published for them at start).
    pub cluster: join::ClusterInfo,
}

/// Where audit events go and which are logged.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub policy_file: PathBuf,
    /// None: `<data-dir>/server/logs/audit.log`, as k3s has it.
    pub log_path: Option<PathBuf>,
    pub rotation: minik_apiserver::audit::Rotation,
}
