use super::*;
use serde_json::json;

fn ago(now: Timestamp, secs: i64) -> String {
    (now - SignedDuration::from_secs(secs)).to_string()
}

/// A running pod started `age` seconds ago, ready since 5 s after, asking 100m of cpu.
fn pod(name: &str, now: Timestamp, age: i64) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [
                {"name": "app", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "side", "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]},
            "status": {"phase": "Running", "startTime": ago(now, age),
                "conditions": [{"type": "Ready", "status": "True",
                    "lastTransitionTime": ago(now, age - 5)}]}}))
        .unwrap(),
    )
}

fn sample(value: i64, now: Timestamp) -> PodMetric {
    PodMetric {
        value,
        timestamp: now,
        window: Duration::from_secs(10),
    }
}

fn metrics(now: Timestamp, values: &[(&str, i64)]) -> PodMetrics {
    values
        .iter()
        .map(|(n, v)| (n.to_string(), sample(*v, now)))
        .collect()
}

fn input(pods: &[Arc<Pod>], now: Timestamp) -> Pods<'_> {
    Pods {
        pods,
        tolerance: Tolerance::default(),
        now,
    }
}

#[test]
fn utilization_over_requests_sets_the_ratio() {
    let now = Timestamp::now();
    let pods = [pod("a", now, 600)];
    // 300m used of 150m requested: 200% against 50%.
    let got = for_utilization(
        1,
        50,
        ("cpu", None),
        &input(&pods, now),
        metrics(now, &[("a", 300)]),
    );
    assert_eq!(got, Ok((4, 200, 300)));
    // Within 10% of the target nothing changes.
    let got = for_utilization(
        3,
        100,
        ("cpu", None),
        &input(&pods, now),
        metrics(now, &[("a", 160)]),
    );
    assert_eq!(got, Ok((3, 106, 160)));
    // One container's request and usage only.
    let got = for_utilization(
        1,
        100,
        ("cpu", Some("side")),
        &input(&pods, now),
        metrics(now, &[("a", 100)]),
    );
    assert_eq!(got, Ok((2, 200, 100)));
}

#[test]
fn missing_metrics_count_against_the_change() {
    let now = Timestamp::now();
    let pods = [pod("a", now, 600), pod("b", now, 600)];
    let cpu = input(&pods, now);
    // Scale-down: the pod without a sample counts as using its request: 10% of one pod
    // and 100% of the other stay 2 replicas (not 1).
    let got = for_utilization(2, 100, ("cpu", None), &cpu, metrics(now, &[("a", 15)]));
    assert_eq!(got, Ok((2, 10, 15)));
    // Scale-up: it counts as idle: (300% + 0%) / 2 against 100% is 3 replicas, not 3×1.
    let got = for_utilization(2, 100, ("cpu", None), &cpu, metrics(now, &[("a", 450)]));
    assert_eq!(got, Ok((3, 300, 450)));
}

#[test]
fn unready_and_ignored_pods() {
    let now = Timestamp::now();
    // b started a minute ago and its sample began before it was ready.
    let young = pod("b", now, 60);
    let mut pending = (*pod("c", now, 600)).clone();
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    let mut deleting = (*pod("d", now, 600)).clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    let pods = [
        pod("a", now, 600),
        young,
        Arc::new(pending),
        Arc::new(deleting),
    ];
    let mut m = metrics(now, &[("a", 300), ("c", 9000), ("d", 9000)]);
    let young_sample = PodMetric {
        value: 900,
        timestamp: now,
        window: Duration::from_secs(120),
    };
    m.insert("b".into(), young_sample);
    // a alone is at 200%: with b counted idle, (200% + 0%) / 2 is 100%: no change.
    let got = for_utilization(2, 100, ("cpu", None), &input(&pods, now), m.clone());
    assert_eq!(got, Ok((2, 200, 300)));
    // Readiness only matters for cpu: (300 + 900) / 2 against 300 per pod.
    let got = for_average_value(2, 300, "memory", &input(&pods, now), m);
    assert_eq!(got, Ok((4, 600)));
    // Only unready pods: nothing to go by.
    let only_young = [pod("b", now, 60)];
    let m: PodMetrics = [("b".to_string(), young_sample)].into();
    let got = for_utilization(1, 100, ("cpu", None), &input(&only_young, now), m);
    assert_eq!(
        got,
        Err("did not receive metrics for targeted pods (pods might be unready)".into())
    );
}

#[test]
fn errors_say_what_is_missing() {
    let now = Timestamp::now();
    let got = for_utilization(1, 50, ("cpu", None), &input(&[], now), PodMetrics::new());
    assert_eq!(
        got,
        Err("no pods returned by selector while calculating replica count".into())
    );
    let bare: Arc<Pod> = Arc::new(
        serde_json::from_value(json!({"metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"}}))
        .unwrap(),
    );
    let pods = [bare];
    let got = for_utilization(
        1,
        50,
        ("memory", None),
        &input(&pods, now),
        metrics(now, &[("x", 1)]),
    );
    assert_eq!(
        got,
        Err("missing request for memory in container c of Pod x".into())
    );
}

#[test]
fn average_values() {
    let now = Timestamp::now();
    let pods = [pod("a", now, 600), pod("b", now, 600), pod("c", now, 600)];
    let m = metrics(now, &[("a", 300), ("b", 300), ("c", 300)]);
    assert_eq!(
        for_average_value(3, 100, "cpu", &input(&pods, now), m.clone()),
        Ok((9, 300))
    );
    assert_eq!(
        for_average_value(3, 290, "cpu", &input(&pods, now), m),
        Ok((3, 300))
    );
    assert_eq!(milli("250m"), 250);
    assert_eq!(milli("1Ki"), 1_024_000);
}
