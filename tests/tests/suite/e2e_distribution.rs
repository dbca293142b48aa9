//! What a user meets first: from an empty data dir, `minik server` (a real node) writes its
//! join token and runs a 3-replica Deployment of a local test image whose Service answers
//! from the host; a restart of the server keeps the objects and the running pods.

use minik_tests::node::{create, host_get, ready_node};
use minik_tests::server::Server;
use serde_json::{Value, json};

/// The names of the ready pods labelled app=web.
fn ready_pods(s: &Server) -> Vec<String> {
    let list = s.json_opt(&["get", "pods", "-l", "app=web"]);
    list.and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|p| p["status"]["containerStatuses"][0]["ready"] == true)
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn web() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "httpd",
                    "image": "minik/httpd", "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c",
                        "mkdir -p /w && echo \"i am $HOSTNAME\" > /w/index.html && exec httpd -f -p 8080 -h /w"],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}})
}

#[test]
fn a_fresh_server_runs_a_deployment_reachable_through_its_service_and_keeps_it() {
    let mut s = Server::start_node(&[]);
    let token = std::fs::read_to_string(s.dir.path().join("data/server/node-token")).unwrap();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    ready_node(&s);
    create(&s, &web());
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    let pods = s.eventually("3 ready web pods", || {
        let pods = ready_pods(&s);
        (pods.len() == 3).then_some(pods)
    });
    let ip = s.get_json(&["service", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    // Connections are spread over the endpoints: every replica answers in time.
    let mut seen = std::collections::BTreeSet::new();
    s.eventually("every replica answering through the service", || {
        let answer = host_get(&s, &format!("http://{ip}/"));
        seen.insert(answer.trim().trim_start_matches("i am ").to_string());
        pods.iter().all(|p| seen.contains(p)).then_some(())
    });

    // A restart keeps the objects, and the containers kept running meanwhile.
    let uids = s.get_json(&["pods", "-l", "app=web"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["uid"].clone())
        .collect::<Vec<_>>();
    s.restart(false);
    let after = s.eventually("3 ready web pods after the restart", || {
        let pods = ready_pods(&s);
        (pods.len() == 3).then_some(pods)
    });
    assert_eq!(after, pods, "the same pods");
    let again = s.get_json(&["pods", "-l", "app=web"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["uid"].clone())
        .collect::<Vec<_>>();
    assert_eq!(again, uids);
    assert_eq!(
        s.get_json(&["pods", "-l", "app=web"])["items"][0]["status"]["containerStatuses"][0]["restartCount"],
        0
    );
    let answer = host_get(&s, &format!("http://{ip}/"));
    assert!(answer.starts_with("i am web-"), "{answer}");
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("data/server/node-token")).unwrap(),
        token,
        "the same token after a restart"
    );
}
