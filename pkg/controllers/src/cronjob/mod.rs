//! The CronJob controller (kube-controller-manager's cronjob_controllerv2): at each scheduled
//! time, a Job from the template named `<cronjob>-<minutes since the epoch>`, following the
//! concurrency policy, the starting deadline and suspend; finished Jobs leave status.active and
//! are pruned to the history limits.

mod active;
mod history;
mod missed;
mod schedule;
mod template;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use crate::events::{Kind, Recorder};
use crate::job::writes::OwnWrites;
use crate::util::{self, controller_of};
use crate::{Ctx, Queue, Reconcile, Result};
use missed::{History, Missed};
use schedule::Schedule;
use template::{job_for, reference};

pub struct Controller {
    ctx: Ctx,
    recorder: Recorder,
    /// When each CronJob is next looked at: one timer per key, as a delaying queue keeps.
    wakes: Mutex<HashMap<String, Instant>>,
    writes: OwnWrites,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("cronjob", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.cronjobs.on(move |cj, _| q.add(util::key(cj)));
    let q = queue.clone();
    ctx.informers.jobs.on(move |job, _| {
        if let Some(o) = controller_of(job).filter(|o| o.kind == "CronJob") {
            q.add(format!(
                "{}/{}",
                job.namespace().unwrap_or_default(),
                o.name
            ));
        }
    });
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "cronjob-controller"),
        wakes: Mutex::default(),
        writes: OwnWrites::default(),
    });
    ctx.spawn_workers("cronjob", &queue, workers, this);
    queue
}

pub fn to_chrono(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
            .unwrap_or_default(),
    )
}

/// The type of a Job's finished condition (Complete or Failed), if it has one.
pub fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn in_active(status: &CronJobStatus, uid: Option<&str>) -> bool {
    status
        .active
        .iter()
        .flatten()
        .any(|r| r.uid.as_deref() == uid)
}

fn remove_active(status: &mut CronJobStatus, uid: Option<&str>) {
    if let Some(active) = status.active.as_mut() {
        active.retain(|r| r.uid.as_deref() != uid);
    }
}

/// The schedule with spec.timeZone applied (a TZ in the schedule itself wins, with a warning).
fn schedule_text(cj: &CronJob, recorder: &Recorder) -> String {
    let s = &cj.spec.schedule;
    if s.contains("TZ") {
        recorder.event(
            cj,
            Kind::Warning,
            "UnsupportedSchedule",
            &format!(
                "CRON_TZ or TZ used in schedule {s:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details"
            ),
        );
        return s.clone();
    }
    match cj.spec.time_zone.as_deref() {
        Some(tz) if schedule::zone(tz).is_ok() => format!("TZ={tz} {s}"),
        _ => s.clone(),
    }
}

impl Controller {
    /// Start the Job due now, if any; returns when to look again and whether the status
    /// changed.
    async fn start_due(
        &self,
        cj: &CronJob,
        status: &mut CronJobStatus,
        changed: &mut bool,
    ) -> Result<Option<Duration>> {
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        if let Some(tz) = cj.spec.time_zone.as_deref()
            && let Err(e) = schedule::zone(tz)
        {
            let msg = format!("invalid timeZone: {tz:?}: {e}");
            self.recorder
                .event(cj, Kind::Warning, "UnknownTimeZone", &msg);
            return Ok(None);
        }
        if cj.spec.suspend == Some(true) {
            return Ok(None);
        }
        let sched = match schedule::parse(&schedule_text(cj, &self.recorder)) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("unparseable schedule: {:?} : {e}", cj.spec.schedule);
                self.recorder
                    .event(cj, Kind::Warning, "UnparseableSchedule", &msg);
                return Ok(None);
            }
        };
        let now = Utc::now();
        let history = History {
            created: cj
                .metadata
                .creation_timestamp
                .as_ref()
                .map(to_chrono)
                .unwrap_or(now),
            last_schedule: status.last_schedule_time.as_ref().map(to_chrono),
            starting_deadline_seconds: cj.spec.starting_deadline_seconds,
        };
        let later = |status: &CronJobStatus, sched: &Schedule| {
            let h = History {
                last_schedule: status.last_schedule_time.as_ref().map(to_chrono),
                ..history
            };
            Some(missed::requeue_after(sched, &h, now))
        };
        let at = match missed::next_unmet(&sched, &history, now) {
            Err(e) => {
                let msg = format!("invalid schedule: {} : {e}", cj.spec.schedule);
                self.recorder
                    .event(cj, Kind::Warning, "InvalidSchedule", &msg);
                return Ok(None);
            }
            Ok(None) => return Ok(later(status, &sched)),
            Ok(Some((at, missed))) => {
                if missed == Missed::Many {
                    self.recorder.event(
                        cj,
                        Kind::Warning,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                    );
                }
                at
            }
        };
        let job = job_for(cj, at);
        let name = job.metadata.name.clone().unwrap_or_default();
        let already = status
            .active
            .iter()
            .flatten()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            || status.last_schedule_time.as_ref().map(to_chrono) == Some(at);
        if already {
            return Ok(later(status, &sched));
        }
        let policy = cj.spec.concurrency_policy.as_deref().unwrap_or("Allow");
        let active = status.active.as_ref().is_some_and(|a| !a.is_empty());
        if policy == "Forbid" && active {
            self.recorder.event(
                cj,
                Kind::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            );
            return Ok(later(status, &sched));
        }
        if policy == "Replace" {
            for r in status.active.clone().unwrap_or_default() {
                let ns = r.namespace.clone().unwrap_or_default();
                let name = r.name.clone().unwrap_or_default();
                let Some(j) = self.jobs_api(&ns).get_opt(&name).await? else {
                    continue;
                };
                if !history::delete_job(self, cj, status, &j).await {
                    return Err(crate::Error::Other(format!(
                        "could not replace job {ns}/{name}"
                    )));
                }
                *changed = true;
            }
        }
        let ns = cj.namespace().unwrap_or_default();
        let made = match self
            .jobs_api(&ns)
            .create(&PostParams::default(), &job)
            .await
        {
            Ok(made) => {
                self.recorder.event(
                    cj,
                    Kind::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {name}"),
                );
                made
            }
            Err(e) if util::code(&e) == Some(409) => {
                let Some(existing) = self.jobs_api(&ns).get_opt(&name).await? else {
                    return Err(e.into());
                };
                let ours =
                    controller_of(&existing).is_some_and(|o| Some(&o.uid) == cj.uid().as_ref());
                if !ours || in_active(status, existing.uid().as_deref()) {
                    return Ok(None);
                }
                existing
            }
            Err(e) => {
                self.recorder.event(
                    cj,
                    Kind::Warning,
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                );
                return Err(e.into());
            }
        };
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(reference(&made));
        status.last_schedule_time = Some(to_time(at));
        *changed = true;
        Ok(later(status, &sched))
    }
}

impl Controller {
    /// Look at `key` again after `after`, unless a timer will already do so by then.
    fn wake_after(&self, key: &str, after: Option<Duration>) -> Option<Duration> {
        let mut wakes = self.wakes.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        wakes.retain(|_, at| *at > now);
        let Some(after) = after else {
            wakes.remove(key);
            return None;
        };
        let at = now + after;
        match wakes.get(key) {
            Some(pending) if *pending <= at => None,
            _ => {
                wakes.insert(key.to_string(), at);
                Some(after)
            }
        }
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, cached)) = self.ctx.informers.cronjobs.namespaced(&key) else {
            self.writes.forget(&key);
            return Ok(self.wake_after(&key, None));
        };
        if !self
            .writes
            .caught_up(&key, cached.resource_version().as_deref())
        {
            return Ok(Some(Duration::from_secs(1)));
        }
        let mut cj = (*cached).clone();
        let uid = cj.uid();
        let jobs: Vec<Arc<Job>> = self
            .ctx
            .informers
            .jobs
            .store()
            .state()
            .into_iter()
            .filter(|j| {
                j.namespace().as_deref() == Some(ns)
                    && controller_of(j.as_ref()).is_some_and(|o| Some(&o.uid) == uid.as_ref())
            })
            .collect();
        let mut status = cj.status.clone().unwrap_or_default();
        let mut changed = history::prune(self, &cj, &mut status, &jobs).await;
        let mut said = Vec::new();
        changed |= self
            .reconcile_jobs(&mut cj, &mut status, &jobs, &mut said)
            .await?;
        let outcome = self.start_due(&cj, &mut status, &mut changed).await;
        if changed {
            let api: Api<CronJob> = Api::namespaced(self.ctx.client.clone(), ns);
            let mut update = cj.clone();
            if status.active.as_ref().is_some_and(Vec::is_empty) {
                status.active = None;
            }
            update.status = Some(status);
            match api
                .replace_status(&cached.name_any(), &PostParams::default(), &update)
                .await
            {
                Ok(written) => {
                    self.writes
                        .wrote(&key, written.resource_version().as_deref());
                    for (reason, message) in said {
                        self.recorder.event(&cj, Kind::Normal, reason, &message);
                    }
                }
                Err(e) if util::code(&e) == Some(404) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        outcome.map(|after| self.wake_after(&key, after))
    }
}
