//! `make bench-start`: how fast and how small minik starts. A release `minik server` with its
//! real node (as root) is started RUNS times, each in a fresh empty data dir; for each start
//! it measures the time from spawning the process to /readyz answering 200 (over HTTPS with
//! the admin kubeconfig it writes) and to its node being Ready (seen through a watch), then
//! the server's resident memory after IDLE of doing nothing. Prints the median, min and max
//! of each beside its target, and the binary's size as built and stripped (`strip` into a
//! temporary file). Every server is stopped and what its node left on the host (bridge,
//! dummy interface, DNS address, nftables tables, stray processes, mounts) is removed.
//! BENCH_QUICK=1: 2 starts and 2 s idle (to check the harness, not for figures).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use minik_bench::cluster::rss_mib;
use minik_bench::report::Table;
use minik_tests::host::{kill, pids_with_cmdline, stop, unmount_under};
use minik_tests::server::network_flags;

/// How long one start may take before the benchmark gives up.
const START_LIMIT: Duration = Duration::from_secs(120);

/// What one start measured.
struct Start {
    readyz: Duration,
    node_ready: Duration,
    idle_rss_mib: f64,
}

/// One `minik server` with its node, in its own temporary directory.
struct Run {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Run {
    /// Spawn the server: loopback API on a free port, a kubelet server on a free port, and
    /// the harness's network names and ranges for that port so it does not clash with the
    /// host's or another test's node.
    fn spawn() -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(minik_tests::minik_bin())
            .args([
                "server",
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
            ])
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--write-kubeconfig")
            .arg(dir.path().join("kubeconfig.yaml"))
            .args(["--kubelet-arg", "port=0"])
            .args(network_flags(port))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start minik server");
        Run { child, dir, port }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// Fail with the server's log when it has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log"));
            panic!(
                "minik server exited ({status}); log:\n{}",
                log.unwrap_or_default()
            );
        }
    }

    /// A client from the admin kubeconfig, once the server has written it.
    async fn client(&self) -> Option<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).ok()?;
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .ok()?;
        kube::Client::try_from(config).ok()
    }

    /// Poll every 2 ms until /readyz answers 200 with the admin credentials; the client.
    async fn wait_readyz(&mut self, started: Instant) -> kube::Client {
        let mut client = None;
        loop {
            if client.is_none() {
                client = self.client().await;
            }
            if let Some(c) = &client {
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("request");
                if c.request_text(req).await.is_ok() {
                    return c.clone();
                }
            }
            self.check_alive();
            assert!(started.elapsed() < START_LIMIT, "/readyz never answered");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stop the server and remove what its node left on the host.
    fn stop(mut self) {
        stop(&mut self.child);
        let dir = self.dir.path().to_string_lossy().into_owned();
        for pid in pids_with_cmdline(&dir) {
            kill(pid);
        }
        unmount_under(std::slice::from_ref(&dir));
        remove_network(&network_flags(self.port));
    }
}

/// The value following `flag` in `flags`.
fn flag<'a>(flags: &'a [String], name: &str) -> &'a str {
    flags
        .iter()
        .position(|f| f == name)
        .and_then(|i| flags.get(i + 1))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Remove every link and nftables table named after the node's network prefix
/// (`<prefix>0`, `<prefix>-...`) and its cluster DNS address on loopback, as found now.
fn remove_network(flags: &[String]) {
    let prefix = flag(flags, "--network-prefix");
    let ours = |name: &str| name == format!("{prefix}0") || name.starts_with(&format!("{prefix}-"));
    let links = run_text("ip", &["-o", "link", "show"]);
    for link in links.lines().filter_map(|l| l.split(": ").nth(1)) {
        let link = link.split('@').next().unwrap_or(link);
        if ours(link) {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
    }
    for table in run_text("nft", &["list", "tables"]).lines() {
        // "table <family> <name>"
        let words: Vec<&str> = table.split_whitespace().collect();
        if let [_, family, name] = words[..]
            && ours(name)
        {
            let _ = Command::new("nft")
                .args(["delete", "table", family, name])
                .output();
        }
    }
    let dns = format!("{}/32", flag(flags, "--cluster-dns"));
    let _ = Command::new("ip")
        .args(["addr", "del", &dns, "dev", "lo"])
        .output();
}

/// A command's stdout ("" when it cannot run).
fn run_text(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Watch the nodes until one is Ready; the time since `started` then.
async fn wait_node_ready(client: kube::Client, started: Instant) -> Duration {
    let nodes: Api<Node> = Api::all(client);
    let stream = watcher(nodes, watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let seen = tokio::time::timeout(START_LIMIT, async {
        while let Some(event) = stream.next().await {
            if event.as_ref().is_ok_and(ready) {
                return Some(started.elapsed());
            }
        }
        None
    })
    .await;
    seen.ok()
        .flatten()
        .expect("the node to be Ready within the limit")
}

/// Start one server in an empty data dir, measure, stop it.
async fn one_start(idle: Duration) -> Start {
    let started = Instant::now();
    let mut run = Run::spawn();
    let client = run.wait_readyz(started).await;
    let readyz = started.elapsed();
    let node_ready = wait_node_ready(client, started).await;
    tokio::time::sleep(idle).await;
    run.check_alive();
    let idle_rss_mib = rss_mib(run.child.id());
    run.stop();
    Start {
        readyz,
        node_ready,
        idle_rss_mib,
    }
}

/// "median / min / max" cells of `xs`, formatted by `f`.
fn spread(mut xs: Vec<f64>, f: impl Fn(f64) -> String) -> Vec<String> {
    xs.sort_by(f64::total_cmp);
    let median = xs[xs.len() / 2];
    vec![f(median), f(xs[0]), f(xs[xs.len() - 1])]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The binary's size as built and after `strip` (into a temporary copy), in bytes.
fn binary_sizes(bin: &Path) -> (u64, u64) {
    let built = std::fs::metadata(bin).expect("the minik binary").len();
    let dir = tempfile::tempdir().expect("temp dir");
    let stripped = dir.path().join("minik");
    let out = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(bin)
        .output()
        .expect("run strip (binutils)");
    assert!(
        out.status.success(),
        "strip failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&stripped).expect("stripped copy").len();
    (built, size)
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (runs, idle) = if quick {
        (2, Duration::from_secs(2))
    } else {
        (5, Duration::from_secs(10))
    };
    let bin = minik_tests::minik_bin();
    let mut starts = Vec::new();
    for i in 0..runs {
        let s = one_start(idle).await;
        eprintln!(
            "start {}/{runs}: /readyz {:.3} s, node Ready {:.3} s, idle RSS {:.1} MiB",
            i + 1,
            s.readyz.as_secs_f64(),
            s.node_ready.as_secs_f64(),
            s.idle_rss_mib
        );
        starts.push(s);
    }
    let (built, stripped) = binary_sizes(&bin);

    let secs = |x: f64| format!("{x:.3}");
    let mut table = Table::new(
        format!("minik server with its node (release build): {runs} starts from an empty data dir"),
        &["median", "min", "max", "target"],
    );
    let with_target = |mut cells: Vec<String>, target: &str| {
        cells.push(target.into());
        cells
    };
    table.row(
        "start to /readyz 200 (s)",
        with_target(
            spread(
                starts.iter().map(|s| s.readyz.as_secs_f64()).collect(),
                secs,
            ),
            "< 0.2",
        ),
    );
    table.row(
        "start to node Ready (s)",
        with_target(
            spread(
                starts.iter().map(|s| s.node_ready.as_secs_f64()).collect(),
                secs,
            ),
            "< 2",
        ),
    );
    table.row(
        format!("server RSS, node Ready, {} s idle (MiB)", idle.as_secs()),
        with_target(
            spread(starts.iter().map(|s| s.idle_rss_mib).collect(), |x| {
                format!("{x:.1}")
            }),
            "< 60",
        ),
    );
    // One figure: in the median column.
    let one = |bytes: u64, target: &str| {
        vec![
            format!("{:.1}", mib(bytes)),
            String::new(),
            String::new(),
            target.into(),
        ]
    };
    table.row("binary size, stripped (MiB)", one(stripped, "< 30"));
    table.row("binary size, as built (MiB)", one(built, ""));
    println!("{}", table.render());
}
