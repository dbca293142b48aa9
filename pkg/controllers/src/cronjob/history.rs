//! Finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit are deleted, the
//! oldest (by start time) first.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};

use super::{Controller, finished, remove_active};
use crate::events::Kind;

/// Delete the finished Jobs past the limits; true if the status changed.
pub async fn prune(
    c: &Controller,
    cj: &CronJob,
    status: &mut CronJobStatus,
    jobs: &[Arc<Job>],
) -> bool {
    let spec = &cj.spec;
    let mut changed = false;
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j) == Some(kind)).collect();
        let excess = done
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        if excess == 0 {
            continue;
        }
        done.sort_by_key(|j| oldest_first(j));
        for j in &done[..excess] {
            changed |= delete_job(c, cj, status, j).await;
        }
    }
    changed
}

/// Jobs with a start time first (oldest first), then by name.
fn oldest_first(j: &Job) -> (bool, Option<i128>, String) {
    let start = j.status.as_ref().and_then(|s| s.start_time.as_ref());
    (
        start.is_none(),
        start.map(|t| t.0.as_nanosecond()),
        j.name_any(),
    )
}

/// Delete a Job (background propagation) and drop it from the active list.
pub async fn delete_job(
    c: &Controller,
    cj: &CronJob,
    status: &mut CronJobStatus,
    job: &Job,
) -> bool {
    let api: Api<Job> = Api::namespaced(c.ctx.client.clone(), &job.namespace().unwrap_or_default());
    match api
        .delete(&job.name_any(), &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(e) if crate::util::code(&e) == Some(404) => {}
        Err(e) => {
            c.recorder.event(
                cj,
                Kind::Warning,
                "FailedDelete",
                &format!("Deleted job: {e}"),
            );
            tracing::warn!(job = job.name_any(), error = %e, "deleting a cronjob's job");
            return false;
        }
    }
    remove_active(status, job.uid().as_deref());
    c.recorder.event(
        cj,
        Kind::Normal,
        "SuccessfulDelete",
        &format!("Deleted job {}", job.name_any()),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn job(name: &str, start: Option<i64>) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(JobStatus {
                start_time: start
                    .map(|s| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_oldest_started_go_first_and_unstarted_last() {
        let mut jobs = [
            job("c", None),
            job("b", Some(20)),
            job("a", Some(30)),
            job("d", Some(20)),
        ];
        jobs.sort_by_key(oldest_first);
        let names: Vec<String> = jobs.iter().map(|j| j.name_any()).collect();
        assert_eq!(names, ["b", "d", "a", "c"]);
    }
}
