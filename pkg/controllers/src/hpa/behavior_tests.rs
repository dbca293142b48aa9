use super::*;
use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn after(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

fn scaling(
    window: Option<i32>,
    select: Option<&str>,
    policies: &[(&str, i32, i32)],
) -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: window,
        select_policy: select.map(str::to_string),
        policies: (!policies.is_empty()).then(|| {
            policies
                .iter()
                .map(|(t, v, p)| HPAScalingPolicy {
                    type_: t.to_string(),
                    value: *v,
                    period_seconds: *p,
                })
                .collect()
        }),
        tolerance: None,
    }
}

#[test]
fn defaults_are_the_apis() {
    let b = with_defaults(&HorizontalPodAutoscalerBehavior::default());
    let period = Duration::from_secs(15);
    assert_eq!(b.up.window, Duration::ZERO);
    assert_eq!(b.up.select, Select::Max);
    assert_eq!(
        b.up.policies,
        vec![Policy::Pods(4, period), Policy::Percent(100, period)]
    );
    assert_eq!(b.down.window, DOWNSCALE_STABILIZATION);
    assert_eq!(b.down.policies, vec![Policy::Percent(100, period)]);
    // A partial rule keeps the defaults of what it leaves out.
    let partial = HorizontalPodAutoscalerBehavior {
        scale_down: Some(scaling(Some(5), None, &[])),
        scale_up: None,
    };
    let b = with_defaults(&partial);
    assert_eq!(b.down.window, Duration::from_secs(5));
    assert_eq!(b.down.policies, vec![Policy::Percent(100, period)]);
    assert_eq!(tolerance(Some(&b)), Tolerance::default());
    let mut rules = scaling(None, None, &[]);
    rules.tolerance = Some(Quantity("0.05".into()));
    let b = with_defaults(&HorizontalPodAutoscalerBehavior {
        scale_up: Some(rules),
        scale_down: None,
    });
    assert_eq!(
        tolerance(Some(&b)),
        Tolerance {
            down: 0.1,
            up: 0.05
        }
    );
}

#[test]
fn without_behavior_scale_up_is_capped_and_scale_down_stabilized() {
    let t0 = Instant::now();
    let mut h = History::default();
    h.start(1, t0);
    let n = normalize(&mut h, None, 1, 10, (1, 20), t0);
    assert_eq!(n.replicas, 4);
    assert!(n.limited);
    assert_eq!(n.limit.0, "ScaleUpLimit");
    let n = normalize(&mut h, None, 4, 30, (1, 20), after(t0, 15));
    assert_eq!((n.replicas, n.limit.0), (8, "ScaleUpLimit"));
    let n = normalize(&mut h, None, 8, 30, (1, 10), after(t0, 30));
    assert_eq!((n.replicas, n.limit.0), (10, "TooManyReplicas"));
    // Usage drops: the highest recommendation of the last 5 minutes holds.
    let n = normalize(&mut h, None, 10, 2, (1, 10), after(t0, 45));
    assert_eq!(n.replicas, 10);
    assert_eq!(n.able.0, "ScaleDownStabilized");
    assert!(n.limited);
    assert_eq!(n.limit.0, "TooManyReplicas");
    // Once the high ones are older than 5 minutes, it goes down (not below min).
    let n = normalize(&mut h, None, 10, 0, (2, 10), after(t0, 400));
    assert_eq!((n.replicas, n.able.0), (2, "ReadyForNewScale"));
    assert_eq!(n.limit.0, "TooFewReplicas");
    let n = normalize(&mut h, None, 2, 3, (1, 10), after(t0, 1000));
    assert_eq!(
        (n.replicas, n.able.0, n.limited),
        (3, "ReadyForNewScale", false)
    );
    assert_eq!(n.limit.0, "DesiredWithinRange");
}

#[test]
fn default_scale_up_policies_count_recent_rescales() {
    let t0 = Instant::now();
    let b = with_defaults(&HorizontalPodAutoscalerBehavior::default());
    let mut h = History::default();
    h.start(1, t0);
    // Max(1 + 4 pods, 1 + 100%) per 15 s.
    let n = normalize(&mut h, Some(&b), 1, 10, (1, 10), t0);
    assert_eq!((n.replicas, n.limit.0), (5, "ScaleUpLimit"));
    h.rescaled(Some(&b), 1, 5, t0);
    // Within the period the 4 added count: no more yet.
    let n = normalize(&mut h, Some(&b), 5, 10, (1, 10), after(t0, 5));
    assert_eq!(n.replicas, 5);
    let n = normalize(&mut h, Some(&b), 5, 10, (1, 10), after(t0, 16));
    assert_eq!(
        (n.replicas, n.limit.0, n.limited),
        (10, "DesiredWithinRange", false)
    );
    let n = normalize(&mut h, Some(&b), 10, 12, (1, 10), after(t0, 30));
    assert_eq!((n.replicas, n.limit.0), (10, "TooManyReplicas"));
}

#[test]
fn scale_down_policies_and_windows() {
    let t0 = Instant::now();
    let b = with_defaults(&HorizontalPodAutoscalerBehavior {
        scale_down: Some(scaling(Some(0), None, &[("Pods", 1, 60)])),
        scale_up: None,
    });
    let mut h = History::default();
    h.start(5, t0);
    let n = normalize(&mut h, Some(&b), 5, 1, (1, 10), after(t0, 1));
    assert_eq!(
        (n.replicas, n.limit.0, n.able.0),
        (4, "ScaleDownLimit", "ReadyForNewScale")
    );
    h.rescaled(Some(&b), 5, 4, after(t0, 1));
    let n = normalize(&mut h, Some(&b), 4, 1, (1, 10), after(t0, 30));
    assert_eq!(n.replicas, 4);
    let n = normalize(&mut h, Some(&b), 4, 1, (1, 10), after(t0, 62));
    assert_eq!(n.replicas, 3);
    // The default 300 s window holds the highest recommendation.
    let b = with_defaults(&HorizontalPodAutoscalerBehavior::default());
    let mut h = History::default();
    h.start(5, t0);
    let n = normalize(&mut h, Some(&b), 5, 1, (1, 10), after(t0, 1));
    assert_eq!((n.replicas, n.able.0), (5, "ScaleDownStabilized"));
    let n = normalize(&mut h, Some(&b), 5, 1, (1, 10), after(t0, 310));
    assert_eq!(n.replicas, 1);
}

#[test]
fn select_policies_and_scale_up_window() {
    let t0 = Instant::now();
    let min = with_defaults(&HorizontalPodAutoscalerBehavior {
        scale_up: Some(scaling(None, Some("Min"), &[])),
        scale_down: None,
    });
    let mut h = History::default();
    h.start(2, t0);
    // Min(2 + 4, 2 + 100%).
    assert_eq!(
        normalize(&mut h, Some(&min), 2, 20, (1, 20), t0).replicas,
        4
    );
    let disabled = with_defaults(&HorizontalPodAutoscalerBehavior {
        scale_up: Some(scaling(None, Some("Disabled"), &[])),
        scale_down: None,
    });
    let mut h = History::default();
    h.start(2, t0);
    assert_eq!(
        normalize(&mut h, Some(&disabled), 2, 20, (1, 20), t0).replicas,
        2
    );
    // A scale-up window takes the lowest recent recommendation.
    let slow = with_defaults(&HorizontalPodAutoscalerBehavior {
        scale_up: Some(scaling(Some(60), None, &[])),
        scale_down: None,
    });
    let mut h = History::default();
    h.start(2, t0);
    let n = normalize(&mut h, Some(&slow), 2, 6, (1, 20), after(t0, 1));
    assert_eq!((n.replicas, n.able.0), (2, "ScaleUpStabilized"));
    let n = normalize(&mut h, Some(&slow), 2, 6, (1, 20), after(t0, 62));
    assert_eq!(n.replicas, 6);
}
