//! CronJobs on a real `minik server` with simulated nodes, driven by the real kubectl.

use minik_tests::server::{Server, eventually, ok};
use serde_json::Value;

fn server() -> Server {
    Server::start_with(&["--simulated-nodes", "2"])
}

fn cronjob(name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: \"{schedule}\"
{extra}
  jobTemplate:
    metadata:
      labels: {{from: {name}}}
    spec:
      template:
        metadata:
          annotations:
            simulation.minik.io/exit-after: \"1\"
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
"
    )
}

fn get(s: &Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&ok(s.kubectl(&all))).expect("json")
}

fn jobs(s: &Server) -> Vec<Value> {
    get(s, &["jobs"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn complete(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
    })
}

#[test]
fn every_minute_schedule_starts_a_job_and_tracks_it() {
    let s = server();
    ok(s.kubectl_stdin(&["create", "-f", "-"], &cronjob("tick", "* * * * *", "")));
    // The first run is at the next whole minute.
    let job = eventually("a scheduled Job", 90, || jobs(&s).into_iter().next());
    let name = job["metadata"]["name"].as_str().expect("name").to_string();
    let minutes: i64 = name
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("a Job named tick-<minutes>: {name}"));
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .expect("scheduled timestamp annotation")
        .to_string();
    let at = chrono_free_seconds(&stamp);
    assert_eq!(at / 60, minutes, "{stamp}");
    assert_eq!(at % 60, 0, "{stamp}");
    assert_eq!(job["metadata"]["labels"]["from"], "tick");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    let cj = get(&s, &["cronjob", "tick"]);
    assert_eq!(cj["status"]["lastScheduleTime"], stamp.as_str(), "{cj}");
    // Once it completes it leaves status.active and sets lastSuccessfulTime.
    let cj = eventually("the run seen completed", 90, || {
        let cj = get(&s, &["cronjob", "tick"]);
        let seen =
            cj["status"]["active"].is_null() && cj["status"]["lastSuccessfulTime"].is_string();
        seen.then_some(cj)
    });
    assert!(cj["status"]["lastSuccessfulTime"].is_string());
    let events = ok(s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=tick",
    ]));
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("SawCompletedJob"), "{events}");
}

/// Seconds since the epoch of an RFC 3339 UTC time ("2024-01-02T03:04:05Z").
fn chrono_free_seconds(t: &str) -> i64 {
    let n = |a: usize, b: usize| {
        t.get(a..b)
            .and_then(|s| s.parse::<i64>().ok())
            .expect("time")
    };
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (hh, mm, ss) = (n(11, 13), n(14, 16), n(17, 19));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

#[test]
fn manual_runs_from_a_cronjob_and_history_limits() {
    let s = server();
    let extra = "  suspend: true\n  successfulJobsHistoryLimit: 1";
    ok(s.kubectl_stdin(
        &["create", "-f", "-"],
        &cronjob("nightly", "0 3 * * *", extra),
    ));
    for name in ["manual-1", "manual-2"] {
        ok(s.kubectl(&["create", "job", name, "--from=cronjob/nightly"]));
        let out = s.kubectl(&[
            "wait",
            "--for=condition=complete",
            &format!("job/{name}"),
            "--timeout=90s",
        ]);
        assert!(out.status.success(), "{}", minik_tests::server::text(&out));
    }
    let job = get(&s, &["job", "manual-2"]);
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(job["metadata"]["labels"]["from"], "nightly");
    // Only the newest successful Job is kept.
    let left = eventually("the older Job pruned", 60, || {
        let left: Vec<String> = jobs(&s)
            .iter()
            .filter(|j| complete(j))
            .filter_map(|j| j["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        (left.len() == 1).then_some(left)
    });
    assert_eq!(left, ["manual-2"]);
    let cj = get(&s, &["cronjob", "nightly"]);
    assert!(cj["status"]["lastSuccessfulTime"].is_string(), "{cj}");
    assert!(
        cj["status"]["lastScheduleTime"].is_null(),
        "suspended: never scheduled"
    );
    let events = ok(s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=nightly",
    ]));
    assert!(events.contains("SuccessfulDelete"), "{events}");
}
