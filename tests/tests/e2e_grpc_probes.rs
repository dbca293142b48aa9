//! grpc probes on the real node of `minik server` (run as root): a hostNetwork pod (its
//! address is the node's, 127.0.0.1) whose probes ask a gRPC health server this test runs on
//! 127.0.0.1. Readiness follows its service's status without restarting the container;
//! liveness keeps the container running while the server says SERVING and restarts it
//! (Unhealthy "Liveness probe failed: ...", then Killing) once it says NOT_SERVING.

use minik_tests::grpc_health::{HealthServer, NOT_SERVING, SERVING};
use minik_tests::node::{container, create, pod};
use minik_tests::server::Server;
use serde_json::{Value, json};

fn ready_node(s: &Server) {
    s.until(&["get", "nodes"], "the node to be Ready", |l| {
        l.as_ref()
            .and_then(|l| l["items"].as_array())
            .is_some_and(|items| {
                items.len() == 1
                    && items[0]["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
}

fn restarts(pod: &Value) -> i64 {
    container(pod)["restartCount"].as_i64().unwrap_or(-1)
}

/// The status of the pod's condition `type_` ("True", "False"), "" without it.
fn condition(pod: &Value, type_: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Wait for an event about pod `name` of `reason` whose message has `part`.
fn event_with(s: &Server, name: &str, reason: &str, part: &str) -> String {
    s.eventually(
        &format!("a {reason} event with {part:?} about {name}"),
        || {
            s.json_opt(&["get", "events"])?["items"]
                .as_array()?
                .iter()
                .filter(|e| {
                    e["involvedObject"]["name"] == name && e["involvedObject"]["kind"] == "Pod"
                })
                .find(|e| {
                    e["reason"] == reason && e["message"].as_str().is_some_and(|m| m.contains(part))
                })
                .and_then(|e| e["message"].as_str().map(str::to_string))
        },
    )
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
