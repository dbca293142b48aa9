use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(name: &str, ready: bool) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn pct(s: &str) -> Option<IntOrString> {
    Some(IntOrString::String(s.into()))
}

#[test]
fn desired_healthy_from_min_available_or_max_unavailable() {
    // A plain minAvailable counts the pods, no scale needed.
    let p = pdb(Some(IntOrString::Int(2)), None);
    assert!(!needs_scale(&p));
    assert_eq!(expected_and_desired(&p, 3, 0), Ok((3, 2)));
    // A percentage of the controllers' scale, rounded up.
    let p = pdb(pct("50%"), None);
    assert!(needs_scale(&p));
    assert_eq!(expected_and_desired(&p, 2, 5), Ok((5, 3)));
    // maxUnavailable: expected minus the (rounded up) unavailable, never below zero.
    let p = pdb(None, pct("30%"));
    assert_eq!(expected_and_desired(&p, 10, 10), Ok((10, 7)));
    let p = pdb(None, Some(IntOrString::Int(5)));
    assert_eq!(expected_and_desired(&p, 3, 3), Ok((3, 0)));
    let p = pdb(None, Some(IntOrString::Int(0)));
    assert_eq!(expected_and_desired(&p, 3, 3), Ok((3, 3)));
    // A string that is no percentage fails the sync.
    assert!(expected_and_desired(&pdb(pct("half"), None), 3, 3).is_err());
}

#[test]
fn disruptions_allowed_and_the_condition() {
    let p = pdb(Some(IntOrString::Int(2)), None);
    let s = next_status(&p, 3, 2, 3, BTreeMap::new()).expect("a status");
    assert_eq!(s.disruptions_allowed, Some(1));
    assert_eq!(s.observed_generation, Some(2));
    let c = &s.conditions.as_ref().expect("conditions")[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str()),
        (DISRUPTION_ALLOWED, "True")
    );
    assert_eq!(c.reason, SUFFICIENT_PODS);
    // Written once: the same numbers again change nothing.
    let stored = PodDisruptionBudget {
        status: Some(s.clone()),
        ..p.clone()
    };
    assert_eq!(next_status(&stored, 3, 2, 3, BTreeMap::new()), None);
    // Too few healthy: none allowed, InsufficientPods.
    let s = next_status(&stored, 2, 2, 3, BTreeMap::new()).expect("a status");
    assert_eq!(s.disruptions_allowed, Some(0));
    let c = &s.conditions.as_ref().expect("conditions")[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", INSUFFICIENT_PODS)
    );
    // No pods expected: nothing allowed whatever the arithmetic says.
    let s = next_status(&p, 1, 0, 0, BTreeMap::new()).expect("a status");
    assert_eq!(s.disruptions_allowed, Some(0));
    // A failed sync allows nothing and says why.
    let s = fail_safe(&stored, "found no controllers for pod \"x\"");
    assert_eq!(s.disruptions_allowed, Some(0));
    let c = &s.conditions.as_ref().expect("conditions")[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", SYNC_FAILED)
    );
}

#[test]
fn recorded_evictions_count_for_two_minutes() {
    let now = Timestamp::now();
    let mut p = pdb(Some(IntOrString::Int(1)), None);
    let recent = Time(now - SignedDuration::from_secs(30));
    let old = Time(now - SignedDuration::from_secs(180));
    p.status = Some(PodDisruptionBudgetStatus {
        disrupted_pods: Some(
            [
                ("a".to_string(), recent.clone()),
                ("b".to_string(), old),
                ("gone".to_string(), recent.clone()),
            ]
            .into_iter()
            .collect(),
        ),
        ..Default::default()
    });
    let pods = [
        pod("a", true),
        pod("b", true),
        pod("c", true),
        pod("d", false),
    ];
    let (live, recheck, expired) = live_disruptions(&p, &pods, now);
    // "a" still counts as disrupted, "b" expired, "gone" has no pod any more.
    assert_eq!(live.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(recheck, Some(recent.0 + SignedDuration::from_secs(120)));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].name_any(), "b");
    // Healthy: ready, not disrupted: b and c.
    assert_eq!(count_healthy(&pods, &live, now), 2);
}

#[test]
fn percentages_round_up() {
    assert_eq!(scaled(&IntOrString::String("34%".into()), 3), Ok(2));
    assert_eq!(scaled(&IntOrString::String("100%".into()), 3), Ok(3));
    assert_eq!(scaled(&IntOrString::Int(4), 3), Ok(4));
}
