//! The Job a CronJob starts for one scheduled time: the template's metadata and spec, a name
//! fixed by the time (so a run is never started twice), the scheduled time as an annotation
//! in the CronJob's time zone, and a controller reference.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::schedule::{self, Zone};
use crate::util::controller_ref;

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// The Job for the run at `at`.
pub fn job_for(cj: &CronJob, at: DateTime<Utc>) -> Job {
    let template = &cj.spec.job_template;
    let meta = template.metadata.clone().unwrap_or_default();
    let zone = schedule::zone(cj.spec.time_zone.as_deref().unwrap_or(""));
    let stamp = match zone {
        Ok(Zone::Named(tz)) => at
            .with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        _ => at.to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), stamp);
    Job {
        metadata: ObjectMeta {
            name: Some(format!("{}-{}", cj.name_any(), at.timestamp() / 60)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

pub fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.namespace(),
        uid: job.uid(),
        resource_version: job.resource_version(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cronjob(tz: Option<&str>) -> CronJob {
        serde_json::from_value(json!({
            "metadata": {"name": "nightly", "namespace": "ns", "uid": "u1"},
            "spec": {"schedule": "0 3 * * *", "timeZone": tz, "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}}}},
        }))
        .expect("cronjob")
    }

    #[test]
    fn the_job_is_named_by_the_minute_and_stamped_in_the_time_zone() {
        let at: DateTime<Utc> = "2024-06-01T03:00:00Z".parse().expect("time");
        let job = job_for(&cronjob(None), at);
        assert_eq!(job.metadata.name.as_deref(), Some("nightly-28620180"));
        let stamp = |j: &Job| j.annotations().get(SCHEDULED_TIMESTAMP).cloned();
        assert_eq!(stamp(&job).as_deref(), Some("2024-06-01T03:00:00Z"));
        assert_eq!(job.annotations().get("note").map(String::as_str), Some("x"));
        assert_eq!(job.labels().get("team").map(String::as_str), Some("a"));
        assert_eq!(job.spec.as_ref().and_then(|s| s.backoff_limit), Some(2));
        let owner = crate::util::controller_of(&job).expect("owner");
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("CronJob", "u1"));
        let berlin = job_for(&cronjob(Some("Europe/Berlin")), at);
        assert_eq!(stamp(&berlin).as_deref(), Some("2024-06-01T05:00:00+02:00"));
    }
}
