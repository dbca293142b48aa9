//! csrcleaner: every hour (and once at start) requests that are done with are deleted:
//! approved and issued, denied or failed for over an hour; pending for over a day; or whose
//! certificate has expired.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};

use crate::{Ctx, Queue, Reconcile, Result, util};

const NAME: &str = "csrcleaner";
const PERIOD: Duration = Duration::from_secs(3600);
const DONE_FOR: SignedDuration = SignedDuration::from_hours(1);
const PENDING_FOR: SignedDuration = SignedDuration::from_hours(24);

pub struct Cleaner {
    ctx: Ctx,
}

pub fn start(ctx: &Ctx) -> Queue {
    let queue = Queue::new(NAME, ctx.metrics.clone());
    queue.add(NAME);
    let this = Arc::new(Cleaner { ctx: ctx.clone() });
    ctx.spawn_workers(NAME, &queue, 1, this);
    queue
}

fn older_than(t: Option<Timestamp>, age: SignedDuration, now: Timestamp) -> bool {
    t.is_some_and(|t| now.duration_since(t) > age)
}

/// When the certificate issued for `csr` stops being valid.
fn expiry(csr: &CertificateSigningRequest) -> Option<Timestamp> {
    let pem = &csr.status.as_ref()?.certificate.as_ref()?.0;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = block.parse_x509().ok()?;
    Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

/// Why `csr` is to be deleted at `now`, if it is.
pub fn due(csr: &CertificateSigningRequest, now: Timestamp) -> Option<&'static str> {
    let conditions = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let issued = super::is_issued(csr);
    for c in conditions {
        let updated = c.last_update_time.as_ref().map(|t| t.0);
        match c.type_.as_str() {
            "Approved" if issued && expiry(csr).is_some_and(|at| now > at) => {
                return Some("its certificate has expired");
            }
            "Approved" if issued && older_than(updated, DONE_FOR, now) => {
                return Some("approved over an hour ago");
            }
            "Denied" if older_than(updated, DONE_FOR, now) => {
                return Some("denied over an hour ago");
            }
            "Failed" if older_than(updated, DONE_FOR, now) => {
                return Some("failed over an hour ago");
            }
            _ => {}
        }
    }
    let created = csr.creation_timestamp().map(|t| t.0);
    (conditions.is_empty() && older_than(created, PENDING_FOR, now))
        .then_some("pending for over a day")
}

impl Reconcile for Cleaner {
    async fn reconcile(&self, _: String) -> Result<Option<Duration>> {
        // The first run waits for the cache.
        self.ctx.informers.csrs.synced().await;
        let api: Api<CertificateSigningRequest> = Api::all(self.ctx.client.clone());
        let now = Timestamp::now();
        for csr in self.ctx.informers.csrs.store().state() {
            let Some(why) = due(&csr, now) else {
                continue;
            };
            let name = csr.name_any();
            tracing::info!(
                csr = name,
                reason = why,
                "cleaning a certificate signing request"
            );
            match api.delete(&name, &DeleteParams::default()).await {
                Err(e) if util::code(&e) != Some(404) => {
                    tracing::warn!(csr = name, error = %e, "deleting a certificate signing request");
                }
                _ => {}
            }
        }
        Ok(Some(PERIOD))
    }
}
