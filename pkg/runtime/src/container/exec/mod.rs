//! Running a command in a running container (the CRI's ExecSync, `kubectl exec`, exec
//! probes and hooks), as `runc exec` does it: the new process joins the container's cgroup
//! and its ipc, uts, net, pid and mount namespaces (found through its init's
//! /proc/<pid>/ns), takes the container's user, groups, capabilities and no_new_privs, and
//! runs `argv` with the container's environment (plus `env`) in its working directory.
//!
//! A forked helper moves itself into the cgroup and joins the namespaces, then forks the
//! process itself (so it is inside the container's pid namespace); the helper waits for it
//! and exits with its status. Everything the children need is prepared before the fork
//! (they only make system calls).
//!
//! - process.rs: the forks, shared by both kinds of exec.
//! - capture.rs: output (stdout and stderr together) kept up to a cap; at the timeout the
//!   process is killed and the helper reaps it (probes, hooks).
//! - interactive.rs: `kubectl exec`: the process's pipes or terminal as async streams, its
//!   exit awaited, killed when dropped.

use std::ffi::CString;
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use crate::cgroups::Cgroups;
use crate::types::{ContainerState, Error, Result};

use super::Runtime;

mod capture;
mod interactive;
mod process;

pub use interactive::{ExecProcess, Terminal};

/// The most output kept (kubelet keeps 10 KiB of a probe's output).
pub const MAX_OUTPUT: usize = 10 * 1024;

/// How a command run in a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Its exit code (128 + the signal when a signal ended it).
    pub exit_code: i32,
    /// Its stdout and stderr together, the first `MAX_OUTPUT` bytes.
    pub output: Vec<u8>,
}

/// The namespaces joined, in order (mnt last: it changes what paths mean).
const NAMESPACES: [&str; 5] = ["ipc", "uts", "net", "pid", "mnt"];

/// Where setting the process up failed (reported by the children through a pipe).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Stage {
    Cgroup = 1,
    Setns,
    Fork,
    Chdir,
    User,
    Capabilities,
    NotFound,
    Exec,
    Terminal,
    Stdio,
}

fn stage_name(stage: u8) -> &'static str {
    match stage {
        1 => "joining the container's cgroup",
        2 => "joining the container's namespaces",
        3 => "forking",
        4 => "changing to the working directory",
        5 => "setting the user",
        6 => "setting capabilities",
        7 => "executable file not found in $PATH",
        9 => "opening a terminal in the container",
        10 => "setting up the standard streams",
        _ => "exec",
    }
}

/// What the container's init has: capability sets and no_new_privs, from /proc/<pid>/status.
#[derive(Debug, Default, Clone, Copy)]
struct Privileges {
    inheritable: u64,
    permitted: u64,
    effective: u64,
    bounding: u64,
    no_new_privs: bool,
}

fn privileges(pid: i32) -> Result<Privileges> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    let mut p = Privileges::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let hex = || u64::from_str_radix(value.trim(), 16).unwrap_or(0);
        match key {
            "CapInh" => p.inheritable = hex(),
            "CapPrm" => p.permitted = hex(),
            "CapEff" => p.effective = hex(),
            "CapBnd" => p.bounding = hex(),
            "NoNewPrivs" => p.no_new_privs = value.trim() == "1",
            _ => {}
        }
    }
    Ok(p)
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{s:?} contains a NUL byte")))
}

/// The environment: the container's, with `extra` ("NAME=value") overriding.
fn environment(base: &[String], extra: &[String]) -> Vec<String> {
    let name = |e: &String| e.split_once('=').map_or(e.clone(), |(n, _)| n.to_string());
    let mut out: Vec<String> = base
        .iter()
        .filter(|b| !extra.iter().any(|e| name(e) == name(b)))
        .cloned()
        .collect();
    out.extend(extra.iter().cloned());
    out
}

/// The paths to try for `program`: itself when it has a slash, else each $PATH entry.
fn candidates(program: &str, env: &[String]) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{program}", d.trim_end_matches('/')))
        .collect()
}

/// The container's cgroup directories that exist (one per hierarchy on v1).
fn cgroup_dirs(cgroups: &Cgroups, path: &str) -> Vec<PathBuf> {
    let relative = path.trim_start_matches('/');
    let roots = match cgroups {
        Cgroups::V2 { root } => vec![root.clone()],
        Cgroups::V1 { mounts, .. } => mounts.clone(),
    };
    roots
        .into_iter()
        .map(|r| r.join(relative))
        .filter(|d| d.join("cgroup.procs").exists())
        .collect()
}

/// Everything the children use, made before forking.
struct Prepared {
    namespaces: Vec<File>,
    cgroup_procs: Vec<File>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    paths: Vec<CString>,
    cwd: CString,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    privileges: Privileges,
}

impl Runtime {
    /// Run `argv` in running container `id` with its environment plus `env`
    /// ("NAME=value"); kill it after `timeout` (then Err(Error::Timeout)).
    pub(super) async fn exec_in(
        &self,
        id: &str,
        argv: &[String],
        env: &[String],
        timeout: Duration,
    ) -> Result<ExecResult> {
        let prepared = self.prepare_exec(id, argv, env)?;
        let id = id.to_string();
        let result = tokio::task::spawn_blocking(move || capture::run(&prepared, timeout))
            .await
            .map_err(|e| Error::Failed(format!("exec task: {e}")))?;
        match &result {
            Ok(r) => tracing::debug!(container = id, exit_code = r.exit_code, "exec finished"),
            Err(e) => tracing::debug!(container = id, error = %e, "exec failed"),
        }
        result
    }

    /// What the forks need to run `argv` in running container `id` with its environment
    /// plus `env`.
    fn prepare_exec(&self, id: &str, argv: &[String], env: &[String]) -> Result<Prepared> {
        let record = self
            .record(id)
            .ok_or_else(|| Error::ContainerNotFound(id.into()))?;
        let container = self
            .container(id)
            .ok_or_else(|| Error::ContainerNotFound(id.into()))?;
        let ContainerState::Running { pid, .. } = container.state else {
            return Err(Error::Invalid(format!("container {id} is not running")));
        };
        let program = argv
            .first()
            .ok_or_else(|| Error::Invalid("no command given".into()))?;
        let config = &record.config;
        let environment = environment(&config.env, env);
        let mut namespaces = Vec::new();
        for ns in NAMESPACES {
            let path = format!("/proc/{pid}/ns/{ns}");
            namespaces.push(File::open(&path).map_err(Error::io(format!("opening {path}")))?);
        }
        let mut cgroup_procs = Vec::new();
        for dir in cgroup_dirs(&self.inner.cgroups, &record.cgroup) {
            let procs = dir.join("cgroup.procs");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&procs)
                .map_err(Error::io(format!("opening {}", procs.display())))?;
            cgroup_procs.push(file);
        }
        let security = &config.security;
        let prepared = Prepared {
            namespaces,
            cgroup_procs,
            argv: argv.iter().map(|a| cstring(a)).collect::<Result<_>>()?,
            envp: environment
                .iter()
                .map(|e| cstring(e))
                .collect::<Result<_>>()?,
            paths: candidates(program, &environment)
                .iter()
                .map(|p| cstring(p))
                .collect::<Result<_>>()?,
            cwd: cstring(if config.working_dir.is_empty() {
                "/"
            } else {
                &config.working_dir
            })?,
            uid: security.uid,
            gid: security.gid,
            groups: security.supplemental_groups.clone(),
            privileges: privileges(pid)?,
        };
        Ok(prepared)
    }
}

#[cfg(test)]
mod tests {
    use super::capture::keep;
    use super::*;

    #[test]
    fn extra_env_overrides_the_containers() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let env = environment(&base, &["A=2".to_string(), "B=3".to_string()]);
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn programs_are_looked_up_in_path() {
        let env = vec!["PATH=/usr/bin:/bin/".to_string()];
        assert_eq!(candidates("cat", &env), vec!["/usr/bin/cat", "/bin/cat"]);
        assert_eq!(candidates("/bin/cat", &env), vec!["/bin/cat"]);
    }

    #[test]
    fn output_is_capped() {
        let mut out = Vec::new();
        keep(&mut out, &[1; 8000]);
        keep(&mut out, &[2; 8000]);
        assert_eq!(out.len(), MAX_OUTPUT);
    }
}
