//! The forks of an exec, shared by the captured (capture.rs) and the interactive
//! (interactive.rs) kinds: the helper closes every descriptor it was not given, joins the
//! container's cgroup and namespaces (and, for a terminal, opens a pty in the container's
//! /dev/pts and sends its master to the caller), then forks the process, which sets its
//! standard streams up, takes the container's user and capabilities and execs. The helper
//! waits for it and exits as it did (128 + the signal when one ended it).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{Prepared, Stage, stage_name};
use crate::types::{Error, Result};

/// What the process's standard streams are.
pub(super) enum ChildIo {
    /// These descriptors on 0, 1 and 2.
    Fds([RawFd; 3]),
    /// A new terminal in the container (its session's controlling terminal on 0, 1 and 2),
    /// whose master the helper sends over this unix socket; of this size.
    Terminal(RawFd, libc::winsize),
}

/// A forked helper.
pub(super) struct Spawned {
    pub helper: libc::pid_t,
    /// The process's pid, written by the helper once it forked.
    pub pid: File,
    /// The children's failure report; end-of-file with nothing read once the process has
    /// exec'd (the helper closes its end once forked, the process's closes on exec).
    pub err: File,
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("making a pipe")(std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Fork the helper. The caller closes its copies of the descriptors in `io` afterwards.
pub(super) fn spawn(p: &Prepared, io: &ChildIo) -> Result<Spawned> {
    let (err_r, err_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
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
    // The helper keeps only these (other threads' descriptors, open at the fork, would
    // otherwise stay open as long as it lives: another exec's pipes among them).
    let mut keep: Vec<RawFd> = vec![0, 1, 2, err_w.as_raw_fd(), pid_w.as_raw_fd()];
    keep.extend(p.namespaces.iter().map(|f| f.as_raw_fd()));
    keep.extend(p.cgroup_procs.iter().map(|f| f.as_raw_fd()));
    match io {
        ChildIo::Fds(fds) => keep.extend(fds),
        ChildIo::Terminal(socket, _) => keep.push(*socket),
    }
    keep.sort_unstable();
    keep.dedup();
    let forked = Forked {
        io,
        err: err_w.as_raw_fd(),
        pid_pipe: pid_w.as_raw_fd(),
        keep: &keep,
        argv: &argv,
        envp: &envp,
    };
    // SAFETY: the child only makes async-signal-safe system calls on data prepared above,
    // then execs or exits with _exit.
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        return Err(Error::io("forking")(std::io::Error::last_os_error()));
    }
    if helper == 0 {
        // SAFETY: in the forked child; see child().
        unsafe { child(p, &forked) }
    }
    Ok(Spawned {
        helper,
        pid: File::from(pid_r),
        err: File::from(err_r),
    })
}

/// Read the children's failure report to its end: Err when they reported one.
pub(super) fn report(err: &mut File) -> Result<()> {
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
    Ok(())
}

/// The process's pid as the helper sent it (None: the helper ended before forking).
pub(super) fn read_pid(pid: &mut File) -> Option<libc::pid_t> {
    let mut raw = [0u8; size_of::<libc::pid_t>()];
    match pid.read(&mut raw) {
        Ok(n) if n == raw.len() => Some(libc::pid_t::from_ne_bytes(raw)),
        _ => None,
    }
}

/// An exit status as an exit code: 128 + the signal when one ended the process.
pub(super) fn exit_code(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// What the children use besides `Prepared`, all made before the fork.
struct Forked<'a> {
    io: &'a ChildIo,
    err: RawFd,
    pid_pipe: RawFd,
    /// Descriptors the helper keeps, sorted.
    keep: &'a [RawFd],
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
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

/// Close every descriptor but `keep` (sorted).
unsafe fn close_others(keep: &[RawFd]) {
    let mut next = 0u32;
    for &fd in keep {
        let fd = fd as u32;
        if fd > next {
            // SAFETY: close_range takes two numbers and flags.
            unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0) };
        }
        next = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0) };
}

/// Open a new pty in the container's /dev/pts (the helper is in its mount namespace), send
/// the master over `socket`, return the slave.
unsafe fn open_terminal(err: RawFd, socket: RawFd, size: &libc::winsize) -> RawFd {
    // SAFETY: plain system calls on descriptors and buffers owned by this process;
    // the CMSG macros only compute addresses inside `space`.
    unsafe {
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
        let master = libc::open(c"/dev/ptmx".as_ptr(), flags);
        if master < 0 {
            fail(err, Stage::Terminal);
        }
        let unlock: libc::c_int = 0;
        if libc::ioctl(master, libc::TIOCSPTLCK, &unlock) != 0 {
            fail(err, Stage::Terminal);
        }
        let slave = libc::ioctl(master, libc::TIOCGPTPEER, flags);
        if slave < 0 || libc::ioctl(master, libc::TIOCSWINSZ, size) != 0 {
            fail(err, Stage::Terminal);
        }
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut space = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), master);
        if libc::sendmsg(socket, &msg, 0) < 0 {
            fail(err, Stage::Terminal);
        }
        libc::close(master);
        slave
    }
}

/// The helper (and, after its fork, the process): never returns.
unsafe fn child(p: &Prepared, f: &Forked<'_>) -> ! {
    let err = f.err;
    // SAFETY: plain system calls on descriptors and buffers owned by this process.
    unsafe {
        close_others(f.keep);
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
        let slave = match f.io {
            ChildIo::Terminal(socket, size) => open_terminal(err, *socket, size),
            ChildIo::Fds(_) => -1,
        };
        let pid = libc::fork();
        if pid < 0 {
            fail(err, Stage::Fork);
        }
        if pid > 0 {
            helper(f, pid, slave);
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        match f.io {
            ChildIo::Fds(fds) => {
                for (target, fd) in fds.iter().enumerate() {
                    if libc::dup2(*fd, target as i32) < 0 {
                        fail(err, Stage::Stdio);
                    }
                }
            }
            ChildIo::Terminal(..) => {
                if libc::setsid() < 0
                    || libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0
                    || libc::dup2(slave, 0) < 0
                    || libc::dup2(slave, 1) < 0
                    || libc::dup2(slave, 2) < 0
                {
                    fail(err, Stage::Terminal);
                }
                // The terminal belongs to the user the process runs as (runc's
                // fixStdioPermissions); its group stays devpts' tty group.
                libc::fchown(0, p.uid, u32::MAX);
            }
        }
        become_the_containers_user(p, err);
        let mut stage = Stage::NotFound;
        for path in &p.paths {
            libc::execve(path.as_ptr(), f.argv.as_ptr(), f.envp.as_ptr());
            let errno = *libc::__errno_location();
            if errno != libc::ENOENT && errno != libc::ENOTDIR {
                stage = Stage::Exec;
                break;
            }
        }
        fail(err, stage)
    }
}

/// The helper once forked: close what only the process uses, tell the caller the
/// process's pid (to kill it, so that the helper, not the container's init, reaps it),
/// wait for it and exit as it did.
unsafe fn helper(f: &Forked<'_>, pid: libc::pid_t, slave: RawFd) -> ! {
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        libc::close(f.err);
        if slave >= 0 {
            libc::close(slave);
        }
        match f.io {
            ChildIo::Fds(fds) => {
                for fd in fds {
                    libc::close(*fd);
                }
            }
            ChildIo::Terminal(socket, _) => {
                libc::close(*socket);
            }
        }
        libc::write(
            f.pid_pipe,
            (&raw const pid).cast(),
            size_of::<libc::pid_t>(),
        );
        libc::close(f.pid_pipe);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if *libc::__errno_location() != libc::EINTR {
                libc::_exit(126);
            }
        }
        libc::_exit(exit_code(status))
    }
}

/// chdir, drop the bounding set to the container's, take its user and groups, then its
/// capabilities and no_new_privs.
unsafe fn become_the_containers_user(p: &Prepared, err: RawFd) {
    // SAFETY: plain system calls on buffers owned by this process.
    unsafe {
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
    }
}
