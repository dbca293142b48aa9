//! Garbage collection on the real node (run as root), as kubelet does it: a crash-looping
//! container keeps only its latest run and at most one dead one on disk (state directories
//! and log files), and with `--kubelet-arg image-gc-high-threshold=1` (and low 0, no
//! minimum age) an image no container uses is removed at the next collection (a restart
//! of the node runs one at once), while the image a running pod uses and the pinned
//! air-gap images stay, and the Node gets a FreeDiskSpaceFailed warning since usage cannot
//! go down to 0%.

use minik_tests::node::{create, file_names, log_path, pod};
use std::path::{Path, PathBuf};
use std::process::Command;

use minik_tests::minik;
use minik_tests::node::build_images;
use minik_tests::server::{Server, eventually};
use serde_json::{Value, json};

/// The runtime's containers of pod `uid` under `data`: (attempt, exited).
fn containers_on_disk(data: &Path, uid: &str) -> Vec<(u64, bool)> {
    let dir = data.join("agent/containers/containers");
    let mut out: Vec<(u64, bool)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let record: Value =
                serde_json::from_slice(&std::fs::read(e.path().join("container.json")).ok()?)
                    .ok()?;
            if record["config"]["sandbox_id"] != uid {
                return None;
            }
            let status: Value = std::fs::read(e.path().join("status.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            let exited = status["state"].get("Exited").is_some();
            Some((record["config"]["attempt"].as_u64()?, exited))
        })
        .collect();
    out.sort();
    out
}

/// The names of the files in a container's log directory.
fn log_files(pod: &Value, container: &str) -> Vec<String> {
    let log = log_path(pod, container);
    log.parent().map(file_names).unwrap_or_default()
}

#[test]
fn a_crash_looping_container_keeps_one_dead_run() {
    let s = Server::start_node(&[]);
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
            "spec": {"containers": [{"name": "main", "image": "busybox",
                "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "echo run; exit 1"]}]}}),
    );
    let data = s.dir.path().join("data");
    // In CrashLoopBackOff after two restarts, the collection (every minute) leaves the
    // latest run alone: the runs before it are gone, state and logs.
    let (p, runs) = eventually(
        "only the latest run of a crash-looping container left",
        300,
        || {
            let p = pod(&s, "crasher")?;
            let status = &p["status"]["containerStatuses"][0];
            let restarts = status["restartCount"].as_u64()?;
            let uid = p["metadata"]["uid"].as_str()?;
            let runs = containers_on_disk(&data, uid);
            let waiting = status["state"]["waiting"].is_object();
            let logs = log_files(&p, "main");
            (restarts >= 2
                && waiting
                && runs.len() == 1
                && runs[0] == (restarts, true)
                && logs == [format!("{restarts}.log")])
            .then_some((p, runs))
        },
    );
    assert!(runs[0].0 >= 2, "{runs:?}");
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1,
        "{p}"
    );
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A docker-archive tarball of a new image `tag`: the test busybox image with its own
/// config (so its own id), sharing the busybox layer.
fn variant(busybox_docker: &Path, work: &Path, tag: &str) -> PathBuf {
    let dir = work.join(tag.replace(['/', ':'], "_"));
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(busybox_docker)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap().to_string();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(dir.join(&config_name)).unwrap()).unwrap();
    config["config"]["Labels"] = json!({"minik.test/image": tag});
    let bytes = serde_json::to_vec(&config).unwrap();
    let digest = sha256_hex(&bytes);
    std::fs::remove_file(dir.join(&config_name)).unwrap();
    std::fs::write(dir.join(format!("{digest}.json")), &bytes).unwrap();
    manifest[0]["Config"] = json!(format!("{digest}.json"));
    manifest[0]["RepoTags"] = json!([tag]);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = work.join(format!("{}.tar", tag.replace(['/', ':'], "_")));
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    out
}

fn image_names(data: &str) -> Vec<String> {
    let out = minik(&["image", "ls", "--data-dir", data]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            Some(format!("{}:{}", cols.next()?, cols.next()?))
        })
        .collect()
}

#[test]
fn unused_images_are_collected_over_the_high_threshold() {
    let mut s = Server::start_node(&[
        "--kubelet-arg",
        "image-gc-high-threshold=1",
        "--kubelet-arg",
        "image-gc-low-threshold=0",
        "--kubelet-arg",
        "minimum-image-ttl-duration=0s",
    ]);
    let work = tempfile::tempdir().unwrap();
    let images = build_images(&work.path().join("images"));
    let busybox = images
        .iter()
        .find(|p| p.ends_with("busybox.docker.tar"))
        .expect("busybox.docker.tar");
    let used = variant(busybox, work.path(), "example.com/gc/used:1");
    let unused = variant(busybox, work.path(), "example.com/gc/unused:1");
    let data = s.dir.path().join("data");
    let d = data.to_str().unwrap().to_string();
    let out = minik(&[
        "image",
        "import",
        "--data-dir",
        &d,
        used.to_str().unwrap(),
        unused.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let names = image_names(&d);
    for want in ["example.com/gc/used:1", "example.com/gc/unused:1"] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
            "spec": {"containers": [{"name": "main", "image": "example.com/gc/used:1",
                "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}}),
    );
    s.eventually("the pod to run", || {
        let p = pod(&s, "user")?;
        (p["status"]["phase"] == "Running").then_some(())
    });
    // A restart collects at once (usage is over 1%): the unused image goes.
    s.restart(false);
    let names = s.eventually("the unused image to be collected", || {
        let names = image_names(&d);
        (!names.iter().any(|n| n == "example.com/gc/unused:1")).then_some(names)
    });
    for want in [
        "example.com/gc/used:1",
        "docker.io/library/busybox:latest",
        "docker.io/minik/httpd:latest",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    // Usage cannot get down to 0%: kubelet's warning on the Node.
    let event = s.eventually("a FreeDiskSpaceFailed event", || {
        let list = s.json_opt(&["get", "events", "--all-namespaces"])?;
        list["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "FreeDiskSpaceFailed")
            .cloned()
    });
    assert_eq!(event["involvedObject"]["kind"], "Node", "{event}");
    assert_eq!(event["type"], "Warning", "{event}");
    let p = pod(&s, "user").unwrap();
    assert_eq!(p["status"]["phase"], "Running", "{p}");
}
