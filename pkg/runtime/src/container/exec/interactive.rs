//! An interactive exec (`kubectl exec`, the CRI's Exec): the process gets pipes for its
//! stdin (or /dev/null), stdout and stderr, or with a terminal a new pty opened in the
//! container's /dev/pts (as runc exec does: its session's controlling terminal on 0, 1 and
//! 2, TERM=xterm as containerd sets). The caller gets the other ends as async streams, a
//! [`Terminal`] to resize, and the exit code from [`ExecProcess::wait`]. Dropping an
//! [`ExecProcess`] whose process still runs SIGKILLs the process (through a pidfd: never
//! a reused pid) and reaps the helper, so a client that goes away leaves nothing behind.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::process::{ChildIo, Spawned, exit_code, pipe, read_pid, report, spawn};
use super::{Prepared, Runtime};
use crate::fdstream::FdStream;
use crate::process::pidfd_open;
use crate::shim::receive_fd;
use crate::types::{Error, Result};

/// A process started by [`Runtime::exec_interactive`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Its stdin (when asked for; with a terminal, the terminal's input).
    pub stdin: Option<FdStream>,
    /// Its stdout (with a terminal, everything the terminal shows).
    pub stdout: Option<FdStream>,
    /// Its stderr (None with a terminal).
    pub stderr: Option<FdStream>,
    terminal: Option<Terminal>,
    child: Child,
}

/// A terminal's master side, to set its size (cheap to clone).
#[derive(Debug, Clone)]
pub struct Terminal {
    master: Arc<OwnedFd>,
}

impl Terminal {
    /// Set the terminal's size in columns and rows (the process gets SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        crate::tty::set_size(&self.master, width, height)
    }
}

/// The helper (our child) and the process (its child).
#[derive(Debug)]
struct Child {
    helper: libc::pid_t,
    /// The helper's pidfd: readable once it exited.
    exited: AsyncFd<OwnedFd>,
    /// The process's pid and pidfd (to kill it).
    pid: libc::pid_t,
    process: Option<OwnedFd>,
    /// The exit code, once the helper is reaped.
    code: Option<i32>,
}

impl ExecProcess {
    /// The process's pid (in the host's pid namespace).
    pub fn pid(&self) -> i32 {
        self.child.pid
    }

    /// The terminal, when the process has one.
    pub fn terminal(&self) -> Option<Terminal> {
        self.terminal.clone()
    }

    /// Set the terminal's size; an error without a terminal.
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        match &self.terminal {
            Some(t) => t.resize(width, height),
            None => Err(Error::Invalid("the process has no terminal".into())),
        }
    }

    /// Wait for the process to end: its exit code (128 + the signal when one ended it).
    pub async fn wait(&mut self) -> Result<i32> {
        let child = &mut self.child;
        loop {
            if let Some(code) = child.code {
                return Ok(code);
            }
            let mut status = 0;
            // SAFETY: waitpid on our own child, not yet reaped (code is None).
            match unsafe { libc::waitpid(child.helper, &mut status, libc::WNOHANG) } {
                0 => {}
                pid if pid == child.helper => {
                    child.code = Some(exit_code(status));
                    continue;
                }
                _ => {
                    let e = std::io::Error::last_os_error();
                    return Err(Error::io("waiting for the exec'd process")(e));
                }
            }
            let mut ready = child
                .exited
                .readable()
                .await
                .map_err(Error::io("waiting for the exec'd process"))?;
            ready.clear_ready();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.code.is_some() {
            return;
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child, not yet reaped.
        if unsafe { libc::waitpid(self.helper, &mut status, libc::WNOHANG) } == self.helper {
            return;
        }
        if let Some(process) = &self.process
            && kill(process)
        {
            tracing::debug!(
                pid = self.pid,
                "exec'd process killed: its caller went away"
            );
        }
        // The helper reaps the killed process and exits: reap it off this thread.
        let helper = self.helper;
        let reap = move || {
            // SAFETY: blocking waitpid on our own child.
            unsafe { libc::waitpid(helper, std::ptr::null_mut(), 0) };
        };
        if let Err(e) = std::thread::Builder::new()
            .name("exec-reaper".into())
            .spawn(reap)
        {
            tracing::warn!(error = %e, "no thread to reap an exec helper; reaping inline");
            reap();
        }
    }
}

impl Runtime {
    /// Run `argv` in running container `id` as its user, in its namespaces and cgroup, with
    /// its environment plus `env` ("NAME=value"), its streams given back to the caller:
    /// pipes (stdin only when `stdin`, else /dev/null), or with `tty` a new terminal of that
    /// size (width, height; 0 when unknown), set before the process starts (TERM=xterm
    /// unless `env` says otherwise). Returns once the process runs (an error when it could
    /// not: no such executable, ...).
    pub async fn exec_interactive(
        &self,
        id: &str,
        argv: &[String],
        env: &[String],
        tty: Option<(u16, u16)>,
        stdin: bool,
    ) -> Result<ExecProcess> {
        let mut extra = Vec::with_capacity(env.len() + 1);
        if tty.is_some() {
            extra.push("TERM=xterm".to_string());
        }
        extra.extend(env.iter().cloned());
        let prepared = self.prepare_exec(id, argv, &extra)?;
        // Registering the descriptors needs the runtime, which blocking threads have.
        let process = tokio::task::spawn_blocking(move || start(&prepared, tty, stdin))
            .await
            .map_err(|e| Error::Failed(format!("exec task: {e}")))??;
        tracing::debug!(
            container = id,
            pid = process.pid(),
            tty = tty.is_some(),
            "interactive exec started"
        );
        Ok(process)
    }
}

fn stream(fd: OwnedFd) -> Result<FdStream> {
    FdStream::new(fd).map_err(Error::io("registering a stream"))
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd> {
    fd.try_clone()
        .map_err(Error::io("duplicating a descriptor"))
}

/// Fork the helper with pipes or a terminal, wait until the process has exec'd, register
/// the caller's ends with tokio.
fn start(p: &Prepared, tty: Option<(u16, u16)>, stdin: bool) -> Result<ExecProcess> {
    if let Some((width, height)) = tty {
        let (ours, theirs) = UnixStream::pair().map_err(Error::io("making a socket pair"))?;
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let spawned = spawn(p, &ChildIo::Terminal(theirs.as_raw_fd(), size))?;
        drop(theirs);
        // Blocks until the helper sends the master or ends.
        let master = receive_fd(&ours).map_err(Error::Failed);
        let started = started(spawned)?;
        let master = master?;
        let input = stdin.then(|| dup(&master).and_then(stream)).transpose()?;
        let output = stream(dup(&master)?)?;
        return Ok(ExecProcess {
            stdin: input,
            stdout: Some(output),
            stderr: None,
            terminal: Some(Terminal {
                master: Arc::new(master),
            }),
            child: started.into_child()?,
        });
    }
    let (in_r, in_w) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        let null = std::fs::File::open("/dev/null").map_err(Error::io("opening /dev/null"))?;
        (OwnedFd::from(null), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let io = ChildIo::Fds([in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]);
    let spawned = spawn(p, &io)?;
    drop((in_r, out_w, err_w));
    let started = started(spawned)?;
    Ok(ExecProcess {
        stdin: in_w.map(stream).transpose()?,
        stdout: Some(stream(out_r)?),
        stderr: Some(stream(err_r)?),
        terminal: None,
        child: started.into_child()?,
    })
}

/// A helper whose process has exec'd. Dropped before it becomes a [`Child`] (something
/// failed), it kills the process and reaps the helper.
struct Started {
    helper: libc::pid_t,
    pid: libc::pid_t,
    process: Option<OwnedFd>,
    armed: bool,
}

impl Started {
    fn into_child(mut self) -> Result<Child> {
        let exited = pidfd_open(self.helper)
            // SAFETY: the OwnedFd moved into the AsyncFd keeps the descriptor open,
            // unchanged, for the AsyncFd's whole life.
            .and_then(|fd| {
                unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                    .map_err(std::io::Error::from)
            })
            .map_err(Error::io("watching the exec helper"))?;
        self.armed = false;
        Ok(Child {
            helper: self.helper,
            exited,
            pid: self.pid,
            process: self.process.take(),
            code: None,
        })
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(process) = &self.process {
            kill(process);
        }
        // SAFETY: blocking waitpid on our own child (this is a blocking thread).
        unsafe { libc::waitpid(self.helper, std::ptr::null_mut(), 0) };
    }
}

/// SIGKILL the process a pidfd names.
fn kill(process: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal on a pidfd we own; no siginfo, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            process.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0
}

/// Take the process's pid and wait until it exec'd (else reap the helper: why not).
fn started(spawned: Spawned) -> Result<Started> {
    let Spawned {
        helper,
        mut pid,
        mut err,
    } = spawned;
    let pid = read_pid(&mut pid);
    // The process cannot have been reaped yet unless it already failed (reported below).
    let process = pid.and_then(|p| pidfd_open(p).ok());
    let started = Started {
        helper,
        pid: pid.unwrap_or(0),
        process,
        armed: true,
    };
    report(&mut err)?;
    if pid.is_none() {
        return Err(Error::Failed(
            "exec failed: the helper ended before starting the process".into(),
        ));
    }
    Ok(started)
}
