//! Helpers for tests of the real node: the test images (scripts/images.sh), processes (see
//! host.rs) and CRI log files as the machine shows them, and cleaning up after a server that ran
//! containers (its pods deleted and their containers stopped through the API; whatever is
//! left — processes in the pods' cgroups, shims, mounts — killed and unmounted); and the
//! pod helpers the node tests share: waiting for the node to be Ready, making, creating and
//! reading pods, their conditions and events.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use crate::host::pids_with_cmdline;
use crate::host::{cgroup_dirs, kill, remove_cgroup, unmount_under};
use crate::server::Server;

/// Build the test images with scripts/images.sh into `dir`: docker.io/library/busybox:latest
/// and docker.io/minik/httpd:latest, each as an OCI-layout and a docker-archive tarball;
/// their paths.
pub fn build_images(dir: &Path) -> Vec<PathBuf> {
    build_named_images(dir, &[])
}

/// Build scripts/images.sh's images `names` (busybox, httpd, pause; its default set when
/// empty) into `dir`; the tarballs' paths.
pub fn build_named_images(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("images dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/images.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .args(names)
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

/// The tarball named `name` (`busybox.oci.tar`) among `images`, as `build_images` lists them.
pub fn image_tarball(images: &[PathBuf], name: &str) -> PathBuf {
    images
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .cloned()
        .unwrap_or_else(|| panic!("scripts/images.sh made no {name}: {images:?}"))
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
pub fn log_path(pod: &Value, container: &str) -> PathBuf {
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

/// The names of the files in `dir`, sorted (none when it cannot be read).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
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
    cgroup_dirs(&format!("kubepods/pod{id}"))
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
    unmount_under(&prefixes);
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

/// Create `obj` with `kubectl apply` (retrying while the namespace's default service account
/// is not there yet).
pub fn create(s: &Server, obj: &Value) {
    s.eventually("creating an object", || {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &obj.to_string());
        out.status.success().then_some(())
    });
}

/// The pod `name` as JSON, if it exists.
pub fn pod(s: &Server, name: &str) -> Option<Value> {
    s.json_opt(&["get", "pod", name])
}

/// The status of a pod's first container.
pub fn container(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

/// A pod of one container "main" of `image` (imagePullPolicy IfNotPresent), with the fields
/// of `container` merged into the container and those of `spec` into the pod's spec.
pub fn pod_of(name: &str, image: &str, container: Value, spec: Value) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": image,
            "imagePullPolicy": "IfNotPresent"}]}});
    if let (Some(c), Some(extra)) = (
        pod["spec"]["containers"][0].as_object_mut(),
        container.as_object(),
    ) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    if let (Some(p), Some(extra)) = (pod["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    pod
}

/// The server's only node, once it is Ready.
pub fn ready_node(s: &Server) -> Value {
    let list = s.until(&["get", "nodes"], "the node to be Ready", |l| {
        l.as_ref()
            .and_then(|l| l["items"].as_array())
            .is_some_and(|items| items.len() == 1 && condition(&items[0], "Ready") == "True")
    });
    list.expect("nodes")["items"][0].clone()
}

/// The status of the object's condition `type_` ("True", "False"), "" without it.
pub fn condition(obj: &Value, type_: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The (reason, message) of the events about pod `name`.
pub fn events(s: &Server, name: &str) -> Vec<(String, String)> {
    s.json_opt(&["get", "events"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name && e["involvedObject"]["kind"] == "Pod")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Wait for an event about pod `name` of `reason` whose message has `part`; its message.
pub fn event_with(s: &Server, name: &str, reason: &str, part: &str) -> String {
    s.eventually(
        &format!("a {reason} event with {part:?} about {name}"),
        || {
            events(s, name)
                .into_iter()
                .find(|(r, m)| r == reason && m.contains(part))
                .map(|(_, m)| m)
        },
    )
}

/// Run `attach` (a `kubectl attach -i`), write `line` to its stdin and wait (at most 60 s)
/// for a line `want` on its output; then stop it (kubectl stays attached while the
/// container runs, as on any cluster). Whether `want` came.
pub fn attach_answers(mut attach: Command, line: &str, want: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let Ok(mut child) = attach
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let written = stdin.write_all(format!("{line}\n").as_bytes()).is_ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = false;
    while written && !seen {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => seen = l == want,
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

/// GET `url` from the host (busybox wget), once it answers.
pub fn host_get(s: &Server, url: &str) -> String {
    s.eventually(&format!("{url} answers the host"), || {
        let out = Command::new("timeout")
            .args(["5", "busybox", "wget", "-qO-", url])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
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
