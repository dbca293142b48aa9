//! csrapproving: a pending kubelet client certificate request is approved when a
//! SubjectAccessReview says its requester may create `certificatesigningrequests/
//! selfnodeclient` (a node renewing its own certificate: the subject is the requester) or
//! `certificatesigningrequests/nodeclient` (a new node, e.g. a bootstrap token's). Requests
//! it does not recognize or may not approve are left for someone else.
//!
//! A kubelet's serving certificate request for itself (`kubernetes.io/kubelet-serving`,
//! the subject being the requester) is approved the same way when the requester may create
//! `certificatesigningrequests/selfnodeserving`, which minik grants to system:nodes: agents
//! get their kubelet serving certificates through a CSR, as k3s's get theirs from its
//! supervisor.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::request::{self, KUBELET_CLIENT, KUBELET_SERVING, Request};
use crate::{Ctx, Error, Queue, Reconcile, Result, util};

const NAME: &str = "csrapproving";

/// One kind of request the approver knows: the subresource its requester needs, and the
/// approval's message.
struct Recognizer {
    subresource: &'static str,
    message: &'static str,
    recognize: fn(&CertificateSigningRequest, &Request) -> bool,
}

fn is_node_client(csr: &CertificateSigningRequest, req: &Request) -> bool {
    csr.spec.signer_name == KUBELET_CLIENT
        && request::validate_kubelet_client(req, super::usages(csr)).is_ok()
}

fn is_self_node_client(csr: &CertificateSigningRequest, req: &Request) -> bool {
    csr.spec.username.as_deref() == Some(req.common_name.as_str()) && is_node_client(csr, req)
}

fn is_self_node_serving(csr: &CertificateSigningRequest, req: &Request) -> bool {
    csr.spec.signer_name == KUBELET_SERVING
        && csr.spec.username.as_deref() == Some(req.common_name.as_str())
        && request::validate_kubelet_serving(req, super::usages(csr)).is_ok()
}

const RECOGNIZERS: &[Recognizer] = &[
    Recognizer {
        subresource: "selfnodeserving",
        message: "Auto approving self kubelet serving certificate after SubjectAccessReview.",
        recognize: is_self_node_serving,
    },
    Recognizer {
        subresource: "selfnodeclient",
        message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
        recognize: is_self_node_client,
    },
    Recognizer {
        subresource: "nodeclient",
        message: "Auto approving kubelet client certificate after SubjectAccessReview.",
        recognize: is_node_client,
    },
];

/// The subresources (with their messages) a SubjectAccessReview must allow, in order, for
/// `csr` to be approved.
pub fn recognized(
    csr: &CertificateSigningRequest,
    req: &Request,
) -> Vec<(&'static str, &'static str)> {
    RECOGNIZERS
        .iter()
        .filter(|r| (r.recognize)(csr, req))
        .map(|r| (r.subresource, r.message))
        .collect()
}

pub struct Approver {
    ctx: Ctx,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new(NAME, ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.csrs.on(move |csr, change| {
        if change == crate::Change::Applied {
            q.add(csr.name_any());
        }
    });
    let this = Arc::new(Approver { ctx: ctx.clone() });
    ctx.spawn_workers(NAME, &queue, workers, this);
    queue
}

impl Approver {
    /// Whether the requester may create `certificatesigningrequests/<subresource>`.
    async fn allowed(&self, csr: &CertificateSigningRequest, subresource: &str) -> Result<bool> {
        let spec = &csr.spec;
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: spec.username.clone(),
                uid: spec.uid.clone(),
                groups: spec.groups.clone(),
                extra: spec.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("certificates.k8s.io".into()),
                    resource: Some("certificatesigningrequests".into()),
                    subresource: Some(subresource.into()),
                    verb: Some("create".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.ctx.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    async fn approve(&self, csr: &CertificateSigningRequest, message: &str) -> Result<()> {
        let mut csr = csr.clone();
        csr.status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(message.into()),
                ..Default::default()
            });
        let api: Api<CertificateSigningRequest> = Api::all(self.ctx.client.clone());
        match api
            .replace_subresource("approval", &csr.name_any(), &PostParams::default(), &csr)
            .await
        {
            Err(e) if util::code(&e) != Some(404) => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl Reconcile for Approver {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>> {
        let store = self.ctx.informers.csrs.store();
        let Some(csr) = store.get(&ObjectRef::new(&name)) else {
            return Ok(None);
        };
        if super::is_issued(&csr)
            || super::has_condition(&csr, "Approved")
            || super::has_condition(&csr, "Denied")
        {
            return Ok(None);
        }
        let req = super::parse(&csr)?;
        let candidates = recognized(&csr, &req);
        for (subresource, message) in &candidates {
            if self.allowed(&csr, subresource).await? {
                self.approve(&csr, message).await?;
                tracing::info!(csr = name, subresource, "auto-approved a kubelet CSR");
                return Ok(None);
            }
        }
        if candidates.is_empty() {
            return Ok(None);
        }
        // Permissions may be granted later: try again, with back-off.
        let tried: Vec<&str> = candidates.iter().map(|(s, _)| *s).collect();
        Err(Error::Other(format!(
            "recognized csr {name:?} as [{}] but subject access review was not approved",
            tried.join(" ")
        )))
    }
}
