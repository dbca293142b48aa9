//! An exec whose output is captured (probes, hooks, ExecSync): stdin is /dev/null, stdout
//! and stderr one pipe read up to `MAX_OUTPUT`; at the timeout the process is killed and
//! the helper reaps it.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::process::{ChildIo, exit_code, pipe, read_pid, report, spawn};
use super::{ExecResult, MAX_OUTPUT, Prepared};
use crate::types::{Error, Result};

/// Fork the helper, collect its output and status.
pub(super) fn run(p: &Prepared, timeout: Duration) -> Result<ExecResult> {
    let (out_r, out_w) = pipe()?;
    let null = File::open("/dev/null").map_err(Error::io("opening /dev/null"))?;
    let io = ChildIo::Fds([null.as_raw_fd(), out_w.as_raw_fd(), out_w.as_raw_fd()]);
    let spawned = spawn(p, &io)?;
    drop(out_w);
    drop(null);
    let mut out = File::from(out_r);
    let mut err = spawned.err;
    let mut pid = spawned.pid;
    let helper = spawned.helper;
    let (status, output) = match collect(helper, &mut out, &mut pid, timeout) {
        Some(done) => done,
        None => return Err(Error::Timeout(timeout)),
    };
    report(&mut err)?;
    Ok(ExecResult {
        exit_code: exit_code(status),
        output,
    })
}

/// Kill the timed-out process (the helper reaps it and exits), or the helper itself when
/// it has not forked yet; then reap the helper.
fn kill_timed_out(helper: i32, pid: &mut File, status: &mut i32) {
    // SAFETY: setting O_NONBLOCK on our own descriptor.
    unsafe { libc::fcntl(pid.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let target = read_pid(pid).unwrap_or(helper);
    // SAFETY: the process is our helper's child, which only the helper reaps (it is
    // waiting for it), so its pid is not reused before the helper exits; then the helper,
    // our own child, is reaped here.
    unsafe {
        libc::kill(target, libc::SIGKILL);
        libc::waitpid(helper, status, 0);
    }
}

/// Read the helper's output until it exits (None: the timeout killed it), then its
/// status and the output.
fn collect(
    helper: i32,
    out: &mut File,
    pid: &mut File,
    timeout: Duration,
) -> Option<(i32, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let mut buf = [0u8; 4096];
    let mut open = true;
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child.
        let done = unsafe { libc::waitpid(helper, &mut status, libc::WNOHANG) } == helper;
        if done || !open {
            if !done {
                // SAFETY: as above, blocking.
                let _ = unsafe { libc::waitpid(helper, &mut status, 0) };
            }
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            kill_timed_out(helper, pid, &mut status);
            return None;
        }
        let wait = left.min(Duration::from_millis(50));
        let mut fds = [libc::pollfd {
            fd: out.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, wait.as_millis() as i32) };
        if ready > 0 {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => open = false,
                Ok(n) => keep(&mut output, &buf[..n]),
            }
        }
    }
    // What is left in the pipe (descendants may hold it open: read without blocking).
    // SAFETY: setting O_NONBLOCK on our own descriptor.
    unsafe { libc::fcntl(out.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        keep(&mut output, &buf[..n]);
    }
    Some((status, output))
}

pub(super) fn keep(output: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(output.len());
    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
}
