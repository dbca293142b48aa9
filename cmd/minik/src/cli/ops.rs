//! Operator subcommands: images, certificates, tokens, snapshots.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import images from tarballs into the node's image store: OCI image layouts (`skopeo
    /// copy ... oci-archive:FILE`, `ctr images export`, `docker save` 25+) and docker archives
    /// (`docker save`), plain, gzip or zstd. Images are named by their RepoTags or their
    /// io.containerd.image.name annotation; only this node's platform is imported. Pods can
    /// then use them without a registry (imagePullPolicy IfNotPresent or Never).
    Import {
        #[command(flatten)]
        dir: DataDir,
        /// The tarballs.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List the images in the store: IMAGE, TAG, IMAGE ID and SIZE, like `crictl images`.
    Ls {
        #[command(flatten)]
        dir: DataDir,
        /// Print only the full image ids.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Pull an image from its registry into the store, through the mirrors and with the
    /// credentials of registries.yaml (k3s's format). Plain HTTP for endpoints given as
    /// http:// and, after HTTPS, for registries on localhost or 127.0.0.1.
    Pull {
        #[command(flatten)]
        dir: DataDir,
        /// Image reference, e.g. busybox, docker.io/library/busybox:latest,
        /// 127.0.0.1:5000/minik/httpd:latest or name@sha256:<digest>.
        image: String,
        /// Registry mirrors and credentials (a missing file means none).
        #[arg(
            long,
            default_value = "/etc/minik/registries.yaml",
            env = "MINIK_REGISTRIES"
        )]
        registries: PathBuf,
        /// Credentials for the registry, USER:PASSWORD (instead of registries.yaml's).
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
    },
    /// Remove images by reference or id. A tag goes alone while the image has other tags;
    /// with its last tag, or given its id, the image goes, and with it the blobs and unpacked
    /// layers no other image uses.
    Rm {
        #[command(flatten)]
        dir: DataDir,
        /// Image references (busybox, docker.io/minik/httpd:latest) or ids (or id prefixes).
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
}

/// Where a server keeps its state.
#[derive(Debug, clap::Args)]
pub struct DataDir {
    /// The server's data directory.
    #[arg(long, default_value = "/var/lib/minik", env = "MINIK_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Show each certificate's subject, expiry and days left; exits 1 when one has expired.
    /// Leaf certificates within 90 days of expiry are renewed when the server starts.
    Check {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Issue new leaf certificates (serving, admin client, front-proxy client) signed by the
    /// same CAs, keeping the serving certificate's names; the old ones are moved to
    /// tls/backup-<time>/. Restart the server to serve with them.
    Rotate {
        #[command(flatten)]
        dir: DataDir,
        /// Only these certificates (serving-kube-apiserver, client-admin,
        /// client-auth-proxy); all of them when not given.
        #[arg(long = "service", short = 's')]
        services: Vec<String>,
    },
}

/// How to reach a running server as its admin.
#[derive(Debug, clap::Args)]
pub struct AdminKubeconfig {
    /// The admin kubeconfig the server wrote.
    #[arg(
        long,
        default_value = "/etc/minik/minik.yaml",
        env = "MINIK_KUBECONFIG_OUTPUT"
    )]
    pub kubeconfig: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum SecretsEncryptCommand {
    /// Show whether secrets are encrypted, the keys, and how many secrets each key seals.
    Status {
        #[command(flatten)]
        admin: AdminKubeconfig,
    },
    /// Make a new key the active one, re-encrypt every secret with it, drop the old keys.
    Rotate {
        #[command(flatten)]
        admin: AdminKubeconfig,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token (printed as <id>.<secret>); it authenticates as
    /// system:bootstrap:<id> in system:bootstrappers until it expires or is deleted.
    Create {
        #[command(flatten)]
        admin: AdminKubeconfig,
        /// How long the token lives (e.g. 24h, 30m; 0s: forever).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Extra groups (each must start with system:bootstrappers:). Comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// List bootstrap tokens.
    List {
        #[command(flatten)]
        admin: AdminKubeconfig,
    },
    /// Delete bootstrap tokens.
    Delete {
        #[command(flatten)]
        admin: AdminKubeconfig,
        /// Token ids (or whole tokens).
        #[arg(required = true)]
        tokens: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent snapshot of the datastore (also while the server runs).
    ///
    /// One file holds every object and the server's identity (CAs, service-account key,
    /// encryption keys and tokens under tls/ and server/). Prints the file's path. Keep it
    /// private: it holds the cluster's keys.
    Save {
        #[command(flatten)]
        dir: DataDir,
        /// Name of the snapshot file (default: on-demand-<hostname>-<unix seconds>).
        #[arg(long)]
        name: Option<String>,
        /// Directory to save into (default: <data-dir>/server/db/snapshots).
        #[arg(long = "dir", value_name = "DIR")]
        snapshot_dir: Option<PathBuf>,
    },
    /// Restore a snapshot into a data directory (the server must be stopped).
    ///
    /// Into a new data directory, or with --force one whose datastore is then moved aside.
    /// The datastore and the server's identity files come back, so `minik server --data-dir D`
    /// starts with every object, and kubeconfigs and service-account tokens of the old cluster
    /// keep working.
    Restore {
        #[command(flatten)]
        dir: DataDir,
        /// The snapshot: a file path, or a name in --dir.
        #[arg(value_name = "FILE|NAME")]
        snapshot: String,
        /// Where to look up a snapshot given by name (default: <data-dir>/server/db/snapshots).
        #[arg(long = "dir", value_name = "DIR")]
        snapshot_dir: Option<PathBuf>,
        /// Restore even when the data directory has a datastore; the old one is moved to
        /// db/state.db.before-restore-<unix seconds>.
        #[arg(long)]
        force: bool,
    },
    /// List the snapshots in a directory: NAME, SIZE and CREATED, oldest first.
    Ls {
        #[command(flatten)]
        dir: DataDir,
        /// Directory to list (default: <data-dir>/server/db/snapshots).
        #[arg(long = "dir", value_name = "DIR")]
        snapshot_dir: Option<PathBuf>,
    },
}
