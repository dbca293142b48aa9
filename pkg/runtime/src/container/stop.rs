//! Stopping a container: SIGTERM to its init, SIGKILL to every process of its cgroup once
//! the grace period is over, then wait for its shim to record the exit and end.
//!
//! A container's init is pid 1 of its pid namespace: the kernel drops signals it has no
//! handler for (SIGKILL aside), so a plain `sleep` ignores SIGTERM and is killed after the
//! grace period, as with containerd and Docker.

use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use super::Runtime;
use super::state::{Status, read_json, write_json};
use crate::process::ProcessId;
use crate::types::{ContainerState, Error, Result};

/// How long a killed container's shim may take to record the exit.
const AFTER_KILL: Duration = Duration::from_secs(30);

pub(super) async fn stop(runtime: &Runtime, id: &str, grace: Duration) -> Result<()> {
    let record = runtime
        .record(id)
        .ok_or_else(|| Error::ContainerNotFound(id.into()))?;
    let dir = runtime.dir(id);
    let Some(status) = read_json::<Status>(&dir.status())? else {
        return Err(Error::Invalid(format!(
            "container {id} is still being started"
        )));
    };
    let ContainerState::Running { started, .. } = status.state else {
        return Ok(());
    };
    let Some(init) = status.init else {
        return Ok(());
    };
    // Wait for the shim (it records the exit, then ends); without one, for the init.
    let watched: ProcessId = status.shim.filter(|s| s.alive()).unwrap_or(init);
    let mut killed = false;
    let mut gone = false;
    if !grace.is_zero() && init.signal(Signal::SIGTERM) {
        tracing::info!(
            container = id,
            pid = init.pid,
            ?grace,
            "stopping container (SIGTERM)"
        );
        gone = watched.wait_exit(grace).await;
    }
    if !gone {
        tracing::info!(
            container = id,
            pid = init.pid,
            "killing container (SIGKILL)"
        );
        runtime.inner.cgroups.kill_all(&record.cgroup);
        init.signal(Signal::SIGKILL);
        killed = true;
        if !watched.wait_exit(AFTER_KILL).await {
            return Err(Error::Failed(format!(
                "container {id} did not exit within {AFTER_KILL:?} of SIGKILL"
            )));
        }
    }
    if watched == init {
        record_unwatched_exit(runtime, id, started, killed)?;
    }
    Ok(())
}

/// The shim was gone before the container was stopped: nobody could collect the exit
/// status, so record what is known.
fn record_unwatched_exit(
    runtime: &Runtime,
    id: &str,
    started: SystemTime,
    killed: bool,
) -> Result<()> {
    let dir = runtime.dir(id);
    if let Some(Status {
        state: ContainerState::Exited { .. },
        ..
    }) = read_json::<Status>(&dir.status())?
    {
        return Ok(());
    }
    let signal = if killed {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    let status = Status {
        state: ContainerState::Exited {
            exit_code: 128 + signal as i32,
            reason: "Error".into(),
            message: Some("the container's shim was gone: the exit code is assumed".into()),
            started: Some(started),
            finished: SystemTime::now(),
        },
        shim: None,
        init: None,
    };
    write_json(&dir.status(), &status)
}
