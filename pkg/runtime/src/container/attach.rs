//! Attaching to a running container and port-forwarding into its sandbox:
//! - its stdin: the named pipe `stdin` in its directory (containers made with
//!   `stdin: true`), which its shim holds open (see `crate::shim`), opened for writing;
//! - its terminal's size: a line into the named pipe `resize` its shim reads (`tty: true`);
//! - a connection to a port in its sandbox's network namespace (`crate::dial`).
//!
//! Both pipes are opened without blocking: with no reader (the shim is gone) the open
//! fails at once (ENXIO) instead of waiting. A shim of a minik without resizes made no
//! `resize` pipe.

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::Runtime;
use crate::fdstream::FdStream;
use crate::types::{Error, Result};

impl Runtime {
    /// The container's stdin, to write to (what is written reaches the container; closing
    /// it does not close the container's stdin). An error when the container was not
    /// created with `stdin: true` or its shim is gone.
    pub fn attach_stdin(&self, id: &str) -> Result<FdStream> {
        let record = self
            .record(id)
            .ok_or_else(|| Error::ContainerNotFound(id.into()))?;
        if !record.config.stdin {
            return Err(Error::Invalid(format!(
                "container {id} was not created with stdin (stdin: true): nothing to attach to"
            )));
        }
        let fd = open_writer(&self.dir(id).stdin(), id, "stdin")?;
        FdStream::new(fd).map_err(Error::io("registering the container's stdin"))
    }

    /// Set the size of container `id`'s terminal (`tty: true`), `width` columns by
    /// `height` rows.
    pub fn resize_console(&self, id: &str, width: u16, height: u16) -> Result<()> {
        let record = self
            .record(id)
            .ok_or_else(|| Error::ContainerNotFound(id.into()))?;
        if !record.config.tty {
            return Err(Error::Invalid(format!(
                "container {id} has no terminal (tty: true) to resize"
            )));
        }
        let fd = open_writer(&self.dir(id).resize(), id, "resize")?;
        let line = crate::tty::format_resize(width, height);
        // One write of a few bytes into a pipe is atomic: requests never interleave.
        std::fs::File::from(fd)
            .write_all(line.as_bytes())
            .map_err(Error::io(format!("resizing container {id}'s terminal")))
    }

    /// A connection to 127.0.0.1:`port` (or [::1]) inside sandbox `sandbox_id`'s network
    /// namespace (the node's, for a host-network sandbox).
    pub async fn dial(&self, sandbox_id: &str, port: u16) -> Result<TcpStream> {
        let sandbox = self
            .sandbox(sandbox_id)
            .ok_or_else(|| Error::SandboxNotFound(sandbox_id.into()))?;
        crate::dial::dial(sandbox.netns, sandbox_id, port).await
    }
}

/// Open named pipe `path` for writing without blocking.
fn open_writer(path: &Path, id: &str, what: &str) -> Result<OwnedFd> {
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    match opened {
        Ok(file) => Ok(file.into()),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Err(Error::Invalid(format!(
            "container {id} is not running (nothing reads its {what} pipe)"
        ))),
        // Its shim predates the pipe (a minik without terminal resizes started it).
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(Error::Invalid(format!(
            "container {id} has no {what} pipe: its shim does not take it"
        ))),
        Err(e) => Err(Error::io(format!("opening {}", path.display()))(e)),
    }
}
