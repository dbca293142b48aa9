//! csrsigning: approved requests of the `kubernetes.io` signers get their certificate in
//! `status.certificate`; requests the signer refuses get a `Failed` condition
//! (`SignerValidationFailure`). Requests of other signers, denied, failed or already issued
//! ones are left alone.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::request::{self, KUBE_APISERVER_CLIENT, KUBELET_CLIENT, SIGNERS};
use super::sign::{self, Authority};
use crate::{Ctx, Error, Queue, Reconcile, Result, util};

const NAME: &str = "csrsigning";

pub struct Signer {
    ctx: Ctx,
    client_ca: Authority,
    server_ca: Authority,
    /// The longest a certificate is issued for.
    max_duration: Duration,
}

/// Start the signer; without CAs (or with unreadable ones) nothing is signed, as
/// kube-controller-manager without signing files.
pub fn start(ctx: &Ctx, cas: Option<&super::SigningCas>, workers: usize) -> Queue {
    let queue = Queue::new(NAME, ctx.metrics.clone());
    let Some(cas) = cas else {
        return queue;
    };
    let load = |ca: &super::Ca| Authority::new(&ca.cert_pem, &ca.key_pem);
    let (client_ca, server_ca) = match (load(&cas.client), load(&cas.server)) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(
                error = e,
                "the signing CAs are unusable; no CSR will be signed"
            );
            return queue;
        }
    };
    let q = queue.clone();
    ctx.informers.csrs.on(move |csr, change| {
        if change == crate::Change::Applied {
            q.add(csr.name_any());
        }
    });
    let this = Arc::new(Signer {
        ctx: ctx.clone(),
        client_ca,
        server_ca,
        max_duration: cas.duration,
    });
    ctx.spawn_workers(NAME, &queue, workers, this);
    queue
}

/// `csr` with a Failed condition saying why the signer refused it.
pub fn failed(csr: &CertificateSigningRequest, message: String) -> CertificateSigningRequest {
    let mut csr = csr.clone();
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some("SignerValidationFailure".into()),
            message: Some(message),
            last_update_time: Some(Time(Timestamp::now())),
            last_transition_time: None,
        });
    csr
}

impl Signer {
    fn authority(&self, signer: &str) -> &Authority {
        match signer {
            KUBE_APISERVER_CLIENT | KUBELET_CLIENT => &self.client_ca,
            _ => &self.server_ca,
        }
    }

    async fn write_status(&self, csr: &CertificateSigningRequest) -> Result<()> {
        let api: Api<CertificateSigningRequest> = Api::all(self.ctx.client.clone());
        match api
            .replace_status(&csr.name_any(), &PostParams::default(), csr)
            .await
        {
            Err(e) if util::code(&e) != Some(404) => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl Reconcile for Signer {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>> {
        let store = self.ctx.informers.csrs.store();
        let Some(csr) = store.get(&ObjectRef::new(&name)) else {
            return Ok(None);
        };
        let signer = csr.spec.signer_name.as_str();
        if !super::is_approved(&csr)
            || super::has_condition(&csr, "Failed")
            || super::is_issued(&csr)
            || !SIGNERS.contains(&signer)
        {
            return Ok(None);
        }
        let req = super::parse(&csr)?;
        let usages = super::usages(&csr);
        if let Err(message) = request::validate(signer, &req, usages) {
            tracing::info!(csr = name, signer, reason = message, "refusing to sign");
            return self
                .write_status(&failed(&csr, message))
                .await
                .map(|()| None);
        }
        let ttl = sign::duration(csr.spec.expiration_seconds, self.max_duration);
        let now = time::OffsetDateTime::now_utc();
        let pem = self
            .authority(signer)
            .issue(&req, usages, ttl, now)
            .map_err(|e| Error::Other(format!("error auto signing csr: {e}")))?;
        let mut issued = (*csr).clone();
        issued
            .status
            .get_or_insert_with(CertificateSigningRequestStatus::default)
            .certificate = Some(k8s_openapi::ByteString(pem.into_bytes()));
        self.write_status(&issued).await?;
        tracing::info!(csr = name, signer, "issued a certificate");
        Ok(None)
    }
}
