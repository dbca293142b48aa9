//! A container's directory under `<state>/containers/<id>/` and the small files in it that
//! tell its state, shared by the runtime and the container's shim:
//!
//! - `container.json`: the ContainerConfig and creation time (written once, by the runtime);
//! - `status.json`: the ContainerState with the shim's and the init's process identities
//!   (written by the shim: Running once started, Exited when it ended); absent = Created;
//! - `config.json` + `rootfs/`: the OCI bundle (rootfs is the overlay mount point);
//! - `upper/`, `work/`: the overlay's writable layer;
//! - `stdin`: a named pipe the container's stdin reads from (with `stdin: true`);
//! - `console.sock`: where libcontainer hands over a terminal's master (with `tty: true`);
//! - `resize`: a named pipe the shim reads the terminal's new sizes from (`tty: true`);
//! - `shim.log`: the shim's (and libcontainer's) own log.
//!
//! Files are replaced atomically (write a temporary file, rename), so readers never see half.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::process::ProcessId;
use crate::types::{Container, ContainerConfig, ContainerState, Error, Result};

/// Paths of one container's files.
#[derive(Debug, Clone)]
pub(crate) struct ContainerDir {
    pub dir: PathBuf,
}

impl ContainerDir {
    pub(crate) fn new(dir: PathBuf) -> ContainerDir {
        ContainerDir { dir }
    }
    pub(crate) fn record(&self) -> PathBuf {
        self.dir.join("container.json")
    }
    pub(crate) fn status(&self) -> PathBuf {
        self.dir.join("status.json")
    }
    pub(crate) fn spec(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub(crate) fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub(crate) fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub(crate) fn stdin(&self) -> PathBuf {
        self.dir.join("stdin")
    }
    pub(crate) fn resize(&self) -> PathBuf {
        self.dir.join("resize")
    }
    pub(crate) fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    pub(crate) fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
}

/// `container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub config: ContainerConfig,
    pub created: SystemTime,
    /// The cgroup path libcontainer was given (under kubepods).
    pub cgroup: String,
    /// Whether the container shares a pid namespace it does not own, the host's or a
    /// target container's (its shim then kills every process of its cgroup when the init
    /// exits, as runc does when the pid namespace is shared).
    pub host_pid: bool,
}

/// `status.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Status {
    pub state: ContainerState,
    /// The shim, while it runs the container.
    pub shim: Option<ProcessId>,
    /// The container's init process, once started.
    pub init: Option<ProcessId>,
}

impl Status {
    /// The state to report: a Running container whose shim and init are both gone (killed
    /// together, or a host reboot) is Exited with reason "Unknown".
    pub(crate) fn effective(self) -> ContainerState {
        let ContainerState::Running { pid, started } = &self.state else {
            return self.state;
        };
        let init_alive = self.init.is_some_and(|p| p.alive());
        let shim_alive = self.shim.is_some_and(|p| p.alive());
        if init_alive || shim_alive {
            return self.state;
        }
        tracing::debug!(
            pid,
            "container process and shim are gone without a recorded exit"
        );
        ContainerState::Exited {
            exit_code: 255,
            reason: "Unknown".into(),
            message: Some("the container's shim ended without recording its exit".into()),
            started: Some(*started),
            finished: SystemTime::now(),
        }
    }
}

/// Read a container's record and status into a Container.
pub(crate) fn load(dir: &ContainerDir, record: &Record) -> Container {
    let state = match read_json::<Status>(&dir.status()) {
        Ok(Some(status)) => status.effective(),
        Ok(None) => ContainerState::Created,
        Err(e) => {
            tracing::warn!(dir = %dir.dir.display(), error = %e, "unreadable container status");
            ContainerState::Created
        }
    };
    Container {
        config: record.config.clone(),
        state,
        created: record.created,
    }
}

/// Read a JSON file; None when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Failed(format!("{} is not valid: {e}", path.display())))
}

/// Write a JSON file atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Failed(format!("encoding {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Replace a file's content atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let context = || format!("writing {}", path.display());
    let mut file = fs::File::create(&tmp).map_err(Error::io(context()))?;
    file.write_all(bytes).map_err(Error::io(context()))?;
    drop(file);
    fs::rename(&tmp, path).map_err(Error::io(context()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_container_without_processes_reads_as_exited() {
        let status = Status {
            state: ContainerState::Running {
                pid: 1,
                started: SystemTime::now(),
            },
            shim: None,
            init: Some(ProcessId {
                pid: std::process::id() as i32,
                start_ticks: u64::MAX,
            }),
        };
        match status.effective() {
            ContainerState::Exited { reason, .. } => assert_eq!(reason, "Unknown"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        assert!(read_json::<Vec<u32>>(&path).unwrap().is_none());
        write_json(&path, &vec![1u32, 2]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2]));
    }
}
