//! grpc probes on the real node of `minik server` (run as root): a hostNetwork pod (its
//! address is the node's, 127.0.0.1) whose probes ask a gRPC health server this test runs on
//! 127.0.0.1. Readiness follows its service's status without restarting the container;
//! liveness keeps the container running while the server says SERVING and restarts it
//! (Unhealthy "Liveness probe failed: ...", then Killing) once it says NOT_SERVING.

use minik_tests::grpc_health::{HealthServer, NOT_SERVING, SERVING};
use minik_tests::node::{condition, container, create, event_with, pod, ready_node};
use minik_tests::server::Server;
use serde_json::{Value, json};

fn restarts(pod: &Value) -> i64 {
    container(pod)["restartCount"].as_i64().unwrap_or(-1)
}

#[test]
fn grpc_probes_follow_the_health_service() {
    let health = HealthServer::start();
    health.set("", SERVING);
    health.set("ready", SERVING);
    let s = Server::start_node(&["--node-ip", "127.0.0.1", "--kubelet-arg", "port=0"]);
    ready_node(&s);
    let probe = |service: Option<&str>| {
        let mut grpc = json!({"port": health.port()});
        if let Some(service) = service {
            grpc["service"] = json!(service);
        }
        json!({"grpc": grpc, "periodSeconds": 1, "failureThreshold": 2})
    };
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "grpc-probed"},
            "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox",
                    "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
                    "livenessProbe": probe(None), "readinessProbe": probe(Some("ready"))}]}}),
    );
    let p = s.eventually("the pod to be Ready", || {
        let p = pod(&s, "grpc-probed")?;
        (condition(&p, "Ready") == "True").then_some(p)
    });
    assert_eq!(p["status"]["podIP"], "127.0.0.1", "{p}");

    // Healthy: several liveness checks later the container has not been restarted.
    let seen = health.checks("");
    s.eventually("more liveness checks", || {
        (health.checks("") >= seen + 3).then_some(())
    });
    let p = pod(&s, "grpc-probed").expect("the pod");
    assert_eq!(restarts(&p), 0, "{p}");
    assert_eq!(condition(&p, "Ready"), "True", "{p}");

    // Not ready: the pod leaves Ready, the container stays.
    health.set("ready", NOT_SERVING);
    let p = s.eventually("the pod to be not Ready", || {
        let p = pod(&s, "grpc-probed")?;
        (condition(&p, "Ready") == "False").then_some(p)
    });
    assert!(container(&p)["state"]["running"].is_object(), "{p}");
    assert_eq!(restarts(&p), 0, "{p}");
    event_with(
        &s,
        "grpc-probed",
        "Unhealthy",
        r#"Readiness probe failed: service unhealthy (responded with "NOT_SERVING")"#,
    );

    // Not alive: the container is restarted.
    health.set("", NOT_SERVING);
    let p = s.eventually("the container to be restarted", || {
        let p = pod(&s, "grpc-probed")?;
        (restarts(&p) >= 1).then_some(p)
    });
    assert!(container(&p)["lastState"]["terminated"].is_object(), "{p}");
    event_with(
        &s,
        "grpc-probed",
        "Unhealthy",
        r#"Liveness probe failed: service unhealthy (responded with "NOT_SERVING")"#,
    );
    event_with(
        &s,
        "grpc-probed",
        "Killing",
        "Container main failed liveness probe, will be restarted",
    );
}
