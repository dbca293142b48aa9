//! Starting a container: check the request, write its directory (record, overlay root,
//! OCI bundle), start its shim and wait for the shim's one-line report.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, BufReader};

use super::state::{ContainerDir, Record, Status, write_json};
use super::{Runtime, rootfs, spec};
use crate::cgroups;
use crate::sandbox::validate_id;
use crate::shim::Options;
use crate::types::{Container, ContainerConfig, ContainerState, Error, Result};

/// How long a shim may take to report: far beyond a normal start (tens of milliseconds);
/// only a wedged start gets here.
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn start(runtime: &Runtime, config: ContainerConfig) -> Result<Container> {
    validate_id(&config.id)?;
    if config.args.is_empty() {
        return Err(Error::Invalid(format!(
            "container {} has no command",
            config.id
        )));
    }
    let sandbox = runtime
        .sandbox(&config.sandbox_id)
        .ok_or_else(|| Error::SandboxNotFound(config.sandbox_id.clone()))?;
    let target_pid = match &config.target_pid_ns {
        Some(target) if !sandbox.config.host_pid => Some(target_init(runtime, target)?),
        _ => None,
    };
    let dir = runtime.dir(&config.id);
    let record = Record {
        cgroup: cgroups::container_path(&config.sandbox_id, &config.id),
        host_pid: sandbox.config.host_pid || target_pid.is_some(),
        created: SystemTime::now(),
        config,
    };
    let sandbox_dir = runtime.inner.sandboxes.dir(&sandbox.config.id);
    let spec = spec::build(&spec::SpecInput {
        config: &record.config,
        sandbox: &sandbox.config,
        sandbox_dir: &sandbox_dir,
        rootfs: &dir.rootfs(),
        cgroup: &record.cgroup,
        cgroup_v2: runtime.inner.cgroups.is_v2(),
        target_pid,
    })?;
    let id = record.config.id.clone();
    match fs::create_dir(&dir.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Invalid(format!("container {id} already exists")));
        }
        Err(e) => return Err(Error::io(format!("creating {}", dir.dir.display()))(e)),
    }
    // Mounting the overlay and writing the bundle block for milliseconds: off the async
    // workers, which serve the API server and the kubelet meanwhile.
    let prepared = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            write_json(&dir.record(), &record)
                .and_then(|()| rootfs::mount_rootfs(&dir, &record.config.layers))
                .and_then(|()| write_json(&dir.spec(), &spec))
        }
    })
    .await
    .unwrap_or_else(|e| Err(Error::Failed(format!("preparing the container: {e}"))));
    if let Err(e) = prepared {
        discard(&dir);
        return Err(e);
    }
    run_shim(runtime, &dir).await?;
    let container = runtime
        .container(&id)
        .ok_or_else(|| Error::ContainerNotFound(id.clone()))?;
    match &container.state {
        ContainerState::Running { pid, .. } => {
            tracing::info!(container = %id, pid, "container started")
        }
        ContainerState::Exited {
            reason, message, ..
        } => {
            tracing::warn!(container = %id, %reason, message = message.as_deref().unwrap_or(""), "container did not start")
        }
        ContainerState::Created => {}
    }
    Ok(container)
}

/// The host pid of the init of running container `target`, whose pid namespace a new
/// container joins (containerd: the target's task pid, an error when it has none).
fn target_init(runtime: &Runtime, target: &str) -> Result<i32> {
    let container = runtime
        .container(target)
        .ok_or_else(|| Error::Invalid(format!("target container {target} is not known")))?;
    match container.state {
        ContainerState::Running { pid, .. } if pid > 0 => Ok(pid),
        _ => Err(Error::Invalid(format!(
            "target container {target} is not running"
        ))),
    }
}

/// Start the shim and wait for its report. A shim that ends without one gets its
/// container recorded as a StartError; one that cannot be started leaves nothing behind.
async fn run_shim(runtime: &Runtime, dir: &ContainerDir) -> Result<()> {
    let spawned = spawn_shim(runtime, dir);
    if spawned.is_err() {
        discard(dir);
    }
    let mut child = spawned?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Failed("the shim has no stdout".into()))?;
    let mut line = String::new();
    let report =
        tokio::time::timeout(REPORT_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
    // The process we started forks the shim and exits at once: reap it.
    if let Err(e) = child.wait().await {
        tracing::warn!(error = %e, "waiting for the shim's launcher");
    }
    match report {
        Err(_) => Err(Error::Failed(format!(
            "the shim did not report within {REPORT_TIMEOUT:?}; see {}",
            dir.shim_log().display()
        ))),
        Ok(Err(e)) => Err(Error::io("reading the shim's report")(e)),
        Ok(Ok(_)) if !line.trim().is_empty() => Ok(()),
        Ok(Ok(_)) => {
            if !dir.status().exists() {
                let state = ContainerState::Exited {
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: Some(format!(
                        "the shim ended before starting the container; see {}",
                        dir.shim_log().display()
                    )),
                    started: None,
                    finished: SystemTime::now(),
                };
                let status = Status {
                    state,
                    shim: None,
                    init: None,
                };
                write_json(&dir.status(), &status)?;
            }
            Ok(())
        }
    }
}

fn spawn_shim(runtime: &Runtime, dir: &ContainerDir) -> Result<tokio::process::Child> {
    let shim_log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.shim_log())
        .map_err(Error::io(format!("opening {}", dir.shim_log().display())))?;
    let options = Options {
        dir: dir.dir.clone(),
        root: runtime.inner.libcontainer_root.clone(),
    };
    let program = &runtime.inner.shim;
    let mut command = tokio::process::Command::new(&program[0]);
    command
        .args(&program[1..])
        .args(options.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(shim_log);
    // No pre_exec hook: without one the standard library spawns with posix_spawn (vfork),
    // not fork, which would copy the page tables of the whole server for each container.
    // The shim closes what it inherited beyond 0, 1 and 2 itself.
    command
        .spawn()
        .map_err(Error::io(format!("starting the shim {}", program[0])))
}

/// Undo a start that failed before its shim ran.
fn discard(dir: &ContainerDir) {
    if let Err(e) = rootfs::unmount_rootfs(dir) {
        tracing::warn!(error = %e, "unmounting a container's root filesystem");
    }
    if let Err(e) = fs::remove_dir_all(&dir.dir) {
        tracing::warn!(dir = %dir.dir.display(), error = %e, "removing a container's directory");
    }
}
