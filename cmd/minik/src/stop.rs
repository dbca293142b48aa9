//! `minik stop --all` (k3s-killall.sh's equivalent): with the node's server or agent
//! stopped, stop every container of its runtime, remove its pod sandboxes (namespaces,
//! /dev/shm, pod cgroups), unmount what is still mounted under the data directory, and
//! remove the node's network. Each step says what it did; a second run finds nothing to do.

mod running;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use minik_network::ipam::Subnet;
use minik_network::teardown::{TeardownOptions, teardown};
use minik_runtime::Runtime;
use minik_runtime::container::cleanup::unmount_under;

use crate::cli::StopArgs;

/// Where the runtime keeps what does not survive a reboot (as `minik server` runs it).
const RUN_DIR: &str = "/run/minik";

const WHAT_IT_DOES: &str = "`minik stop` stops every container of this node, unmounts what its \
pods mounted and removes its network (bridge, cluster DNS interface, nftables tables, routes), \
as a reboot would, e.g. before an uninstall or an upgrade; the node's `minik server` or \
`minik agent` must be stopped first. Run `minik stop --all` to do it.";

pub fn run(args: StopArgs) -> anyhow::Result<ExitCode> {
    if !args.all {
        anyhow::bail!("{WHAT_IT_DOES}");
    }
    let cluster_cidr: Subnet = args
        .cluster_cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("--cluster-cidr {:?}: {e}", args.cluster_cidr))?;
    if !is_root() {
        anyhow::bail!(
            "`minik stop --all` must run as root (it kills containers, unmounts, removes network devices)"
        );
    }
    // Mount points are listed by their real paths.
    let data_dir =
        std::fs::canonicalize(&args.data_dir).or_else(|_| std::path::absolute(&args.data_dir))?;
    let _lock = running::lock_datastore(&data_dir)?;
    if let Some(node) = running::find(&data_dir) {
        anyhow::bail!(
            "a minik {} (pid {}) is running on {}: stop it first (e.g. `systemctl stop minik`), \
             then run `minik stop --all` again",
            node.kind,
            node.pid,
            data_dir.display()
        );
    }
    let mut done = 0usize;
    let mut errors = Vec::new();
    let say = |line: String| println!("{line}");

    let run_dir = Path::new(RUN_DIR);
    let mut mounted = vec![data_dir.clone()];
    let mut pods = Vec::new();
    if let Some(runtime) =
        Runtime::open_for_teardown(&data_dir.join("agent").join("containers"), run_dir)?
    {
        for sandbox in runtime.sandboxes() {
            mounted.push(run_dir.join("sandboxes").join(&sandbox.config.id));
            pods.push(sandbox.config.id);
        }
        for container in runtime.containers() {
            mounted.push(run_dir.join("containers").join(&container.config.id));
        }
        let grace = Duration::from_secs(args.grace_period);
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let report = tokio.block_on(runtime.stop_all(grace, &say));
        if report.containers > 0 {
            say(format!("removed {} container(s)", report.containers));
        }
        done += report.containers + report.sandboxes.len();
        errors.extend(report.errors);
    }
    for (point, result) in unmount_under(&mounted) {
        match result {
            Ok(()) => {
                say(format!("unmounted {}", point.display()));
                done += 1;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let network = teardown(&TeardownOptions {
        prefix: args.network_prefix.clone(),
        pods,
        cluster_dns: Some(args.cluster_dns),
        cluster_cidr: Some(cluster_cidr),
    });
    for removed in &network.removed {
        say(format!("removed {removed}"));
    }
    done += network.removed.len();
    errors.extend(network.errors);
    finish(&data_dir, done, &errors)
}

fn finish(data_dir: &Path, done: usize, errors: &[String]) -> anyhow::Result<ExitCode> {
    if !errors.is_empty() {
        for e in errors {
            eprintln!("minik stop: {e}");
        }
        anyhow::bail!(
            "{} step(s) failed; fix what is named above and run `minik stop --all` again",
            errors.len()
        );
    }
    if done == 0 {
        println!("nothing to stop for {}", data_dir.display());
    } else {
        println!("stopped the node of {}", data_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether this process runs with effective uid 0 (/proc/self/status's Uid line).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}
