//! Leader election through a coordination.k8s.io Lease, as client-go's leaderelection does
//! it: whoever holds an unexpired lease leads; the leader renews it every `retry`; a
//! candidate takes it over once it has gone `duration` without renewal. A leader that cannot
//! renew within `renew_deadline` stops its work before anyone else may start.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

/// How a lease is held (client-go's defaults).
#[derive(Debug, Clone)]
pub struct Timing {
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// One lease in kube-system and who we are.
#[derive(Clone)]
pub struct Elector {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub timing: Timing,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(client: kube::Client, name: &str, identity: &str) -> Self {
        Elector {
            api: Api::namespaced(client, "kube-system"),
            name: name.into(),
            identity: identity.into(),
            timing: Timing::default(),
        }
    }

    /// Take or renew the lease; whether we hold it now.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let held = |s: &LeaseSpec| s.holder_identity.as_deref() == Some(self.identity.as_str());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = held(&spec);
        if !mine && !expired(&spec) {
            return Ok(false);
        }
        let mut next = self.spec(Some(&spec));
        if mine {
            next.acquire_time = spec.acquire_time.clone();
            next.lease_transitions = spec.lease_transitions;
        }
        lease.spec = Some(next);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, old: Option<&LeaseSpec>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.duration.as_secs() as i32),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(
                old.map(|o| o.lease_transitions.unwrap_or(0) + 1)
                    .unwrap_or(0),
            ),
            ..Default::default()
        }
    }

    /// Campaign until `shutdown`; while leading run `work` with a token that is cancelled
    /// when leadership is lost. After losing it, campaign again.
    pub async fn run<F, Fut>(&self, shutdown: CancellationToken, work: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        while !shutdown.is_cancelled() {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    let lost = shutdown.child_token();
                    let task = tokio::spawn(work(lost.clone()));
                    self.hold(&shutdown).await;
                    lost.cancel();
                    let _ = task.await;
                    if !shutdown.is_cancelled() {
                        tracing::warn!(lease = %self.name, "lost leadership");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(lease = %self.name, error = %e, "lease"),
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.timing.retry) => {}
            }
        }
    }

    /// Renew every `retry` until a renewal fails for `renew_deadline` or shutdown.
    async fn hold(&self, shutdown: &CancellationToken) {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.timing.retry) => {}
            }
            match self.try_acquire().await {
                Ok(true) => last = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => tracing::debug!(lease = %self.name, error = %e, "renewing lease"),
            }
            if last.elapsed() > self.timing.renew_deadline {
                return;
            }
        }
    }
}

/// Whether a lease's holder has gone its whole duration without renewing.
fn expired(spec: &LeaseSpec) -> bool {
    if spec.holder_identity.as_deref().unwrap_or("").is_empty() {
        return true;
    }
    let Some(renew) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let deadline = renew.0 + k8s_openapi::jiff::SignedDuration::from_secs(secs);
    deadline < Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration() {
        let old = MicroTime(Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(20));
        let spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(old),
            ..Default::default()
        };
        assert!(expired(&spec));
        let fresh = LeaseSpec {
            renew_time: Some(now()),
            ..spec.clone()
        };
        assert!(!expired(&fresh));
        let nobody = LeaseSpec {
            holder_identity: None,
            ..fresh
        };
        assert!(expired(&nobody));
    }
}
