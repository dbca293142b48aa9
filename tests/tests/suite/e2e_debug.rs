//! `kubectl debug` against a real node, with the machine's kubectl and PyPI's newest: the
//! ephemeral container it adds through the pod's ephemeralcontainers subresource runs once
//! in the PID namespace of its target (its `ps` sees the app's `sleep 3600`), its status is
//! written to ephemeralContainerStatuses and `kubectl logs -c` reads its output; with `-it`
//! kubectl attaches to its terminal. The API
//! refuses ephemeral containers with ports or an unknown target (kube-rs), and deleting the
//! pod stops an ephemeral container still running.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use minik_tests::node::{create, pids_with_cmdline, pod, pod_of, ready_node};
use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::{Value, json};

/// The status of ephemeral container `name` of pod `web`, once `check` holds for it.
fn ephemeral_status(s: &Server, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    s.eventually(&format!("{name}: {what}"), || {
        let p = pod(s, "web")?;
        p["status"]["ephemeralContainerStatuses"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .filter(|c| check(c))
            .cloned()
    })
}

/// Add ephemeral container `name` running `argv` (targeting the app when `target`).
fn debug(k: &Kubectl, name: &str, target: bool, argv: &[&str]) {
    let mut args = vec![
        "debug",
        "web",
        "--image=busybox",
        "--image-pull-policy=IfNotPresent",
        "-c",
        name,
        "--attach=false",
    ];
    if target {
        args.push("--target=app");
    }
    args.push("--");
    args.extend_from_slice(argv);
    ok(k.run(&args));
}

/// kube-rs: adding `container` through the subresource is refused with `part` in the
/// message.
fn refused(s: &Server, container: Value, part: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pods: Api<Pod> = Api::default_namespaced(s.kube_client().await);
        let patch = json!({"spec": {"ephemeralContainers": [container]}});
        let err = pods
            .patch_ephemeral_containers("web", &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .expect_err("refused");
        let kube::Error::Api(status) = err else {
            panic!("{err:?}");
        };
        assert_eq!(status.code, 422, "{status:?}");
        assert!(status.message.contains(part), "{}", status.message);
    });
}

#[test]
fn kubectl_debug_runs_an_ephemeral_container_in_its_targets_pid_namespace() {
    let s = Server::start_node(&[]);
    ready_node(&s);
    create(
        &s,
        &pod_of(
            "web",
            "busybox",
            json!({"name": "app", "command": ["sleep", "3600"]}),
            json!({}),
        ),
    );
    s.eventually("app running", || {
        let p = pod(&s, "web")?;
        p["status"]["containerStatuses"][0]["state"]["running"]
            .is_object()
            .then_some(())
    });

    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        let name = if i == 0 {
            "dbg".to_string()
        } else {
            format!("dbg{i}")
        };
        debug(k, &name, true, &["sh", "-c", "ps; sleep 1"]);
        let status = ephemeral_status(&s, &name, "terminated", |c| {
            c["state"]["terminated"].is_object()
        });
        let ended = &status["state"]["terminated"];
        assert_eq!(ended["exitCode"], 0, "{}: {status}", k.bin);
        assert_eq!(ended["reason"], "Completed", "{status}");
        assert_eq!(status["ready"], false, "{status}");
        assert_eq!(status["restartCount"], 0, "{status}");
        assert_eq!(
            status["image"], "docker.io/library/busybox:latest",
            "{status}"
        );
        assert!(
            status["imageID"].as_str().is_some_and(|i| !i.is_empty()),
            "{status}"
        );
        assert!(
            status["containerID"]
                .as_str()
                .is_some_and(|i| i.contains("://")),
            "{status}"
        );
        // The target's processes are visible, the app's sleep being its PID 1, and only
        // they: not the host's.
        let logs = ok(k.run(&["logs", "web", "-c", &name]));
        let app = logs.lines().find(|l| l.contains("sleep 3600"));
        assert!(
            app.is_some_and(|l| l.trim_start().starts_with("1 ")),
            "{}: {logs}",
            k.bin
        );
        assert!(logs.contains("sh -c ps; sleep 1"), "{logs}");
        assert!(!logs.contains("minik"), "host processes seen: {logs}");
    }

    // `kubectl debug -it`: kubectl attaches to the ephemeral container's terminal (script
    // gives kubectl one; its stdin stays open, or script would type an end-of-file). The
    // container keeps printing, so whenever kubectl attaches it sees the target's sleep.
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        let line = format!(
            "{} debug -it web --image=busybox --image-pull-policy=IfNotPresent --target=app -c it{i} -- sh -c 'while true; do ps; tty; sleep 1; done'",
            k.bin
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("KUBECONFIG", &s.kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("script");
        let _open = child.stdin.take();
        let mut out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut said = String::new();
        while !(said.contains("sleep 3600") && said.contains("/dev/pts/")) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(chunk) = rx.recv_timeout(left) else {
                break;
            };
            said.push_str(&String::from_utf8_lossy(&chunk));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(said.contains("sleep 3600"), "{}: {said}", k.bin);
        assert!(said.contains("/dev/pts/"), "{}: {said}", k.bin);
    }

    // The app containers are untouched; the pod stays Running and ready.
    let p = pod(&s, "web").expect("pod");
    assert_eq!(p["status"]["phase"], "Running", "{p}");
    assert_eq!(
        p["status"]["containerStatuses"][0]["restartCount"], 0,
        "{p}"
    );
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true, "{p}");

    refused(
        &s,
        json!({"name": "ported", "image": "busybox", "ports": [{"containerPort": 80}]}),
        "].ports: Forbidden: cannot be set for an Ephemeral Container",
    );
    refused(
        &s,
        json!({"name": "lost", "image": "busybox", "targetContainerName": "nope"}),
        "targetContainerName: Not found: \"nope\"",
    );

    // One that keeps running (no target: the pod's own namespaces) stops with the pod.
    let kubectl = &Kubectl::each(&s)[0];
    debug(kubectl, "idle", false, &["sleep", "3601"]);
    ephemeral_status(&s, "idle", "running", |c| c["state"]["running"].is_object());
    assert!(!pids_with_cmdline("sleep 3601").is_empty());
    let deleted = s.kubectl(&["delete", "pod", "web", "--grace-period=1", "--timeout=60s"]);
    assert!(deleted.status.success(), "{}", text(&deleted));
    s.eventually("the ephemeral container's process gone", || {
        pids_with_cmdline("sleep 3601").is_empty().then_some(())
    });
}
