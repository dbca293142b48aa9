//! The HPA's status as the controller writes it: conditions (a transition time when one
//! changes status), replicas, current metrics and the last scale time; and the metrics an
//! HPA without any gets (80% of the cpu request, as the API defaults them).

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition as Condition,
    HorizontalPodAutoscalerStatus as Status, MetricSpec, MetricStatus, MetricTarget,
    ResourceMetricSource,
};

use crate::util;

/// Set a condition, its transition time when its status changes.
pub fn set_condition(st: &mut Status, type_: &str, ok: bool, reason: &str, message: String) {
    let status = if ok { "True" } else { "False" };
    let conditions = st.conditions.get_or_insert_default();
    let now = Some(util::now());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.status = status.into();
                c.last_transition_time = now;
            }
            c.reason = Some(reason.into());
            c.message = Some(message);
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: now,
            observed_generation: None,
        }),
    }
}

/// The replicas and metrics of the status (desired kept when None), and the time of a
/// rescale.
pub fn set_status(
    st: &mut Status,
    current: i32,
    desired: Option<i32>,
    metrics: Vec<MetricStatus>,
    rescaled: bool,
) {
    st.current_replicas = Some(current);
    if let Some(d) = desired {
        st.desired_replicas = d;
    }
    st.current_metrics = (!metrics.is_empty()).then_some(metrics);
    if rescaled {
        st.last_scale_time = Some(util::now());
    }
}

/// The metrics of an HPA; none means 80% of the cpu request.
pub fn metric_specs(hpa: &HorizontalPodAutoscaler) -> Vec<MetricSpec> {
    let given = hpa.spec.metrics.clone();
    given.filter(|m| !m.is_empty()).unwrap_or_else(|| {
        vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(80),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_change_their_transition_time_only_with_their_status() {
        let mut st = Status::default();
        set_condition(
            &mut st,
            "AbleToScale",
            true,
            "SucceededGetScale",
            "a".into(),
        );
        let first = st.conditions.as_ref().unwrap()[0].clone();
        set_condition(&mut st, "AbleToScale", true, "SucceededRescale", "b".into());
        let c = &st.conditions.as_ref().unwrap()[0];
        assert_eq!(c.reason.as_deref(), Some("SucceededRescale"));
        assert_eq!(c.last_transition_time, first.last_transition_time);
        set_condition(
            &mut st,
            "ScalingActive",
            false,
            "FailedGetResourceMetric",
            "c".into(),
        );
        assert_eq!(st.conditions.as_ref().unwrap().len(), 2);
        set_status(&mut st, 2, None, Vec::new(), false);
        assert_eq!((st.current_replicas, st.desired_replicas), (Some(2), 0));
        assert!(st.current_metrics.is_none() && st.last_scale_time.is_none());
        set_status(&mut st, 2, Some(4), vec![MetricStatus::default()], true);
        assert_eq!(st.desired_replicas, 4);
        assert!(st.last_scale_time.is_some());
        let defaulted = metric_specs(&HorizontalPodAutoscaler::default());
        let cpu = defaulted[0].resource.as_ref().unwrap();
        assert_eq!(
            (cpu.name.as_str(), cpu.target.average_utilization),
            ("cpu", Some(80))
        );
    }
}
