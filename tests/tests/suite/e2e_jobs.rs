//! Jobs on a real `minik server` with simulated nodes, driven by the real kubectl: pods exit as
//! their `simulation.minik.io/*` annotations say, and the Job controller counts them.

use minik_tests::server::{Server, eventually, ok, text};
use serde_json::Value;

fn server() -> Server {
    Server::start_with(&["--simulated-nodes", "2"])
}

/// A Job manifest: `spec` is YAML indented by two spaces (under `spec:`), and the pod
/// template's containers exit after `after` seconds with `code`.
fn job(name: &str, spec: &str, after: u32, code: i32) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{spec}
  template:
    metadata:
      annotations:
        simulation.minik.io/exit-after: \"{after}\"
        simulation.minik.io/exit-code: \"{code}\"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
"
    )
}

fn create(s: &Server, manifest: &str) {
    ok(s.kubectl_stdin(&["create", "-f", "-"], manifest));
}

fn get(s: &Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&ok(s.kubectl(&all))).expect("json")
}

fn wait(s: &Server, condition: &str, job: &str, secs: u32) {
    let out = s.kubectl(&[
        "wait",
        &format!("--for=condition={condition}"),
        &format!("job/{job}"),
        &format!("--timeout={secs}s"),
    ]);
    assert!(
        out.status.success(),
        "job/{job} {condition}: {}\n{}",
        text(&out),
        text(&s.kubectl(&["get", "job", job, "-o", "yaml"]))
    );
}

fn condition<'a>(job: &'a Value, type_: &str) -> &'a Value {
    job["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn pods_of(s: &Server, job: &str) -> Vec<Value> {
    let list = get(
        s,
        &["pods", "-l", &format!("batch.kubernetes.io/job-name={job}")],
    );
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn completions_with_parallelism_complete() {
    let s = server();
    create(
        &s,
        &job("three", "  completions: 3\n  parallelism: 2", 1, 0),
    );
    wait(&s, "complete", "three", 90);
    let j = get(&s, &["job", "three"]);
    assert_eq!(j["status"]["succeeded"], 3, "{j}");
    assert!(j["status"]["failed"].is_null(), "{j}");
    assert!(j["status"]["completionTime"].is_string());
    assert!(j["status"]["startTime"].is_string());
    assert_eq!(
        j["status"]["uncountedTerminatedPods"],
        serde_json::json!({})
    );
    assert_eq!(
        condition(&j, "SuccessCriteriaMet")["reason"],
        "CompletionsReached"
    );
    assert_eq!(condition(&j, "Complete")["status"], "True");
    let uid = j["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    let pods = pods_of(&s, "three");
    assert_eq!(pods.len(), 3, "{pods:?}");
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert_eq!(p["metadata"]["labels"]["controller-uid"], uid);
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        let finalizers = p["metadata"]["finalizers"].as_array().cloned();
        assert!(
            !finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == "batch.kubernetes.io/job-tracking"),
            "the tracking finalizer is removed once counted: {p}"
        );
    }
    let events = ok(s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=three",
    ]));
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("Completed"), "{events}");
}

#[test]
fn indexed_job_runs_every_index_once() {
    let s = server();
    let spec = "  completions: 3\n  parallelism: 3\n  completionMode: Indexed";
    create(&s, &job("idx", spec, 2, 0));
    // Each pod carries its index from the start.
    let pods = eventually("a pod per index", 60, || {
        let pods = pods_of(&s, "idx");
        (pods.len() == 3).then_some(pods)
    });
    let mut seen: Vec<String> = pods
        .iter()
        .map(|p| {
            let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .expect("index annotation")
                .to_string();
            assert_eq!(
                p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
                index.as_str()
            );
            assert_eq!(p["spec"]["hostname"], format!("idx-{index}"));
            assert!(
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("idx-{index}-")))
            );
            let env = &p["spec"]["containers"][0]["env"][0];
            assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
            assert_eq!(
                env["valueFrom"]["fieldRef"]["fieldPath"],
                "metadata.labels['batch.kubernetes.io/job-completion-index']"
            );
            index
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);
    wait(&s, "complete", "idx", 90);
    let j = get(&s, &["job", "idx"]);
    assert_eq!(j["status"]["completedIndexes"], "0-2", "{j}");
    assert_eq!(j["status"]["succeeded"], 3);
}

#[test]
fn backoff_limit_fails_the_job() {
    let s = server();
    create(&s, &job("flaky", "  backoffLimit: 1", 1, 1));
    wait(&s, "failed", "flaky", 120);
    let j = get(&s, &["job", "flaky"]);
    assert_eq!(j["status"]["failed"], 2, "{j}");
    let failed = condition(&j, "Failed");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert_eq!(
        condition(&j, "FailureTarget")["reason"],
        "BackoffLimitExceeded"
    );
    assert!(j["status"]["active"].is_null());
    let pods = pods_of(&s, "flaky");
    assert_eq!(pods.len(), 2, "one pod and one replacement: {pods:?}");
}

#[test]
fn pod_failure_policy_fails_the_job_at_once() {
    let s = server();
    let spec = "  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: Ignore
      onExitCodes: {operator: In, values: [3]}
    - action: FailJob
      onExitCodes: {containerName: main, operator: In, values: [42]}";
    create(&s, &job("fatal", spec, 1, 42));
    wait(&s, "failed", "fatal", 90);
    let j = get(&s, &["job", "fatal"]);
    let failed = condition(&j, "Failed");
    assert_eq!(failed["reason"], "PodFailurePolicy", "{j}");
    let msg = failed["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("Container main for pod default/fatal-")
            && msg.ends_with("failed with exit code 42 matching FailJob rule at index 1"),
        "{msg}"
    );
    assert_eq!(j["status"]["failed"], 1);
    assert_eq!(pods_of(&s, "fatal").len(), 1, "no pod was replaced");
}

#[test]
fn active_deadline_fails_the_job() {
    let s = server();
    create(&s, &job("slow", "  activeDeadlineSeconds: 3", 600, 0));
    wait(&s, "failed", "slow", 90);
    let j = get(&s, &["job", "slow"]);
    assert_eq!(condition(&j, "Failed")["reason"], "DeadlineExceeded", "{j}");
    assert_eq!(
        condition(&j, "Failed")["message"],
        "Job was active longer than specified deadline"
    );
}

#[test]
fn suspend_deletes_pods_and_resume_runs_them() {
    let s = server();
    create(&s, &job("paused", "  suspend: true", 1, 0));
    let j = eventually("the Suspended condition", 30, || {
        let j = get(&s, &["job", "paused"]);
        (condition(&j, "Suspended")["status"] == "True").then_some(j)
    });
    assert_eq!(condition(&j, "Suspended")["reason"], "JobSuspended");
    assert!(j["status"]["startTime"].is_null(), "{j}");
    assert!(pods_of(&s, "paused").is_empty());
    ok(s.kubectl(&[
        "patch",
        "job",
        "paused",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]));
    wait(&s, "complete", "paused", 90);
    let j = get(&s, &["job", "paused"]);
    assert_eq!(condition(&j, "Suspended")["status"], "False");
    assert_eq!(condition(&j, "Suspended")["reason"], "JobResumed");

    // Suspending a running Job deletes its pods without counting them as failed.
    create(&s, &job("running", "", 600, 0));
    eventually("an active pod", 60, || {
        let j = get(&s, &["job", "running"]);
        (j["status"]["active"] == 1).then_some(())
    });
    ok(s.kubectl(&[
        "patch",
        "job",
        "running",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]));
    let j = eventually("the running Job suspended and emptied", 60, || {
        let j = get(&s, &["job", "running"]);
        let done = condition(&j, "Suspended")["status"] == "True"
            && j["status"]["active"].is_null()
            && pods_of(&s, "running").is_empty();
        done.then_some(j)
    });
    assert!(j["status"]["failed"].is_null(), "{j}");
}

#[test]
fn ttl_after_finished_deletes_the_job() {
    let s = server();
    create(&s, &job("brief", "  ttlSecondsAfterFinished: 2", 1, 0));
    wait(&s, "complete", "brief", 90);
    eventually("the Job deleted", 60, || {
        let out = s.kubectl(&["get", "job", "brief"]);
        (!out.status.success() && text(&out).contains("NotFound")).then_some(())
    });
    eventually("its pods deleted", 60, || {
        pods_of(&s, "brief").is_empty().then_some(())
    });
}
