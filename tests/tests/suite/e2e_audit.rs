//! The audit log: the policy decides per request how much is logged, events are
//! audit.k8s.io/v1 JSON lines, the log rotates, and a broken policy stops the server at start.

use minik_tests::server::{Server, ok, start_fails};
use serde_json::Value;

const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
- level: None
  resources: [{group: \"\", resources: [secrets]}]
- level: RequestResponse
  resources: [{group: \"\", resources: [configmaps]}]
- level: Metadata
";

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit event per line"))
        .collect()
}

#[test]
fn the_policy_decides_what_is_logged_and_the_log_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let log = dir.path().join("logs").join("audit.log");
    let s = Server::start_with(&[
        "--audit-policy-file",
        policy.to_str().unwrap(),
        "--audit-log-path",
        log.to_str().unwrap(),
        "--audit-log-maxsize",
        "1",
        "--audit-log-maxbackup",
        "1",
    ]);
    ok(s.kubectl(&["create", "configmap", "a", "--from-literal=k=v"]));
    ok(s.kubectl(&[
        "create",
        "secret",
        "generic",
        "hidden",
        "--from-literal=k=v",
    ]));
    ok(s.kubectl(&["get", "pods"]));
    ok(s.kubectl(&["create", "namespace", "audited"]));
    ok(s.kubectl(&[
        "label",
        "namespace",
        "audited",
        "pod-security.kubernetes.io/audit=restricted",
    ]));
    ok(s.kubectl(&[
        "run",
        "p",
        "-n",
        "audited",
        "--image=busybox",
        "--privileged",
    ]));
    let out = s.kubectl(&["get", "configmap", "nope"]);
    assert!(!out.status.success());
    let all = events(&log);
    assert!(
        all.iter().all(|e| e["stage"] != "RequestReceived"),
        "omitted stage logged"
    );
    assert!(
        all.iter().all(|e| e["objectRef"]["resource"] != "secrets"),
        "level None logged"
    );
    let create = all
        .iter()
        // (not the controller manager's kube-root-ca.crt)
        .find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "configmaps"
                && e["responseObject"]["metadata"]["name"] == "a"
        })
        .expect("the configmap create");
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["kind"], "Event");
    assert_eq!(create["level"], "RequestResponse");
    assert_eq!(create["stage"], "ResponseComplete");
    assert_eq!(create["user"]["username"], "system:admin");
    assert_eq!(create["objectRef"]["namespace"], "default");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(create["requestObject"]["data"]["k"], "v");
    assert_eq!(create["responseObject"]["metadata"]["name"], "a");
    assert!(create["responseObject"]["metadata"]["managedFields"].is_null());
    assert_eq!(create["sourceIPs"][0], "127.0.0.1");
    // PodSecurity's audit mode annotates the event of a pod that breaks it.
    let pod = all
        .iter()
        .find(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "pods")
        .expect("the pod create");
    let notes = &pod["annotations"];
    assert_eq!(
        notes["pod-security.kubernetes.io/enforce-policy"],
        "privileged:latest"
    );
    let violations = notes["pod-security.kubernetes.io/audit-violations"]
        .as_str()
        .unwrap_or("");
    assert!(
        violations.contains("would violate PodSecurity \"restricted:latest\": privileged (container \"p\" must not set securityContext.privileged=true)"),
        "{notes}"
    );
    let list = all
        .iter()
        .find(|e| e["verb"] == "list" && e["objectRef"]["resource"] == "pods")
        .expect("the pod list");
    assert_eq!(list["level"], "Metadata");
    assert!(list.get("responseObject").is_none() && list.get("requestObject").is_none());
    let missing = all
        .iter()
        .find(|e| e["verb"] == "get" && e["objectRef"]["name"] == "nope")
        .expect("the failed get");
    assert_eq!(missing["responseStatus"]["code"], 404);
    assert_eq!(missing["responseStatus"]["reason"], "NotFound");
    // Two creates of ~700 KB each (logged twice each) rotate the log twice; one backup stays.
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(700 * 1024)).unwrap();
    let from = format!("--from-file={}", big.display());
    ok(s.kubectl(&["create", "configmap", "big1", &from]));
    ok(s.kubectl(&["create", "configmap", "big2", &from]));
    ok(s.kubectl(&["get", "namespaces"]));
    let names: Vec<String> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("audit-") && n.ends_with(".log")),
        "{names:?}"
    );
    let current = events(&log);
    assert!(
        current
            .iter()
            .any(|e| e["objectRef"]["resource"] == "namespaces"),
        "{}",
        text_of(&current)
    );
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("{} {}\n", e["verb"], e["requestURI"]))
        .collect()
}

#[test]
fn a_broken_audit_policy_stops_the_server_at_start() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n";
    let err = start_fails(
        &["--audit-policy-file", "policy.yaml"],
        &[("policy.yaml", policy)],
    );
    assert!(err.contains("policy.yaml: rules[0].level: \"Everything\" is not None, Metadata, Request or RequestResponse"), "{err}");
}
