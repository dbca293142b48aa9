//! A private containerd (Debian's `containerd` and `runc`; scripts/deps.sh installs them) for
//! the CRI client tests: its own root, state and runc directories and socket in a temp dir,
//! a generated config.toml (CRI plugin with `restrict_oom_score_adj`, since root lacks
//! CAP_SYS_RESOURCE here; overlayfs; the runc v2 runtime on cgroupfs), and the offline pause
//! image of scripts/images.sh as its sandbox image.
//!
//! There is no CNI configuration, so containerd 1.6 refuses pod-network sandboxes: tests run
//! host-network sandboxes (`NamespaceMode::Node`). On drop every task is killed and deleted
//! through `ctr` (so the shims exit), containerd is stopped, and what is left — shims, runc
//! containers, mounts under the temp dir, the sandboxes' cgroup parent — is killed, unmounted
//! and removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::host::{cgroup_dirs, kill, pids_with_cmdline, remove_cgroup, stop, unmount_under};
use crate::node::{build_named_images, image_tarball};

/// The sandbox image scripts/images.sh builds (`scripts/images.sh DIR pause`).
pub const PAUSE_IMAGE: &str = "docker.io/minik/pause:latest";
/// The busybox image scripts/images.sh builds.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:latest";
/// The containerd namespace of the CRI plugin.
const NAMESPACE: &str = "k8s.io";

/// A running private containerd.
pub struct Containerd {
    child: Child,
    /// The temp dir holding everything of this containerd.
    pub dir: tempfile::TempDir,
    /// Its gRPC socket.
    pub socket: PathBuf,
    /// The OCI tarballs of the busybox and pause images (scripts/images.sh).
    pub images: Vec<PathBuf>,
    cgroup_parent: String,
    /// The pod network, when `with_network` set one up.
    pub network: Option<crate::cni::Network>,
}

impl Containerd {
    /// Start a containerd, wait for its socket and import the pause image into it.
    pub fn start() -> Containerd {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::Builder::new()
            .prefix("minik-containerd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        for sub in [
            "root",
            "state",
            "runc",
            "opt",
            "cni/bin",
            "cni/net.d",
            "logs",
        ] {
            std::fs::create_dir_all(d.join(sub)).expect("containerd dirs");
        }
        let socket = d.join("containerd.sock");
        let config = d.join("config.toml");
        std::fs::write(&config, config_toml(d, &socket)).expect("write config.toml");
        let log = std::fs::File::create(d.join("containerd.log")).expect("containerd.log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start containerd (install it: scripts/deps.sh)");
        let cgroup_parent = format!(
            "/minik-cri-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = Containerd {
            child,
            dir,
            socket,
            images: Vec::new(),
            cgroup_parent,
            network: None,
        };
        c.wait_socket();
        c.images = build_named_images(&c.dir.path().join("images"), &["busybox", "pause"]);
        let pause = c.image("pause.oci.tar");
        c.import(&pause);
        c
    }

    /// Give pods a network (tests/src/cni.rs), so pod-network sandboxes work.
    pub fn with_network(mut self) -> Containerd {
        self.network = Some(crate::cni::configure(self.dir.path()));
        self
    }

    /// The CRI endpoint: `unix://<socket>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A directory for pod logs (`PodSandboxConfig.log_directory`).
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// The cgroup parent for sandboxes (`LinuxPodSandboxConfig.cgroup_parent`), removed on
    /// drop.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// The tarball of scripts/images.sh named `name` (`busybox.oci.tar`).
    pub fn image(&self, name: &str) -> PathBuf {
        image_tarball(&self.images, name)
    }

    /// Import an image tarball into the CRI plugin's namespace.
    pub fn import(&self, tarball: &Path) {
        let out = self.ctr(&["images", "import", &tarball.to_string_lossy()]);
        assert!(
            out.status.success(),
            "ctr images import {}: {}",
            tarball.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run `ctr -n k8s.io -a <socket> ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .args(["-n", NAMESPACE, "-a"])
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn wait_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.socket.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("containerd exited ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "containerd made no socket in 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill and delete every task (the shims exit when their last task is deleted).
    fn delete_tasks(&self) {
        let out = self.ctr(&["tasks", "ls", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.ctr(&["tasks", "rm", "-f", id]);
        }
    }

    /// Kill what is left: runc containers in the private runc root, shims serving this
    /// containerd; unmount what is mounted under the temp dir; remove the cgroup parent.
    fn reap(&self) {
        let runc_root = self.dir.path().join("runc").join(NAMESPACE);
        let out = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"])
            .output();
        if let Ok(out) = out {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force", id])
                    .output();
            }
        }
        for pid in shim_pids(&self.socket) {
            kill(pid);
        }
        unmount_under(&[self.dir.path().to_string_lossy().into_owned()]);
        for cg in cgroup_dirs(&self.cgroup_parent) {
            remove_cgroup(&cg);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.delete_tasks();
        // Stop containerd: SIGTERM, then SIGKILL after 10 s.
        stop(&mut self.child);
        self.reap();
        if let Some(n) = &self.network {
            crate::cni::remove(n);
        }
    }
}

/// The config.toml of a containerd living in `dir`.
fn config_toml(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    let s = socket.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{s}"

[ttrpc]
  address = "{s}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
"#
    )
}

/// The containerd shims serving the containerd at `socket` (their `-address` argument).
pub fn shim_pids(socket: &Path) -> Vec<u32> {
    let sock = socket.to_string_lossy();
    pids_with_cmdline("containerd-shim")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|raw| raw.split(|b| *b == 0).any(|a| a == sock.as_bytes()))
        })
        .collect()
}
