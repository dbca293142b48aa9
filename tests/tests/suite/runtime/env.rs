//! The test environment: a runtime over temporary state and run directories, with one
//! image layer made from the host's static busybox (no image store).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use minik_runtime::{
    Container, ContainerConfig, ContainerState, Resources, Runtime, SandboxConfig, Security,
};
use minik_tests::minik_bin;

/// A runtime over temporary state and run directories with a busybox layer; removes every
/// container and sandbox it has when dropped, even when a test fails.
pub struct Env {
    pub runtime: Runtime,
    pub layer: PathBuf,
    pub logs: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        busybox_layer(&layer);
        Env {
            runtime: open(dir.path()),
            layer,
            logs: dir.path().join("logs"),
            dir,
        }
    }

    pub fn sandbox(&self, hostname: &str, host_pid: bool) -> String {
        let id = unique("pod");
        let config = SandboxConfig {
            id: id.clone(),
            hostname: hostname.into(),
            host_network: false,
            host_ipc: false,
            host_pid,
            labels: Default::default(),
            port_mappings: Vec::new(),
        };
        let sandbox = self.runtime.create_sandbox(&config).unwrap();
        assert!(sandbox.netns.as_deref().is_some_and(Path::exists));
        id
    }

    pub fn config(&self, sandbox: &str, script: &str) -> ContainerConfig {
        let id = unique("ctr");
        ContainerConfig {
            id: id.clone(),
            sandbox_id: sandbox.into(),
            name: id.clone(),
            image_id: "sha256:busybox".into(),
            image_ref: "busybox".into(),
            layers: vec![self.layer.clone()],
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into()],
            working_dir: "/".into(),
            mounts: vec![],
            resources: Resources::default(),
            security: Security::default(),
            tty: false,
            stdin: false,
            log_path: self.logs.join(&id).join("0.log"),
            attempt: 0,
            labels: Default::default(),
            target_pid_ns: None,
        }
    }

    pub async fn run(&self, config: ContainerConfig) -> Container {
        let container = self.runtime.start_container(config).await.unwrap();
        assert!(
            matches!(
                container.state,
                ContainerState::Running { .. } | ContainerState::Exited { .. }
            ),
            "{:?}",
            container.state
        );
        container
    }

    /// Wait (polling, as the kubelet does) until the container exited.
    pub async fn exited(&self, id: &str) -> (i32, String, Option<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let container = self.runtime.container(id).expect("container is known");
            if let ContainerState::Exited {
                exit_code,
                reason,
                message,
                ..
            } = container.state
            {
                return (exit_code, reason, message);
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {:?}",
                container.state
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait for the exit and check its code (the whole outcome is shown when it differs).
    pub async fn assert_exit_code(&self, id: &str, code: i32) {
        let exit = self.exited(id).await;
        assert_eq!(exit.0, code, "{id} ended with {exit:?}");
    }

    pub fn log(&self, id: &str) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(self.logs.join(id).join("0.log")).unwrap();
        text.lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let time = parts.next().unwrap();
                assert!(time.ends_with('Z') && time.contains('T'), "{line}");
                let stream = parts.next().unwrap().to_string();
                let tag = parts.next().unwrap().to_string();
                (stream, tag, parts.next().unwrap_or_default().to_string())
            })
            .collect()
    }

    /// Wait until the container wrote `line` to stdout.
    pub async fn wait_for_output(&self, id: &str, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.logs.join(id).join("0.log").exists()
            || !self.stdout(id).iter().any(|l| l == line)
        {
            assert!(Instant::now() < deadline, "{id} never wrote {line:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stdout(&self, id: &str) -> Vec<String> {
        self.log(id)
            .into_iter()
            .filter(|(stream, _, _)| stream == "stdout")
            .map(|(_, _, text)| text)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let runtime = self.runtime.clone();
        // Drop may run inside the test's tokio runtime: clean up from a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for c in runtime.containers() {
                    let _ = runtime.stop_container(&c.config.id, Duration::ZERO).await;
                    if let Err(e) = runtime.remove_container(&c.config.id) {
                        eprintln!("cleanup: removing {}: {e}", c.config.id);
                    }
                }
                for s in runtime.sandboxes() {
                    if let Err(e) = runtime.remove_sandbox(&s.config.id) {
                        eprintln!("cleanup: removing sandbox {}: {e}", s.config.id);
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

pub fn open(dir: &Path) -> Runtime {
    let shim = vec![
        minik_bin().to_string_lossy().into_owned(),
        "shim".to_string(),
    ];
    Runtime::open(&dir.join("state"), &dir.join("run"), shim).unwrap()
}

/// An id no other test (process) uses: cgroup paths are host-wide.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// bin/busybox with a symlink per applet, /etc/passwd and /etc/group.
fn busybox_layer(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for dir in ["etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}
