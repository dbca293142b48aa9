//! The forks of an exec: the helper joins the container's cgroup and namespaces and forks
//! the process, which takes the container's user and capabilities and execs; the caller
//! collects their output and status, and kills the process at the timeout.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{ExecResult, MAX_OUTPUT, Prepared, Stage, stage_name};
use crate::types::{Error, Result};

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("making a pipe")(std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Fork the helper, collect its output and status.
pub(super) fn run(p: &Prepared, timeout: Duration) -> Result<ExecResult> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    let null = File::open("/dev/null").map_err(Error::io("opening /dev/null"))?;
    let argv: Vec<*const libc::c_char> = p
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = p
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: the child only makes async-signal-safe system calls on data prepared above,
    // then execs or exits with _exit.
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        return Err(Error::io("forking")(std::io::Error::last_os_error()));
    }
    if helper == 0 {
        // SAFETY: in the forked child; see child().
        unsafe {
            child(
                p,
                null.as_raw_fd(),
                out_w.as_raw_fd(),
                err_w.as_raw_fd(),
                pid_w.as_raw_fd(),
                &argv,
                &envp,
            )
        }
    }
    drop(out_w);
    drop(err_w);
    drop(pid_w);
    let pipes = Pipes {
        out: File::from(out_r),
        err: File::from(err_r),
        pid: File::from(pid_r),
    };
    collect(helper, pipes, timeout)
}

/// Report a failed stage and errno on the error pipe, then exit.
unsafe fn fail(err: i32, stage: Stage) -> ! {
    // SAFETY: errno location is thread-local and valid; write and _exit are
    // async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let mut msg = [0u8; 5];
        msg[0] = stage as u8;
        msg[1..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(err, msg.as_ptr().cast(), msg.len());
        libc::_exit(126)
    }
}

/// The helper (and, after its fork, the process): never returns.
unsafe fn child(
    p: &Prepared,
    null: i32,
    out: i32,
    err: i32,
    pid_pipe: i32,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: plain system calls on descriptors and buffers owned by this process.
    unsafe {
        libc::dup2(null, 0);
        libc::dup2(out, 1);
        libc::dup2(out, 2);
        for procs in &p.cgroup_procs {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                fail(err, Stage::Cgroup);
            }
        }
        for ns in &p.namespaces {
            if libc::setns(ns.as_raw_fd(), 0) != 0 {
                fail(err, Stage::Setns);
            }
        }
        let pid = libc::fork();
        if pid < 0 {
            fail(err, Stage::Fork);
        }
        if pid > 0 {
            // The helper: tell the caller the process's pid (to kill it on timeout, so
            // that the helper, not the container's init, reaps it), exit as it did.
            libc::write(pid_pipe, (&raw const pid).cast(), size_of::<libc::pid_t>());
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(126);
                }
            }
            if libc::WIFSIGNALED(status) {
                libc::_exit(128 + libc::WTERMSIG(status));
            }
            libc::_exit(libc::WEXITSTATUS(status));
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            fail(err, Stage::Chdir);
        }
        let privileges = p.privileges;
        for cap in 0..64u64 {
            if privileges.bounding & (1 << cap) == 0 && libc::prctl(libc::PR_CAPBSET_READ, cap) == 1
            {
                libc::prctl(libc::PR_CAPBSET_DROP, cap);
            }
        }
        if libc::setgroups(p.groups.len(), p.groups.as_ptr()) != 0
            || libc::setresgid(p.gid, p.gid, p.gid) != 0
            || libc::prctl(libc::PR_SET_KEEPCAPS, 1) != 0
            || libc::setresuid(p.uid, p.uid, p.uid) != 0
        {
            fail(err, Stage::User);
        }
        // capset(2) with _LINUX_CAPABILITY_VERSION_3: two 32-bit halves.
        let header = [0x2008_0522u32, 0];
        let data = [
            [
                privileges.effective as u32,
                privileges.permitted as u32,
                privileges.inheritable as u32,
            ],
            [
                (privileges.effective >> 32) as u32,
                (privileges.permitted >> 32) as u32,
                (privileges.inheritable >> 32) as u32,
            ],
        ];
        if libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) != 0 {
            fail(err, Stage::Capabilities);
        }
        if privileges.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(err, Stage::Capabilities);
        }
        let mut stage = Stage::NotFound;
        for path in &p.paths {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let errno = *libc::__errno_location();
            if errno != libc::ENOENT && errno != libc::ENOTDIR {
                stage = Stage::Exec;
                break;
            }
        }
        fail(err, stage)
    }
}

/// The reading ends of the helper's pipes: output, failure report, the process's pid.
struct Pipes {
    out: File,
    err: File,
    pid: File,
}

/// Kill the timed-out process (the helper reaps it and exits), or the helper itself when
/// it has not forked yet; then reap the helper.
fn kill_timed_out(helper: i32, pid: &mut File, status: &mut i32) {
    // SAFETY: setting O_NONBLOCK on our own descriptor.
    unsafe { libc::fcntl(pid.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut raw = [0u8; size_of::<libc::pid_t>()];
    let target = match pid.read(&mut raw) {
        Ok(n) if n == raw.len() => libc::pid_t::from_ne_bytes(raw),
        _ => helper,
    };
    // SAFETY: the process is our helper's child, which only the helper reaps (it is
    // waiting for it), so its pid is not reused before the helper exits; then the helper,
    // our own child, is reaped here.
    unsafe {
        libc::kill(target, libc::SIGKILL);
        libc::waitpid(helper, status, 0);
    }
}

/// Read the helper's output until it exits (or the timeout kills it), then its status.
fn collect(helper: i32, pipes: Pipes, timeout: Duration) -> Result<ExecResult> {
    let Pipes {
        mut out,
        mut err,
        mut pid,
    } = pipes;
    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let mut buf = [0u8; 4096];
    let mut open = true;
    let mut status = 0;
    let mut timed_out = false;
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
            kill_timed_out(helper, &mut pid, &mut status);
            timed_out = true;
            break;
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
    if timed_out {
        return Err(Error::Timeout(timeout));
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
    let mut report = Vec::new();
    let _ = err.read_to_end(&mut report);
    if report.len() >= 5 {
        let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
        let cause = std::io::Error::from_raw_os_error(errno);
        return Err(Error::Failed(format!(
            "exec failed: {}: {cause}",
            stage_name(report[0])
        )));
    }
    let exit_code = if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    };
    Ok(ExecResult { exit_code, output })
}

pub(super) fn keep(output: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(output.len());
    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
}
