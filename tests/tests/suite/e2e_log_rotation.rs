//! Container log rotation on the real node (run as root), as kubelet does it: with
//! `--kubelet-arg container-log-max-size=10Ki` and `container-log-max-files=3`, a container
//! printing numbered lines gets its log rotated to `0.log.<YYYYMMDD-hhmmss>`, older rotated
//! files gzipped, never more than 3 files; the files left hold an unbroken run of lines up
//! to the last one (no line lost at a rotation), and the current file keeps being written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use minik_tests::node::{cri_log_lines, file_names, log_path};
use minik_tests::server::{Server, eventually};
use serde_json::{Value, json};

/// Lines the container prints: `line-00000` to `line-<LINES-1>`, 100 at a time with a
/// pause between, about 30 s in all, then one more line a second.
const LINES: u32 = 6000;

/// A file's rotation it belongs to: its name without `.gz` or `.tmp`.
fn base(name: &str) -> &str {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    name.strip_suffix(".gz").unwrap_or(name)
}

fn read(path: &Path) -> String {
    if path.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
        assert!(out.status.success(), "gzip -dc {}", path.display());
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

#[test]
fn logs_are_rotated_gzipped_and_capped_without_losing_lines() {
    let s = Server::start_node(&[
        "--kubelet-arg",
        "container-log-max-size=10Ki",
        "--kubelet-arg",
        "container-log-max-files=3",
    ]);
    let script = format!(
        "i=0; while [ $i -lt {LINES} ]; do printf 'line-%05d\\n' $i; i=$((i+1)); \
         [ $((i % 100)) -eq 0 ] && usleep 500000; done; \
         while true; do echo tick; sleep 1; done"
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chatty"},
        "spec": {"containers": [{"name": "main", "image": "busybox",
            "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", script]}]}});
    s.eventually("creating the pod", || {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &pod.to_string());
        out.status.success().then_some(())
    });
    let p: Value = s.eventually("the pod to run", || {
        let p = s.json_opt(&["get", "pod", "chatty"])?;
        (p["status"]["phase"] == "Running").then_some(p)
    });
    let current: PathBuf = log_path(&p, "main");
    let dir = current.parent().unwrap().to_path_buf();
    let mut rotations: BTreeSet<String> = BTreeSet::new();
    // Until every line was written and at least 3 rotations were seen, never more than 3
    // files; then the state settles (the ticks are well under 10Ki).
    eventually("three rotations and every line written", 180, || {
        let names = file_names(&dir);
        let kept: BTreeSet<&str> = names.iter().map(|n| base(n)).collect();
        assert!(kept.len() <= 3, "more than 3 log files: {names:?}");
        rotations.extend(
            kept.iter()
                .filter(|n| n.starts_with("0.log."))
                .map(|n| n.to_string()),
        );
        let done = read(&current).contains("tick");
        (done && rotations.len() >= 3).then_some(())
    });
    for r in &rotations {
        let stamp = r.strip_prefix("0.log.").unwrap();
        assert!(
            stamp.len() == 15 && stamp.as_bytes()[8] == b'-',
            "rotated name {r} is not 0.log.YYYYMMDD-hhmmss"
        );
    }
    // Rotated files but the newest are gzipped.
    let names = eventually("a settled log directory", 60, || {
        let names = file_names(&dir);
        let rotated: Vec<&String> = names.iter().filter(|n| n.starts_with("0.log.")).collect();
        // Under the size, the current file is not rotated again for minutes (ticks only).
        let small = std::fs::metadata(&current).is_ok_and(|m| m.len() < 10 << 10);
        let settled = small
            && !names.iter().any(|n| n.ends_with(".tmp"))
            && rotated.len() == 2
            && rotated[0].ends_with(".gz")
            && !rotated[1].ends_with(".gz");
        settled.then_some(names)
    });
    // Oldest first: the older rotated, the newest rotated, the current one.
    let order = [names[1].clone(), names[2].clone(), names[0].clone()];
    assert_eq!(names[0], "0.log", "{names:?}");
    let mut numbers = Vec::new();
    for name in &order {
        for line in cri_log_lines(&read(&dir.join(name))) {
            if let Some(n) = line.strip_prefix("line-") {
                numbers.push(n.parse::<u32>().unwrap());
            }
        }
    }
    assert!(!numbers.is_empty(), "{names:?}");
    let first = numbers[0];
    assert!(
        first > 0,
        "the oldest rotated files were not removed: {names:?}"
    );
    let want: Vec<u32> = (first..LINES).collect();
    assert_eq!(
        numbers, want,
        "lines lost or repeated across rotations: {names:?}"
    );
    // The current file is still the one written to.
    let before = cri_log_lines(&read(&current)).len();
    eventually("more ticks in the current log", 30, || {
        (cri_log_lines(&read(&current)).len() > before).then_some(())
    });
}
