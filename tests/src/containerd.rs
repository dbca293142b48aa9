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
        };
        c.wait_socket();
        c.images = build_images(&c.dir.path().join("images"), &["busybox", "pause"]);
        let pause = c.image("pause.oci.tar");
        c.import(&pause);
        c
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
        self.images
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .cloned()
            .unwrap_or_else(|| panic!("scripts/images.sh made no {name}: {:?}", self.images))
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

    /// Stop containerd: SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(prefix.as_str()))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        for cg in cgroup_dirs(&self.cgroup_parent) {
            remove_cgroup(&cg);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.delete_tasks();
        self.stop();
        self.reap();
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

/// Build scripts/images.sh's images `names` into `dir`; the tarballs' paths.
fn build_images(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/images.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .args(names)
        .output()
        .expect("run scripts/images.sh");
    assert!(
        out.status.success(),
        "scripts/images.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The containerd shims serving the containerd at `socket` (their `-address` argument).
pub fn shim_pids(socket: &Path) -> Vec<u32> {
    let sock = socket.to_string_lossy();
    crate::node::pids_with_cmdline("containerd-shim")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|raw| raw.split(|b| *b == 0).any(|a| a == sock.as_bytes()))
        })
        .collect()
}

/// The directories of cgroup `path` in every mounted hierarchy.
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut roots: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    roots.push("/sys/fs/cgroup".into());
    roots
        .into_iter()
        .map(|r| r.join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// Remove a cgroup directory and its children, deepest first.
fn remove_cgroup(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for c in children.filter_map(Result::ok) {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&c.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
