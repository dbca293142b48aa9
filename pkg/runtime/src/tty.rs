//! Terminal sizes: setting one on a pty's master, and the line format a container's shim
//! reads resizes in ("<width> <height>\n", from its `resize` named pipe).

use std::os::fd::{AsRawFd, OwnedFd};

use crate::types::{Error, Result};

/// TIOCSWINSZ on a terminal's master: `width` columns, `height` rows (the foreground
/// process group gets SIGWINCH).
pub(crate) fn set_size(master: &OwnedFd, width: u16, height: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer given.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(Error::io("resizing the terminal")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A resize request as the shim reads it.
pub(crate) fn format_resize(width: u16, height: u16) -> String {
    format!("{width} {height}\n")
}

/// "<width> <height>" (without its newline); None when malformed.
pub(crate) fn parse_resize(line: &str) -> Option<(u16, u16)> {
    let mut fields = line.split_whitespace();
    let width = fields.next()?.parse().ok()?;
    let height = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_lines_round_trip() {
        let line = format_resize(120, 40);
        assert_eq!(parse_resize(line.trim_end()), Some((120, 40)));
        assert_eq!(parse_resize("80"), None);
        assert_eq!(parse_resize("80 24 1"), None);
        assert_eq!(parse_resize("-1 24"), None);
    }
}
