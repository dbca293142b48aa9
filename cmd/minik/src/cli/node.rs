//! Flags of `minik server` and `minik agent` (k3s's names and defaults).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

/// Flags both a server and an agent take.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Where minik keeps its state: datastore, certificates, kubelet data.
    #[arg(
        long,
        short = 'd',
        default_value = "/var/lib/minik",
        env = "MINIK_DATA_DIR"
    )]
    pub data_dir: PathBuf,

    /// This node's name (default: the host name).
    #[arg(long, env = "MINIK_NODE_NAME")]
    pub node_name: Option<String>,

    /// Append a random id to the node name, so clones of one machine can join.
    #[arg(long)]
    pub with_node_id: bool,

    /// The address this node advertises (InternalIP; default: the IPv4 address of the
    /// interface holding the default route).
    #[arg(long, short = 'i', env = "MINIK_NODE_IP")]
    pub node_ip: Option<IpAddr>,

    /// A label the node registers with, key=value (repeatable or comma-separated; set at
    /// registration only).
    #[arg(long, value_delimiter = ',', env = "MINIK_NODE_LABEL")]
    pub node_label: Vec<String>,

    /// A taint the node registers with, key=value:Effect (NoSchedule, PreferNoSchedule or
    /// NoExecute; repeatable or comma-separated; set at registration only).
    #[arg(long, value_delimiter = ',', env = "MINIK_NODE_TAINT")]
    pub node_taint: Vec<String>,

    /// A kubelet setting, key=value (repeatable): eviction-hard (e.g.
    /// memory.available<100Mi,nodefs.available<10%) or max-pods.
    #[arg(long)]
    pub kubelet_arg: Vec<String>,

    /// Private registry configuration file: mirrors, endpoints and credentials the node's
    /// image pulls use (k3s's registries.yaml format).
    #[arg(
        long,
        default_value = "/etc/minik/registries.yaml",
        env = "MINIK_PRIVATE_REGISTRY"
    )]
    pub private_registry: PathBuf,

    /// Run containers through this external CRI runtime instead of minik's own, e.g.
    /// unix:///run/containerd/containerd.sock (containerd, CRI-O). The runtime's CNI
    /// configuration gives pods their network.
    #[arg(long, env = "MINIK_CONTAINER_RUNTIME_ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,

    /// The pod network: host-gw (minik's own bridge, a veth per pod, addresses from the
    /// node's podCIDR; other nodes' pods routed through their addresses, for nodes on one
    /// L2 segment), vxlan (the same, other nodes' pods reached through a VXLAN device, UDP
    /// 8472, for nodes that are not) or none (bring your own: the CNI plugins configured in
    /// --cni-conf-dir, e.g. Calico, Cilium or flannel; `--disable network` does the same).
    /// Agents follow their server's.
    #[arg(long, default_value = "host-gw", value_parser = ["host-gw", "vxlan", "none"])]
    pub flannel_backend: String,

    /// Where CNI network configuration is read with --flannel-backend=none.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,

    /// Where CNI plugins are found with --flannel-backend=none (then Debian's /usr/lib/cni).
    #[arg(long, default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,

    /// What the node's bridge (<prefix>0), dummy interface (<prefix>-dns) and nftables
    /// tables (<prefix>-proxy, <prefix>-policy) are named after, so several nodes can
    /// share one host (tests).
    #[arg(long, default_value = "minik", hide = true, value_parser = network_prefix)]
    pub network_prefix: String,

    /// Do not run the service proxy (nftables rules for Services).
    #[arg(long)]
    pub disable_kube_proxy: bool,

    /// Do not enforce NetworkPolicy.
    #[arg(long)]
    pub disable_network_policy: bool,

    /// A YAML file with the same keys as these flags.
    #[arg(
        long,
        short = 'c',
        default_value = "/etc/minik/config.yaml",
        env = "MINIK_CONFIG_FILE"
    )]
    pub config: PathBuf,
}

/// `minik server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub node: NodeArgs,

    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,

    /// Write the admin kubeconfig here.
    #[arg(
        long,
        short = 'o',
        default_value = "/etc/minik/minik.yaml",
        env = "MINIK_KUBECONFIG_OUTPUT"
    )]
    pub write_kubeconfig: PathBuf,

    /// File mode of the written kubeconfig (octal).
    #[arg(long, default_value = "0600", env = "MINIK_KUBECONFIG_MODE")]
    pub write_kubeconfig_mode: String,

    /// Datastore: sqlite:// (default, in the data dir), or a later backend's URL.
    #[arg(long, default_value = "sqlite://", env = "MINIK_DATASTORE_ENDPOINT")]
    pub datastore_endpoint: String,

    /// The server token: the shared secret agents (and servers) join with, just the secret
    /// or a full K10<CA hash>::server:<secret> token of this server (generated and kept in
    /// <data-dir>/server/token when not given).
    #[arg(long, short = 't', env = "MINIK_TOKEN")]
    pub token: Option<String>,

    /// A file holding the server token (see --token).
    #[arg(long, env = "MINIK_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// An agent token: a second secret agents may join with that is not the server token
    /// (which keeps working for agents too). The full token, K10<CA hash>::node:<secret>,
    /// is written to <data-dir>/server/agent-token; without this flag there is none.
    #[arg(long, env = "MINIK_AGENT_TOKEN")]
    pub agent_token: Option<String>,

    /// A file holding the agent token (see --agent-token).
    #[arg(long, env = "MINIK_AGENT_TOKEN_FILE", conflicts_with = "agent_token")]
    pub agent_token_file: Option<PathBuf>,

    /// Extra names and IPs for the serving certificate.
    #[arg(long)]
    pub tls_san: Vec<String>,

    /// Do not deploy a packaged component (repeatable): local-storage, coredns (the
    /// cluster DNS), network (the pod network: use CNI plugins instead).
    #[arg(long)]
    pub disable: Vec<String>,

    /// Pod network (a /24 per node is taken from it).
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,

    /// Service ClusterIP range.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,

    /// ClusterIP of the cluster DNS service.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: IpAddr,

    /// How long events are kept after their last activity (e.g. 1h, 30m, 1h30m, 90s).
    #[arg(long, default_value = "1h")]
    pub event_ttl: String,

    /// Cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Static bearer tokens: a CSV file of `token,user,uid,"group1,group2"` lines.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,

    /// Most non-mutating requests in flight at once (more are answered 429); one user may
    /// hold half.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests_inflight: u32,

    /// Most mutating requests in flight at once (more are answered 429); one user may hold
    /// half.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_mutating_requests_inflight: u32,

    /// Who may do what: authorizers asked in order (Node: kubelets' own objects; RBAC: roles
    /// and bindings; Webhook: a remote service; AlwaysAllow; AlwaysDeny). Comma-separated.
    #[arg(long, default_value = "Node,RBAC")]
    pub authorization_mode: String,

    /// A kubeconfig file naming the service the Webhook authorizer asks
    /// (SubjectAccessReview).
    #[arg(long)]
    pub authorization_webhook_config_file: Option<PathBuf>,

    /// A kubeconfig file naming a service that reviews bearer tokens no other
    /// authenticator knows (TokenReview).
    #[arg(long)]
    pub authentication_token_webhook_config_file: Option<PathBuf>,

    /// An OIDC issuer whose ID tokens authenticate users (https URL).
    #[arg(long)]
    pub oidc_issuer_url: Option<String>,

    /// The audience ID tokens must be for (required with --oidc-issuer-url).
    #[arg(long)]
    pub oidc_client_id: Option<String>,

    /// The claim that names the user.
    #[arg(long, default_value = "sub")]
    pub oidc_username_claim: String,

    /// Put before user names ("-": nothing; default: the issuer URL and '#', unless the
    /// claim is email).
    #[arg(long)]
    pub oidc_username_prefix: Option<String>,

    /// The claim that lists the user's groups.
    #[arg(long)]
    pub oidc_groups_claim: Option<String>,

    /// Put before group names.
    #[arg(long, default_value = "")]
    pub oidc_groups_prefix: String,

    /// The CA that signed the issuer's serving certificate (PEM).
    #[arg(long)]
    pub oidc_ca_file: Option<PathBuf>,

    /// A claim=value every ID token must have (repeatable).
    #[arg(long)]
    pub oidc_required_claim: Vec<String>,

    /// An AuthenticationConfiguration file: JWT authenticators with claim mappings, audiences
    /// and CEL validation rules (instead of the --oidc-* flags).
    #[arg(long)]
    pub authentication_config: Option<PathBuf>,

    /// How long the token webhook's answers are remembered (e.g. 2m, 0s).
    #[arg(long, default_value = "2m")]
    pub authentication_token_webhook_cache_ttl: String,

    /// Admission plugins to turn on besides the defaults (NamespaceLifecycle, LimitRanger,
    /// ServiceAccount, Priority, DefaultTolerationSeconds, PodSecurity,
    /// MutatingAdmissionWebhook, ValidatingAdmissionPolicy, ValidatingAdmissionWebhook,
    /// ResourceQuota), e.g. AlwaysPullImages. Comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,

    /// Common names of front proxies (client certificates signed by the request-header CA,
    /// tls/request-header-ca.crt) whose X-Remote-User/X-Remote-Group headers say who the
    /// user is; empty: any certificate that CA signed. Comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "system:auth-proxy")]
    pub requestheader_allowed_names: Vec<String>,

    /// Default admission plugins to turn off. Comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,

    /// An AdmissionConfiguration file configuring admission plugins (e.g. PodSecurity's
    /// defaults and exemptions).
    #[arg(long)]
    pub admission_control_config_file: Option<PathBuf>,

    /// Do not run the controller manager (Deployments, ReplicaSets, ... are then not acted
    /// on by this server).
    #[arg(long)]
    pub disable_controller_manager: bool,

    /// A kube-controller-manager flag, as KEY=VALUE (repeatable, as k3s takes them). Known:
    /// cluster-signing-duration (the longest certificate the CSR signers issue, e.g. 8760h,
    /// the default).
    #[arg(long, value_name = "KEY=VALUE")]
    pub kube_controller_manager_arg: Vec<String>,

    /// Do not run the scheduler (pods then stay Pending unless another scheduler binds them).
    #[arg(long)]
    pub disable_scheduler: bool,

    /// Do not run a node (kubelet and containers) in this server: only the control plane,
    /// which does not need root.
    #[arg(long, env = "MINIK_DISABLE_AGENT")]
    pub disable_agent: bool,

    /// Register this many simulated nodes (like kwok): they take pods and report them
    /// Running without running anything. For tests and benchmarks of the control plane.
    #[arg(long, default_value_t = 0)]
    pub simulated_nodes: u32,

    /// Encrypt secrets at rest (AES-GCM; the key is kept in
    /// <data-dir>/server/cred/encryption-config.json; `minik secrets-encrypt` rotates it).
    /// Once a key exists, secrets stay encrypted.
    #[arg(long)]
    pub secrets_encryption: bool,

    /// An audit Policy file (audit.k8s.io/v1): which requests are logged, and how much of
    /// each. No audit log without it.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,

    /// Where audit events go, as JSON lines ("-": standard output). Default:
    /// <data-dir>/server/logs/audit.log.
    #[arg(long, requires = "audit_policy_file")]
    pub audit_log_path: Option<PathBuf>,

    /// Rotate the audit log when it would grow past this many megabytes (0: never).
    #[arg(long, default_value_t = 100)]
    pub audit_log_maxsize: u64,

    /// Rotated audit logs to keep (0: all).
    #[arg(long, default_value_t = 10)]
    pub audit_log_maxbackup: usize,

    /// Days to keep rotated audit logs (0: forever).
    #[arg(long, default_value_t = 30)]
    pub audit_log_maxage: u64,
}

/// `minik agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub node: NodeArgs,

    /// The server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, short = 's', env = "MINIK_URL")]
    pub server: Option<String>,

    /// The token to join with: the server's (its <data-dir>/server/node-token,
    /// K10<CA hash>::server:<secret>, which also pins the server's CA), or a bootstrap
    /// token from `minik token create` (optionally as K10<CA hash>::<id>.<secret>).
    #[arg(long, short = 't', env = "MINIK_TOKEN")]
    pub token: Option<String>,

    /// A file holding the token.
    #[arg(long, env = "MINIK_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

/// A network prefix short enough for interface names (IFNAMSIZ) and plain.
pub(crate) fn network_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 10
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?}: 1 to 10 lowercase letters and digits"))
    }
}
