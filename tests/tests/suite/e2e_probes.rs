//! Probes and lifecycle hooks on the real node of `minik server` (run as root): a failing
//! liveness exec probe restarts its container (an Unhealthy event, then Killing); httpGet
//! readiness on the test httpd image makes the pod Ready, and a probe of a missing path
//! keeps it not Ready (Unhealthy with the 404); tcpSocket readiness; a postStart hook runs
//! before the container goes on, and a preStop hook runs before the container gets TERM.

use minik_tests::node::{condition, container, create, event_with, pod, pod_of, ready_node};
use minik_tests::node::{cri_log_lines, log_path};
use minik_tests::server::{Server, ok};
use serde_json::json;

/// A server with a node whose kubelet server takes any free port (tests run in parallel).
fn node() -> Server {
    Server::start_node(&["--kubelet-arg", "port=0"])
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let s = node();
    ready_node(&s);
    create(
        &s,
        &pod_of(
            "unlively",
            "busybox",
            json!({"command": ["sh", "-c", "echo up; while true; do sleep 1; done"],
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                    "periodSeconds": 1, "failureThreshold": 2}}),
            json!({"terminationGracePeriodSeconds": 2}),
        ),
    );
    let p = s.eventually("the container to be restarted", || {
        let p = pod(&s, "unlively")?;
        (container(&p)["restartCount"].as_i64()? >= 1).then_some(p)
    });
    assert!(container(&p)["lastState"]["terminated"].is_object(), "{p}");
    let message = event_with(&s, "unlively", "Unhealthy", "Liveness probe failed");
    assert!(message.contains("/tmp/healthy"), "{message}");
    event_with(
        &s,
        "unlively",
        "Killing",
        "failed liveness probe, will be restarted",
    );
}

#[test]
fn readiness_probes_gate_the_pods_readiness() {
    let s = node();
    ready_node(&s);
    let httpd = "docker.io/minik/httpd:latest";
    let http_probe = |path: &str| {
        json!({"ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": path, "port": "http"}, "periodSeconds": 1}})
    };
    create(
        &s,
        &pod_of("web-ok", httpd, http_probe("/index.html"), json!({})),
    );
    create(
        &s,
        &pod_of("web-404", httpd, http_probe("/missing"), json!({})),
    );
    create(
        &s,
        &pod_of(
            "web-tcp",
            httpd,
            json!({"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}),
            json!({}),
        ),
    );
    create(
        &s,
        &pod_of(
            "tcp-closed",
            "busybox",
            json!({"command": ["sh", "-c", "while true; do sleep 1; done"],
                "readinessProbe": {"tcpSocket": {"port": 8081}, "periodSeconds": 1}}),
            json!({"terminationGracePeriodSeconds": 1}),
        ),
    );
    for name in ["web-ok", "web-tcp"] {
        let p = s.eventually(&format!("{name} to be Ready"), || {
            let p = pod(&s, name)?;
            (condition(&p, "Ready") == "True").then_some(p)
        });
        assert_eq!(container(&p)["ready"], true, "{p}");
        assert_eq!(condition(&p, "ContainersReady"), "True", "{p}");
    }
    let message = event_with(&s, "web-404", "Unhealthy", "Readiness probe failed");
    assert!(message.contains("404"), "{message}");
    event_with(&s, "tcp-closed", "Unhealthy", "Readiness probe failed");
    for name in ["web-404", "tcp-closed"] {
        let p = pod(&s, name).expect("pod");
        assert!(container(&p)["state"]["running"].is_object(), "{p}");
        assert_eq!(container(&p)["ready"], false, "{p}");
        assert_eq!(condition(&p, "Ready"), "False", "{p}");
    }
}

#[test]
fn post_start_and_pre_stop_hooks_run_in_the_container() {
    let s = node();
    ready_node(&s);
    let hooks = s.dir.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    // The container waits for what postStart wrote, and on TERM prints what preStop wrote.
    let script = "until [ -f /hooks/post ]; do sleep 0.2; done; cat /hooks/post; \
        trap 'cat /hooks/pre; exit 0' TERM; while true; do sleep 1; done";
    create(
        &s,
        &pod_of(
            "hooked",
            "busybox",
            json!({"command": ["sh", "-c", script],
                "volumeMounts": [{"name": "hooks", "mountPath": "/hooks"}],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo from postStart > /hooks/post"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", "echo from preStop > /hooks/pre"]}}}}),
            json!({"volumes": [{"name": "hooks",
                "hostPath": {"path": hooks.to_str().unwrap(), "type": "Directory"}}]}),
        ),
    );
    let running = s.eventually("the container to print what postStart wrote", || {
        let p = pod(&s, "hooked")?;
        let lines = cri_log_lines(&std::fs::read_to_string(log_path(&p, "main")).ok()?);
        lines.iter().any(|l| l == "from postStart").then_some(p)
    });
    assert!(!hooks.join("pre").exists());
    let mut log = std::fs::File::open(log_path(&running, "main")).unwrap();
    ok(s.kubectl(&["delete", "pod", "hooked", "--timeout=60s"]));
    assert_eq!(
        std::fs::read_to_string(hooks.join("pre")).unwrap(),
        "from preStop\n"
    );
    let mut written = String::new();
    std::io::Read::read_to_string(&mut log, &mut written).unwrap();
    let lines = cri_log_lines(&written);
    assert!(lines.iter().any(|l| l == "from preStop"), "{lines:?}");
}

#[test]
fn a_failing_post_start_hook_kills_the_container() {
    let s = node();
    ready_node(&s);
    create(
        &s,
        &pod_of(
            "bad-hook",
            "busybox",
            json!({"command": ["sh", "-c", "while true; do sleep 1; done"],
                "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo no; exit 3"]}}}}),
            json!({"terminationGracePeriodSeconds": 1}),
        ),
    );
    event_with(&s, "bad-hook", "FailedPostStartHook", "exited with error");
    s.eventually("the container to be restarted", || {
        let p = pod(&s, "bad-hook")?;
        (container(&p)["restartCount"].as_i64()? >= 1).then_some(())
    });
}
