//! The active list against the Jobs seen: finished Jobs leave it (SawCompletedJob), Jobs gone
//! from the server leave it (MissingJob), unknown running Jobs are reported (UnexpectedJob),
//! and the newest completion is lastSuccessfulTime.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use kube::ResourceExt;
use kube::api::Api;

use super::{Controller, finished, in_active, remove_active};
use crate::Result;
use crate::events::Kind;

impl Controller {
    pub(super) fn jobs_api(&self, ns: &str) -> Api<Job> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// Active list and last successful time from the Jobs seen; true if the status changed.
    /// The events the new status stands for go into `said`, recorded once it is written.
    pub(super) async fn reconcile_jobs(
        &self,
        cj: &mut CronJob,
        status: &mut CronJobStatus,
        jobs: &[Arc<Job>],
        said: &mut Vec<(&'static str, String)>,
    ) -> Result<bool> {
        let mut changed = false;
        for j in jobs {
            let uid = j.uid();
            let found = in_active(status, uid.as_deref());
            match finished(j) {
                None if !found => {
                    let ns = cj.namespace().unwrap_or_default();
                    let api: Api<CronJob> = Api::namespaced(self.ctx.client.clone(), &ns);
                    if let Some(fresh) = api.get_opt(&cj.name_any()).await?
                        && fresh
                            .status
                            .as_ref()
                            .is_some_and(|s| in_active(s, uid.as_deref()))
                    {
                        *status = fresh.status.clone().unwrap_or_default();
                        *cj = fresh;
                        continue;
                    }
                    self.recorder.event(
                        &*cj,
                        Kind::Warning,
                        "UnexpectedJob",
                        &format!(
                            "Saw a job that the controller did not create or forgot: {}",
                            j.name_any()
                        ),
                    );
                }
                Some(condition) if found => {
                    remove_active(status, uid.as_deref());
                    said.push((
                        "SawCompletedJob",
                        format!(
                            "Saw completed job: {}, condition: {condition}",
                            j.name_any()
                        ),
                    ));
                    changed = true;
                }
                Some("Complete") => {
                    let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.is_some()
                        && (status.last_successful_time.is_none()
                            || done.as_ref().map(|t| t.0)
                                > status.last_successful_time.as_ref().map(|t| t.0))
                    {
                        status.last_successful_time = done;
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        // Active Jobs that are gone (asked of the server, not a possibly late cache).
        let refs = status.active.clone().unwrap_or_default();
        for r in refs {
            if jobs.iter().any(|j| j.uid() == r.uid) {
                continue;
            }
            let ns = r.namespace.clone().unwrap_or_default();
            let name = r.name.clone().unwrap_or_default();
            if self.jobs_api(&ns).get_opt(&name).await?.is_none() {
                said.push(("MissingJob", format!("Active job went missing: {name}")));
                remove_active(status, r.uid.as_deref());
                changed = true;
            }
        }
        Ok(changed)
    }
}
