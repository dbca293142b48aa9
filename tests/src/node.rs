//! Helpers for tests of the real node: the test images (scripts/images.sh), processes and
//! CRI log files as the machine shows them, and cleaning up after a server that ran
//! containers (its pods deleted and their containers stopped through the API; whatever is
//! left — processes in the pods' cgroups, shims, mounts — killed and unmounted).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::server::Server;

/// Build the test images with scripts/images.sh into `dir`: docker.io/library/busybox:latest
/// and docker.io/minik/httpd:latest, each as an OCI-layout and a docker-archive tarball;
/// their paths.
pub fn build_images(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("images dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/images.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("run scripts/images.sh");
    assert!(
        out.status.success(),
        "scripts/images.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The command line of process `pid`, arguments joined by spaces.
fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter(|p| cmdline(*p).is_some_and(|c| c.contains(needle)))
        .collect()
}

/// The lines a container wrote, from its CRI-format log file
/// (`<time> <stream> <P|F> <content>`).
pub fn cri_log_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (_time, _stream, _tag) = (parts.next()?, parts.next()?, parts.next()?);
            Some(parts.next().unwrap_or("").to_string())
        })
        .collect()
}

/// The log file kubelet keeps for a container's first run:
/// /var/log/pods/<namespace>_<pod>_<uid>/<container>/0.log.
pub fn log_path(pod: &serde_json::Value, container: &str) -> PathBuf {
    let m = &pod["metadata"];
    let dir = format!(
        "{}_{}_{}",
        m["namespace"].as_str().unwrap_or("default"),
        m["name"].as_str().unwrap_or(""),
        m["uid"].as_str().unwrap_or("")
    );
    Path::new("/var/log/pods")
        .join(dir)
        .join(container)
        .join("0.log")
}

/// The ids of the sandboxes the runtime under `data` records (`.../sandboxes/<id>.json`).
pub fn sandbox_ids(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![data.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && path.components().count() < data.components().count() + 4 {
                dirs.push(path);
            } else if dir.file_name().is_some_and(|n| n == "sandboxes")
                && path.extension().is_some_and(|x| x == "json")
                && let Some(stem) = path.file_stem()
            {
                out.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Delete every pod through the API and wait (at most 60 s) until the runtime has no
/// sandbox left; the uids of the pods there were.
pub fn drain(s: &mut Server) -> Vec<String> {
    if !s.running() {
        return Vec::new();
    }
    let uids: Vec<String> = s
        .json_opt(&["get", "pods", "--all-namespaces"])
        .and_then(|l| l["items"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    let _ = s.kubectl(&[
        "delete",
        "pods",
        "--all",
        "--all-namespaces",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
    let data = s.dir.path().join("data");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !sandbox_ids(&data).is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    uids
}

/// The cgroup directories of pod sandbox `id` in every mounted hierarchy.
fn pod_cgroups(id: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut roots: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    roots.push("/sys/fs/cgroup".into());
    roots
        .into_iter()
        .map(|r| r.join("kubepods").join(format!("pod{id}")))
        .filter(|p| p.is_dir())
        .collect()
}

fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// After the server stopped: kill what is left of the containers the runtime under `dir`
/// ran (processes in the pods' cgroups, shims naming `dir`), unmount what is mounted under
/// `dir` and the pods' /run/minik sandbox directories, and remove the pods' cgroups and
/// the log directories of `pods` (uids) and of the sandboxes left.
pub fn reap(dir: &Path, pods: &[String]) {
    let ids = sandbox_ids(&dir.join("data"));
    for id in &ids {
        for cg in pod_cgroups(id) {
            let mut stack = vec![cg];
            while let Some(c) = stack.pop() {
                let procs = std::fs::read_to_string(c.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
                    kill(pid);
                }
                if let Ok(children) = std::fs::read_dir(&c) {
                    stack.extend(
                        children
                            .filter_map(Result::ok)
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
            }
        }
    }
    let needle = dir.to_string_lossy().into_owned();
    for pid in pids_with_cmdline(&needle) {
        kill(pid);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut prefixes = vec![needle];
    prefixes.extend(ids.iter().map(|id| format!("/run/minik/sandboxes/{id}")));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| prefixes.iter().any(|p| m.starts_with(p.as_str())))
        .map(str::to_string)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
    for id in &ids {
        let _ = std::fs::remove_dir_all(format!("/run/minik/sandboxes/{id}"));
        for cg in pod_cgroups(id) {
            remove_cgroup(&cg);
        }
    }
    let logs: Vec<PathBuf> = std::fs::read_dir("/var/log/pods")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    for log in logs {
        let name = log
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ids
            .iter()
            .chain(pods)
            .any(|uid| name.ends_with(&format!("_{uid}")))
        {
            let _ = std::fs::remove_dir_all(&log);
        }
    }
}

/// Remove a cgroup directory and its children, deepest first (cgroups are removed with
/// rmdir, their files being virtual).
fn remove_cgroup(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for c in children.filter_map(Result::ok) {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&c.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Create `obj` with `kubectl apply` (retrying while the namespace's default service account
/// is not there yet).
pub fn create(s: &Server, obj: &serde_json::Value) {
    s.eventually("creating an object", || {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &obj.to_string());
        out.status.success().then_some(())
    });
}

/// The pod `name` as JSON, if it exists.
pub fn pod(s: &Server, name: &str) -> Option<serde_json::Value> {
    s.json_opt(&["get", "pod", name])
}

/// The status of a pod's first container.
pub fn container(pod: &serde_json::Value) -> &serde_json::Value {
    &pod["status"]["containerStatuses"][0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_are_parsed() {
        let text = "2024-01-01T00:00:00.000000001Z stdout F hello world\n\
                    2024-01-01T00:00:00.000000002Z stderr P part\n\
                    2024-01-01T00:00:00.000000003Z stdout F \n";
        assert_eq!(cri_log_lines(text), ["hello world", "part", ""]);
    }
}
