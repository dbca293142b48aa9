//! Pod sandboxes: the network, IPC and UTS namespaces a pod's containers share, held without
//! a pause process by bind mounting the namespace files of a short-lived thread that
//! unshared them onto `<run>/sandboxes/<id>/{net,ipc,uts}`. The thread also sets the pod's
//! hostname and brings the loopback interface up. Each sandbox also gets its /dev/shm (a
//! tmpfs at `shm/`, shared by its containers as the IPC namespace is) and the /etc/hostname
//! file its containers see (`hostname`). The record (`<state>/sandboxes/<id>.json`) persists
//! across restarts; the mounts persist as long as the host runs.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;

use crate::container::state::{read_json, write_json};
use crate::types::{Error, Result, Sandbox, SandboxConfig};

/// A sandbox's directory under `<run>/sandboxes/`.
#[derive(Debug, Clone)]
pub(crate) struct SandboxDir {
    pub dir: PathBuf,
}

impl SandboxDir {
    pub(crate) fn net(&self) -> PathBuf {
        self.dir.join("net")
    }
    pub(crate) fn ipc(&self) -> PathBuf {
        self.dir.join("ipc")
    }
    pub(crate) fn uts(&self) -> PathBuf {
        self.dir.join("uts")
    }
    pub(crate) fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
    pub(crate) fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
}

/// Where sandboxes live.
#[derive(Debug, Clone)]
pub(crate) struct Sandboxes {
    /// `<state>/sandboxes`: one JSON record per sandbox.
    records: PathBuf,
    /// `<run>/sandboxes`: namespace files and shm.
    run: PathBuf,
}

impl Sandboxes {
    pub(crate) fn new(state: &Path, run: &Path) -> Result<Sandboxes> {
        let sandboxes = Sandboxes {
            records: state.join("sandboxes"),
            run: run.join("sandboxes"),
        };
        for dir in [&sandboxes.records, &sandboxes.run] {
            fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        Ok(sandboxes)
    }

    pub(crate) fn dir(&self, id: &str) -> SandboxDir {
        SandboxDir {
            dir: self.run.join(id),
        }
    }

    fn record(&self, id: &str) -> PathBuf {
        self.records.join(format!("{id}.json"))
    }

    pub(crate) fn get(&self, id: &str) -> Option<Sandbox> {
        if validate_id(id).is_err() {
            return None;
        }
        match read_json(&self.record(id)) {
            Ok(sandbox) => sandbox,
            Err(e) => {
                tracing::warn!(sandbox = id, error = %e, "unreadable sandbox record");
                None
            }
        }
    }

    pub(crate) fn list(&self) -> Vec<Sandbox> {
        let Ok(entries) = fs::read_dir(&self.records) else {
            return Vec::new();
        };
        let mut sandboxes: Vec<Sandbox> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                self.get(name.strip_suffix(".json")?)
            })
            .collect();
        sandboxes.sort_by(|a, b| {
            a.created
                .cmp(&b.created)
                .then(a.config.id.cmp(&b.config.id))
        });
        sandboxes
    }

    /// Create a sandbox; creating one that exists with the same config returns it.
    pub(crate) fn create(&self, config: &SandboxConfig) -> Result<Sandbox> {
        validate_id(&config.id)?;
        if let Some(existing) = self.get(&config.id) {
            if existing.config == config.clone() {
                return Ok(existing);
            }
            return Err(Error::Invalid(format!(
                "sandbox {} exists with another configuration",
                config.id
            )));
        }
        let dir = self.dir(&config.id);
        let result = self.set_up(config, &dir);
        if result.is_err() {
            tear_down(&dir);
        }
        let netns = result?;
        let sandbox = Sandbox {
            config: config.clone(),
            netns,
            created: SystemTime::now(),
            ip: None,
        };
        if let Err(e) = write_json(&self.record(&config.id), &sandbox) {
            tear_down(&dir);
            return Err(e);
        }
        tracing::info!(sandbox = %config.id, host_network = config.host_network, "sandbox created");
        Ok(sandbox)
    }

    fn set_up(&self, config: &SandboxConfig, dir: &SandboxDir) -> Result<Option<PathBuf>> {
        let io = |what: &Path| Error::io(format!("creating {}", what.display()));
        fs::create_dir_all(&dir.dir).map_err(io(&dir.dir))?;
        fs::write(dir.hostname(), format!("{}\n", config.hostname)).map_err(io(&dir.hostname()))?;
        if !config.host_ipc {
            fs::create_dir_all(dir.shm()).map_err(io(&dir.shm()))?;
            mount(
                Some("shm"),
                &dir.shm(),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            )
            .map_err(|e| Error::Failed(format!("mounting the sandbox's /dev/shm: {e}")))?;
        }
        let mut flags = CloneFlags::empty();
        if !config.host_network {
            flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
        }
        if !config.host_ipc {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        if flags.is_empty() {
            return Ok(None);
        }
        let targets = [
            (CloneFlags::CLONE_NEWNET, "net", dir.net()),
            (CloneFlags::CLONE_NEWUTS, "uts", dir.uts()),
            (CloneFlags::CLONE_NEWIPC, "ipc", dir.ipc()),
        ];
        let mut wanted = Vec::new();
        for (flag, name, path) in targets {
            if flags.contains(flag) {
                fs::File::create(&path).map_err(io(&path))?;
                wanted.push((name, path));
            }
        }
        let hostname = config.hostname.clone();
        let thread_wanted = wanted.clone();
        std::thread::Builder::new()
            .name("minik-sandbox-ns".into())
            .spawn(move || hold_namespaces(flags, &hostname, &thread_wanted))
            .map_err(Error::io("starting the namespace thread"))?
            .join()
            .map_err(|_| Error::Failed("the namespace thread panicked".into()))??;
        Ok((!config.host_network).then(|| dir.net()))
    }

    /// Record the sandbox's address (given by the pod network).
    pub(crate) fn set_ip(&self, id: &str, ip: Option<String>) -> Result<()> {
        let mut sandbox = self
            .get(id)
            .ok_or_else(|| Error::SandboxNotFound(id.into()))?;
        sandbox.ip = ip;
        write_json(&self.record(id), &sandbox)
    }

    /// After a host reboot the records remain but the namespaces are gone: set up fresh
    /// ones at the same paths, so the pod's containers can be started again.
    pub(crate) fn restore(&self) {
        for sandbox in self.list() {
            let config = &sandbox.config;
            let dir = self.dir(&config.id);
            let intact = (config.host_network || is_namespace(&dir.net()))
                && (config.host_ipc || is_namespace(&dir.ipc()))
                && dir.hostname().exists();
            if intact {
                continue;
            }
            tracing::info!(sandbox = %config.id, "sandbox namespaces are gone; setting them up again");
            tear_down(&dir);
            if let Err(e) = self.set_up(config, &dir) {
                tear_down(&dir);
                tracing::warn!(sandbox = %config.id, error = %e, "restoring a sandbox");
            }
        }
    }

    /// Remove a sandbox (the caller checked its containers are gone).
    pub(crate) fn remove(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let record = self.record(id);
        if !record.exists() && !self.run.join(id).exists() {
            return Err(Error::SandboxNotFound(id.into()));
        }
        tear_down(&self.dir(id));
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", record.display()))(e)),
        }
        tracing::info!(sandbox = id, "sandbox removed");
        Ok(())
    }
}

/// In a thread of its own: unshare the namespaces, name the host, bring lo up, and bind
/// mount this thread's namespace files onto `wanted`. The namespaces outlive the thread.
fn hold_namespaces(flags: CloneFlags, hostname: &str, wanted: &[(&str, PathBuf)]) -> Result<()> {
    nix::sched::unshare(flags).map_err(|e| Error::Failed(format!("unshare: {e}")))?;
    if flags.contains(CloneFlags::CLONE_NEWUTS) {
        nix::unistd::sethostname(hostname)
            .map_err(|e| Error::Failed(format!("setting the hostname {hostname:?}: {e}")))?;
    }
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        loopback_up()?;
    }
    for (name, target) in wanted {
        let source = format!("/proc/thread-self/ns/{name}");
        mount(
            Some(source.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            Error::Failed(format!(
                "bind mounting {source} on {}: {e}",
                target.display()
            ))
        })?;
    }
    Ok(())
}

/// Set IFF_UP on `lo` of the calling thread's network namespace.
fn loopback_up() -> Result<()> {
    /// struct ifreq with the ifr_flags member of its union.
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::Failed(format!("socket for lo: {e}")))?;
    let mut request = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    for (dst, src) in request.name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    let fd = socket.as_raw_fd();
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq, which `request` is.
    unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(Error::io("reading lo's flags")(
                std::io::Error::last_os_error(),
            ));
        }
        request.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(Error::io("bringing lo up")(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Whether `path` is a namespace file (a bind mount of nsfs).
fn is_namespace(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // f_type's integer type differs between architectures and C libraries.
    #[allow(clippy::unnecessary_cast)]
    let is_nsfs = |s: nix::sys::statfs::Statfs| s.filesystem_type().0 as i64 == NSFS_MAGIC;
    nix::sys::statfs::statfs(path).is_ok_and(is_nsfs)
}

/// Unmount and delete what a sandbox holds under `<run>` (best effort, logged).
fn tear_down(dir: &SandboxDir) {
    for path in [dir.net(), dir.uts(), dir.ipc(), dir.shm()] {
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "unmounting"),
        }
    }
    match fs::remove_dir_all(&dir.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.dir.display(), error = %e, "removing a sandbox directory")
        }
    }
}

/// Ids become file names: no separators, no dot names.
pub(crate) fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("invalid id {id:?}")))
    }
}
