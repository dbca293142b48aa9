//! The container's standard streams, on the shim's side.
//!
//! Without a terminal, stdout and stderr are pipes whose read ends the shim copies into the
//! CRI log. With one, libcontainer creates a pty in the container and hands its master over
//! the console socket (`console.sock`); everything read from it is logged as stdout. stdin
//! is `/dev/null`, or with `stdin: true` the named pipe `stdin` in the container's
//! directory: the shim holds it open read-write so the container never sees end-of-file,
//! and an attach writes into it. With a terminal, the named pipe `resize` takes the
//! terminal's new sizes (see resize.rs).

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::stat::Mode;

use crate::container::state::ContainerDir;
use crate::logs::{LogFile, Stream};
use crate::types::ContainerConfig;

/// The container's streams before it starts.
pub(super) enum Stdio {
    Pipes {
        stdin: OwnedFd,
        stdout: (OwnedFd, OwnedFd),
        stderr: (OwnedFd, OwnedFd),
    },
    Terminal {
        /// The stdin named pipe, when kept open.
        stdin: Option<OwnedFd>,
        console: UnixListener,
        /// The resize named pipe.
        resize: OwnedFd,
    },
}

/// The read ends the shim copies from once the container runs.
pub(super) enum Outputs {
    Pipes {
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Terminal {
        stdin: Option<OwnedFd>,
        console: UnixListener,
        resize: OwnedFd,
    },
}

/// Copiers running; `wait` collects them.
pub(super) struct Copiers {
    done: mpsc::Receiver<()>,
    count: usize,
}

impl Stdio {
    /// Set the streams up. The shim's working directory must be the container's directory
    /// (the console socket is bound by a relative name: full paths may be too long).
    pub(super) fn prepare(dir: &ContainerDir, config: &ContainerConfig) -> Result<Stdio, String> {
        let stdin = if config.stdin {
            Some(open_stdin_fifo(dir)?)
        } else {
            None
        };
        if config.tty {
            let _ = std::fs::remove_file("console.sock");
            let console = UnixListener::bind("console.sock")
                .map_err(|e| format!("binding the console socket: {e}"))?;
            let resize = open_fifo(&dir.resize(), "resize")?;
            return Ok(Stdio::Terminal {
                stdin,
                console,
                resize,
            });
        }
        let stdin = match stdin {
            Some(fd) => fd,
            None => File::open("/dev/null")
                .map_err(|e| format!("opening /dev/null: {e}"))?
                .into(),
        };
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        Ok(Stdio::Pipes {
            stdin,
            stdout: pipe()?,
            stderr: pipe()?,
        })
    }

    /// Hand the container's ends to libcontainer; keep ours.
    pub(super) fn attach(
        self,
        dir: &ContainerDir,
        builder: ContainerBuilder,
    ) -> (ContainerBuilder, Outputs) {
        match self {
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => (
                builder
                    .with_stdin(stdin)
                    .with_stdout(stdout.1)
                    .with_stderr(stderr.1),
                Outputs::Pipes {
                    stdout: stdout.0,
                    stderr: stderr.0,
                },
            ),
            Stdio::Terminal {
                stdin,
                console,
                resize,
            } => (
                builder.with_console_socket(Some(dir.console_socket())),
                Outputs::Terminal {
                    stdin,
                    console,
                    resize,
                },
            ),
        }
    }
}

impl Outputs {
    /// Start copying the container's output into its log (and the stdin pipe into its
    /// terminal).
    pub(super) fn copy_to(self, log: &LogFile) -> Result<Copiers, String> {
        let (tx, done) = mpsc::channel();
        let spawn = |stream: Stream, fd: OwnedFd| {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                if let Err(e) = log.copy(stream, File::from(fd)) {
                    tracing::warn!(?stream, error = %e, "copying container output");
                }
                let _ = tx.send(());
            });
        };
        match self {
            Outputs::Pipes { stdout, stderr } => {
                spawn(Stream::Stdout, stdout);
                spawn(Stream::Stderr, stderr);
                Ok(Copiers { done, count: 2 })
            }
            Outputs::Terminal {
                stdin,
                console,
                resize,
            } => {
                let master = receive_terminal(&console)?;
                drop(console);
                let _ = std::fs::remove_file("console.sock");
                let sized = master
                    .try_clone()
                    .map_err(|e| format!("duplicating the terminal: {e}"))?;
                super::resize::apply(resize, sized);
                if let Some(stdin) = stdin {
                    let input = master
                        .try_clone()
                        .map_err(|e| format!("duplicating the terminal: {e}"))?;
                    std::thread::spawn(move || {
                        let (mut from, mut to) = (File::from(stdin), File::from(input));
                        if let Err(e) = std::io::copy(&mut from, &mut to) {
                            tracing::debug!(error = %e, "stdin copy ended");
                        }
                    });
                }
                spawn(Stream::Stdout, master);
                Ok(Copiers { done, count: 1 })
            }
        }
    }
}

impl Copiers {
    /// Wait until the output streams have ended, at most `limit` (a process outside the
    /// container might hold one open).
    pub(super) fn wait(self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        for _ in 0..self.count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.done.recv_timeout(left).is_err() {
                tracing::warn!("container output still open after its exit; log may miss its tail");
                return;
            }
        }
    }
}

/// Create the stdin named pipe and open it read-write (never end-of-file, never blocking).
fn open_stdin_fifo(dir: &ContainerDir) -> Result<OwnedFd, String> {
    open_fifo(&dir.stdin(), "stdin")
}

/// Create named pipe `path` (mode 0600) and open it read-write: it never reads
/// end-of-file, and writers can open it (without blocking) as long as the shim lives.
fn open_fifo(path: &std::path::Path, what: &str) -> Result<OwnedFd, String> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
        .map_err(|e| format!("creating the {what} pipe: {e}"))?;
    let fd = nix::fcntl::open(path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening the {what} pipe: {e}"))?;
    Ok(fd)
}

/// Accept libcontainer's connection on the console socket and take the terminal master it
/// sends. libcontainer connects and sends during `build()`, so both are already queued.
fn receive_terminal(console: &UnixListener) -> Result<OwnedFd, String> {
    console
        .set_nonblocking(true)
        .map_err(|e| format!("console socket: {e}"))?;
    let (stream, _) = console
        .accept()
        .map_err(|e| format!("no terminal was handed over: {e}"))?;
    receive_fd(&stream)
}

/// Receive one descriptor (SCM_RIGHTS) on `stream`.
pub(crate) fn receive_fd(stream: &UnixStream) -> Result<OwnedFd, String> {
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("console socket: {e}"))?;
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving the terminal: {e}"))?;
    let cmsgs = message
        .cmsgs()
        .map_err(|e| format!("receiving the terminal: {e}"))?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS just installed this descriptor in our table; we own it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err("the console socket carried no terminal".into())
}
