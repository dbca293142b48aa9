//! The command line: flags and subcommands only. Each subcommand calls one package entry point.

mod node;
mod ops;
mod stop;

use clap::{Parser, Subcommand};

pub use node::{AgentArgs, NodeArgs, ServerArgs};
pub use ops::{
    CertificateCommand, ImageCommand, SecretsEncryptCommand, SnapshotCommand, TokenCommand,
};
pub use stop::StopArgs;

/// minik: a whole Kubernetes distribution in one binary.
///
/// `minik server` runs a single-node cluster (API server, scheduler, controllers, kubelet,
/// pod network, service proxy and DNS in one process, state in SQLite); `minik agent` joins
/// more nodes to it.
#[derive(Debug, Parser)]
#[command(name = "minik", version = minik_version::VERSION_LINE, propagate_version = true)]
pub struct Cli {
    /// Log at debug level (RUST_LOG overrides).
    #[arg(long, global = true, env = "MINIK_DEBUG")]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a server: the control plane and a node, writing an admin kubeconfig.
    Server(Box<ServerArgs>),
    /// Run an agent: a node that joins a server with a token.
    Agent(Box<AgentArgs>),
    /// Run kubectl against this cluster (uses the kubeconfig the server writes).
    #[command(disable_help_flag = true)]
    Kubectl {
        /// Arguments passed to kubectl unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Manage the node's images: import tarballs, list, pull, remove.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Check and rotate the cluster's certificates.
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand,
    },
    /// Secrets encryption at rest (server started with --secrets-encryption): show the keys,
    /// rotate to a new one.
    SecretsEncrypt {
        #[command(subcommand)]
        command: SecretsEncryptCommand,
    },
    /// Manage bootstrap tokens that let agents join.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Save, restore and list snapshots of the datastore.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Report whether this kernel has what minik needs (namespaces, cgroups, overlayfs,
    /// netfilter, bridge).
    CheckConfig,
    /// Stop this node's pods and remove its network (what a reboot would), e.g. before
    /// uninstalling; the server or agent itself must be stopped first.
    Stop(StopArgs),
    /// Run one container: started by minik's container runtime, not by hand.
    #[command(hide = true, disable_help_flag = true)]
    Shim {
        /// The runtime's arguments (container directory, libcontainer root).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_server_flags() {
        let cli = Cli::try_parse_from([
            "minik",
            "server",
            "--data-dir",
            "/tmp/d",
            "--disable",
            "traefik",
            "--disable",
            "metrics-server",
            "--https-listen-port",
            "7443",
        ])
        .unwrap();
        let Command::Server(s) = cli.command else {
            panic!("not server")
        };
        assert_eq!(s.node.data_dir.to_str(), Some("/tmp/d"));
        assert_eq!(s.disable, vec!["traefik", "metrics-server"]);
        assert_eq!(s.https_listen_port, 7443);
    }

    #[test]
    fn passes_shim_arguments_through() {
        let cli = Cli::try_parse_from(["minik", "shim", "--dir", "/s/c", "--root", "/r"]).unwrap();
        let Command::Shim { args } = cli.command else {
            panic!("not shim")
        };
        assert_eq!(args, ["--dir", "/s/c", "--root", "/r"]);
    }

    #[test]
    fn rejects_bad_port() {
        assert!(Cli::try_parse_from(["minik", "server", "--https-listen-port", "99999"]).is_err());
    }
}
