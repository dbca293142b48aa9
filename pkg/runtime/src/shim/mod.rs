//! `minik shim --dir <container dir> --root <libcontainer root>`: the process that runs one
//! container, so that containers outlive minik.
//!
//! The runtime starts it with stdout a pipe and stderr the container's `shim.log`. It forks
//! at once: the parent exits (the runtime reaps it) and the child, in a new session and
//! reparented to init, is the shim. The shim creates and starts the container through
//! libcontainer (the container's init is the shim's child), records Running or a
//! StartError in `status.json`, writes one line on the pipe ("running" or "exited") and
//! closes it. It then copies the container's output into the CRI log, waits for the init
//! to exit, records the exit (code, reason, OOM kill), deletes libcontainer's state and
//! cgroup, and exits.

mod io;
mod resize;
mod run;

pub(crate) use io::receive_fd;

use std::path::PathBuf;

use nix::unistd::{ForkResult, fork, setsid};

/// The shim's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// The container's state directory (the OCI bundle).
    pub dir: PathBuf,
    /// libcontainer's state root (`<run>/containers`).
    pub root: PathBuf,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
        let mut dir = None;
        let mut root = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--dir" => dir = Some(PathBuf::from(value)),
                "--root" => root = Some(PathBuf::from(value)),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Options {
            dir: dir.ok_or("--dir is required")?,
            root: root.ok_or("--root is required")?,
        })
    }

    /// The arguments that give these options back.
    pub(crate) fn to_args(&self) -> Vec<String> {
        vec![
            "--dir".into(),
            self.dir.to_string_lossy().into_owned(),
            "--root".into(),
            self.root.to_string_lossy().into_owned(),
        ]
    }
}

/// `minik shim ...`: run one container and record how it ended; the process exit code.
///
/// Must be called while the process has a single thread (before any runtime starts): it
/// forks.
pub fn shim_main(args: &[String]) -> i32 {
    // The shim outlives minik: it keeps none of minik's descriptors (a lock a parent of
    // minik holds, its listening sockets), only its own 0, 1 and 2.
    // SAFETY: close_range(2) takes integers; nothing in this process uses a descriptor
    // above 2 yet.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let options = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("minik shim: {e}");
            return 2;
        }
    };
    // SAFETY: the caller guarantees a single-threaded process; the child only continues
    // this function.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            eprintln!("minik shim: fork: {e}");
            return 1;
        }
    }
    if let Err(e) = setsid() {
        eprintln!("minik shim: setsid: {e}");
    }
    run::run(&options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip() {
        let options = Options {
            dir: "/s/containers/abc".into(),
            root: "/run/minik/containers".into(),
        };
        assert_eq!(Options::parse(&options.to_args()).unwrap(), options);
        assert!(Options::parse(&["--dir".into()]).is_err());
        assert!(Options::parse(&["--bogus".into(), "x".into()]).is_err());
        assert!(Options::parse(&[]).is_err());
    }
}
