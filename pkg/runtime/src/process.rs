//! Processes the runtime did not start itself (shims and container inits, possibly of an
//! earlier minik): identified by pid plus start time (so a reused pid is not mistaken for
//! them), signalled, and waited for through pidfds.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A process: its pid and its start time in clock ticks since boot (/proc/<pid>/stat
/// field 22), which tells it apart from a later process given the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessId {
    pub pid: i32,
    pub start_ticks: u64,
}

impl ProcessId {
    /// The running process `pid`, if there is one.
    pub(crate) fn of(pid: i32) -> Option<ProcessId> {
        start_ticks(pid).map(|start_ticks| ProcessId { pid, start_ticks })
    }

    /// A child of this process, even one that already exited (a zombie until we reap it,
    /// so its pid cannot have been reused).
    pub(crate) fn of_child(pid: i32) -> Option<ProcessId> {
        stat_start_ticks(pid).map(|(_, start_ticks)| ProcessId { pid, start_ticks })
    }

    /// Whether this very process still runs.
    pub(crate) fn alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }

    /// Send `signal` if the process is still this one.
    pub(crate) fn signal(&self, signal: Signal) -> bool {
        if !self.alive() {
            return false;
        }
        match kill(Pid::from_raw(self.pid), signal) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(pid = self.pid, %signal, error = %e, "signalling a process");
                false
            }
        }
    }

    /// Wait up to `timeout` for the process to end; true when it has.
    pub(crate) async fn wait_exit(&self, timeout: Duration) -> bool {
        let pidfd = match pidfd_open(self.pid) {
            Ok(fd) => fd,
            // ESRCH: already gone.
            Err(_) => return true,
        };
        // The pid may have been reused between the caller's check and pidfd_open.
        if !self.alive() {
            return true;
        }
        // SAFETY: the OwnedFd moved into the AsyncFd keeps the descriptor open, unchanged,
        // for the AsyncFd's whole life.
        let registered = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) };
        let Ok(fd) = registered else {
            return self.poll_exit(timeout).await;
        };
        matches!(
            tokio::time::timeout(timeout, fd.readable()).await,
            Ok(Ok(_))
        )
    }

    /// Fallback without pidfds: check every 20 ms.
    async fn poll_exit(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.alive() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// A process's start time in clock ticks, or None if it does not exist or has exited (a
/// zombie not yet reaped: a shim's new parent may be slow to reap it, or never do).
pub(crate) fn start_ticks(pid: i32) -> Option<u64> {
    match stat_start_ticks(pid)? {
        (true, _) => None,
        (false, ticks) => Some(ticks),
    }
}

/// Whether the process exited (a zombie) and its start time, from /proc/<pid>/stat.
fn stat_start_ticks(pid: i32) -> Option<(bool, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields restart after the
    // last ')'. Field 3 (state) is then the first, field 22 (starttime) the 20th.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let exited = matches!(fields.next(), Some("Z" | "X"));
    Some((exited, fields.nth(18)?.parse().ok()?))
}

pub(crate) fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_this_process() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let other = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!other.alive());
    }

    #[tokio::test]
    async fn waits_for_a_child_to_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id() as i32).unwrap();
        let waiter = tokio::spawn(async move { id.wait_exit(Duration::from_secs(30)).await });
        // pidfds report a zombie (exited, not yet reaped) as exited.
        assert!(waiter.await.unwrap());
        assert!(!id.alive());
        child.wait().unwrap();
    }
}
