use super::*;
use k8s_openapi::api::batch::v1::{JobSpec, PodFailurePolicy};
use serde_json::json;

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "status": status,
    }))
    .expect("pod")
}

fn policy(rules: serde_json::Value) -> PodFailurePolicy {
    serde_json::from_value(json!({ "rules": rules })).expect("policy")
}

fn exited(name: &str, code: i32) -> serde_json::Value {
    json!({"name": name, "image": "x", "imageID": "", "ready": false, "restartCount": 0,
           "state": {"terminated": {"exitCode": code}}})
}

#[test]
fn exit_code_rules_match_in_order() {
    let p = policy(json!([
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1, 2]}},
        {"action": "Count", "onExitCodes": {"operator": "In", "values": [1]}},
    ]));
    let failed =
        |code| pod(json!({"phase": "Failed", "containerStatuses": [exited("main", code)]}));
    assert_eq!(judge(Some(&p), &failed(3)), Verdict::Ignore);
    assert_eq!(
        judge(Some(&p), &failed(42)),
        Verdict::FailJob(
            "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                .into()
        )
    );
    assert_eq!(judge(Some(&p), &failed(1)), Verdict::Count);
    // No rule matches exit code 2: counted.
    assert_eq!(judge(Some(&p), &failed(2)), Verdict::Count);
    // Exit code 0 never matches.
    assert_eq!(judge(Some(&p), &failed(0)), Verdict::Count);
    assert_eq!(judge(None, &failed(42)), Verdict::Count);
    assert!(!Verdict::Ignore.counts());
}

#[test]
fn pod_condition_rules_default_to_status_true() {
    let p = policy(json!([
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailIndex", "onPodConditions": [{"type": "ConfigIssue", "status": "False"}]},
    ]));
    let with = |t: &str, s: &str| {
        pod(json!({"phase": "Failed", "conditions": [{"type": t, "status": s}]}))
    };
    assert_eq!(
        judge(Some(&p), &with("DisruptionTarget", "True")),
        Verdict::Ignore
    );
    assert_eq!(
        judge(Some(&p), &with("DisruptionTarget", "False")),
        Verdict::Count
    );
    assert_eq!(
        judge(Some(&p), &with("ConfigIssue", "False")),
        Verdict::FailIndex
    );
}

fn job(mode: &str) -> Job {
    let mut job: Job = serde_json::from_value(json!({
        "metadata": {"name": "work", "namespace": "ns", "uid": "u1"},
        "spec": {"completionMode": mode, "template": {
            "metadata": {"labels": {"batch.kubernetes.io/job-name": "work"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .expect("job");
    job.spec.get_or_insert_with(JobSpec::default);
    job
}

#[test]
fn indexed_pods_carry_their_index() {
    let p = new_pod(&job("Indexed"), Some(2));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("work-2-"));
    assert_eq!(p.annotations().get(INDEX).map(String::as_str), Some("2"));
    assert_eq!(p.labels().get(INDEX).map(String::as_str), Some("2"));
    assert!(has_finalizer(&p));
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("work-2"));
    let env = spec.containers[0].env.as_ref().expect("env");
    assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
    assert_eq!(index(&p), Some(2));
    let owner = util::controller_of(&p).expect("owner");
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Job", "u1"));

    let plain = new_pod(&job("NonIndexed"), None);
    assert_eq!(plain.metadata.generate_name.as_deref(), Some("work-"));
    assert_eq!(index(&plain), None);
    assert!(
        plain
            .spec
            .as_ref()
            .and_then(|s| s.hostname.as_ref())
            .is_none()
    );
}

#[test]
fn deleted_pods_count_as_failed_unless_only_failed_pods_are_replaced() {
    let mut deleted = pod(json!({"phase": "Running"}));
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let mut j = job("NonIndexed");
    assert!(is_failed(&deleted, &j));
    assert!(is_terminating(&deleted));
    if let Some(s) = j.spec.as_mut() {
        s.pod_replacement_policy = Some("Failed".into());
    }
    assert!(!is_failed(&deleted, &j));
}
