//! The shim's life once detached: start the container through libcontainer, report, copy
//! its output, wait for its init, record the exit, clean up.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

use libcontainer::container::Container as LcContainer;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::Options;
use super::io::{Copiers, Stdio};
use crate::cgroups::Cgroups;
use crate::container::state::{ContainerDir, Record, Status, read_json, write_json};
use crate::logs::LogFile;
use crate::process::ProcessId;
use crate::types::ContainerState;

/// The exit code containerd reports for a container that could not start.
const START_ERROR_CODE: i32 = 128;
/// How long the output may stay open after the init exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// A started container.
struct Started {
    container: LcContainer,
    init: ProcessId,
    started: SystemTime,
    copiers: Copiers,
}

/// Run the container described by `options.dir`; the shim's exit code.
pub(super) fn run(options: &Options) -> i32 {
    init_tracing();
    let mut sync = match take_stdout() {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "setting up the shim's descriptors");
            return 1;
        }
    };
    let dir = ContainerDir::new(options.dir.clone());
    let outcome = prepare(&dir).and_then(|record| {
        let started = start(options, &dir, &record)?;
        Ok((record, started))
    });
    let (record, started) = match outcome {
        Ok(ok) => ok,
        Err(message) => {
            tracing::error!(%message, "container did not start");
            let state = ContainerState::Exited {
                exit_code: START_ERROR_CODE,
                reason: "StartError".into(),
                message: Some(message),
                started: None,
                finished: SystemTime::now(),
            };
            record_status(&dir, state, None, None);
            let _ = sync.write_all(b"exited\n");
            return 1;
        }
    };
    let shim = ProcessId::of(std::process::id() as i32);
    let running = ContainerState::Running {
        pid: started.init.pid,
        started: started.started,
    };
    record_status(&dir, running, shim, Some(started.init));
    tracing::info!(container = %record.config.id, pid = started.init.pid, "container running");
    // The runtime may be gone: a failed write must not kill the shim.
    let _ = signal_ignore(Signal::SIGPIPE);
    let _ = sync.write_all(b"running\n");
    drop(sync);
    finish(&dir, &record, started);
    0
}

/// Read the container's record and make the shim's surroundings right for it.
fn prepare(dir: &ContainerDir) -> Result<Record, String> {
    std::env::set_current_dir(&dir.dir)
        .map_err(|e| format!("entering {}: {e}", dir.dir.display()))?;
    // Rust ignores SIGPIPE; the container inherits dispositions and must get the default.
    // SAFETY: setting a signal disposition to its default has no handler to be unsafe.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .map_err(|e| format!("resetting SIGPIPE: {e}"))?;
    // Reap whatever the container leaves orphaned (host pid namespace).
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "becoming a subreaper");
    }
    read_json::<Record>(&dir.record())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} is missing", dir.record().display()))
}

/// Create and start the container; its init is then our child.
fn start(options: &Options, dir: &ContainerDir, record: &Record) -> Result<Started, String> {
    let config = &record.config;
    let log = LogFile::open(&config.log_path)
        .map_err(|e| format!("opening the log file {}: {e}", config.log_path.display()))?;
    let stdio = Stdio::prepare(dir, config)?;
    let builder = ContainerBuilder::new(config.id.clone(), SyscallType::default())
        .validate_id()
        .and_then(|b| b.with_root_path(&options.root))
        .map_err(|e| error_chain(&e))?;
    let (builder, outputs) = stdio.attach(dir, builder);
    let mut container = builder
        .as_init(&dir.dir)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| error_chain(&e))?;
    let abandon = |container: &mut LcContainer, message: String| {
        if let Err(e) = container.delete(true) {
            tracing::warn!(error = %error_chain(&e), "deleting a container that failed to start");
        }
        message
    };
    if let Err(e) = container.start() {
        return Err(abandon(&mut container, error_chain(&e)));
    }
    let started = SystemTime::now();
    let Some(init) = container
        .pid()
        .and_then(|p| ProcessId::of_child(p.as_raw()))
    else {
        return Err(abandon(
            &mut container,
            "the container's process vanished at start".into(),
        ));
    };
    match outputs.copy_to(&log) {
        Ok(copiers) => {
            // The kubelet rotates the log of a running container by renaming it.
            if let Err(e) = log.follow_rotation() {
                tracing::warn!(error = %e, "watching the log file for rotation");
            }
            Ok(Started {
                container,
                init,
                started,
                copiers,
            })
        }
        Err(message) => Err(abandon(&mut container, message)),
    }
}

/// Wait for the init to exit, then record the exit and clean up.
fn finish(dir: &ContainerDir, record: &Record, mut started: Started) {
    let (exit_code, killed) = wait_for(Pid::from_raw(started.init.pid));
    let cgroups = Cgroups::detect();
    if record.host_pid {
        cgroups.kill_all(&record.cgroup);
    }
    started.copiers.wait(OUTPUT_DRAIN);
    let oom = cgroups.oom_killed(&record.cgroup, killed);
    let reason = if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    tracing::info!(container = %record.config.id, exit_code, reason, "container exited");
    if let Err(e) = started.container.delete(true) {
        tracing::warn!(error = %error_chain(&e), "deleting libcontainer's state");
    }
    let state = ContainerState::Exited {
        exit_code,
        reason: reason.into(),
        message: None,
        started: Some(started.started),
        finished: SystemTime::now(),
    };
    record_status(dir, state, None, None);
}

/// Reap children until `init` exits: its exit code (128 + signal when killed) and whether
/// it died of SIGKILL.
fn wait_for(init: Pid) -> (i32, bool) {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init => return (code, false),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => {
                return (128 + sig as i32, sig == Signal::SIGKILL);
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "waiting for the container's process");
                return (255, false);
            }
        }
    }
}

fn record_status(
    dir: &ContainerDir,
    state: ContainerState,
    shim: Option<ProcessId>,
    init: Option<ProcessId>,
) {
    let status = Status { state, shim, init };
    if let Err(e) = write_json(&dir.status(), &status) {
        tracing::error!(error = %e, "recording the container's status");
    }
}

/// Keep stdout (the runtime's pipe) as a close-on-exec file and put /dev/null on 0 and 1.
fn take_stdout() -> std::io::Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates fd 1 into a new descriptor we then own.
    let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created by fcntl and is owned by nothing else.
    let sync = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let null = File::options()
        .read(true)
        .write(true)
        .open(Path::new("/dev/null"))?;
    for target in [0, 1] {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(sync)
}

fn signal_ignore(sig: Signal) -> nix::Result<SigHandler> {
    // SAFETY: SIG_IGN installs no handler.
    unsafe { signal(sig, SigHandler::SigIgn) }
}

/// The shim logs (its own and libcontainer's) to stderr, which is the container's shim.log.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("MINIK_SHIM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// An error with its sources, "a: b: c".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}
