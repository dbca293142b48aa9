//! Terminal resizes, on the shim's side: the runtime writes "<width> <height>\n" lines into
//! the container's `resize` named pipe (one write each, so lines never interleave); a
//! thread of the shim reads them and sets the size on the terminal's master. The pipe
//! lives in the container's directory and the shim holds it open for its whole life, so a
//! new minik resizes the terminals of containers an earlier one started.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;

use crate::tty::{parse_resize, set_size};

/// Apply the sizes read from `pipe` to the terminal `master`, on a thread, until the shim
/// exits.
pub(super) fn apply(pipe: OwnedFd, master: OwnedFd) {
    std::thread::spawn(move || {
        for line in BufReader::new(File::from(pipe)).lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the resize pipe");
                    return;
                }
            };
            match parse_resize(&line) {
                Some((width, height)) => {
                    if let Err(e) = set_size(&master, width, height) {
                        tracing::warn!(error = %e, width, height, "resizing the terminal");
                    }
                }
                None => tracing::warn!(%line, "malformed resize request"),
            }
        }
    });
}
