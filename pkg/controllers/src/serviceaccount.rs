//! The ServiceAccount controller: every active namespace has a `default` service account
//! (made when the namespace appears, and again when it is deleted). Pods name it through
//! the ServiceAccount admission plugin; its tokens come from the TokenRequest API.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::{Change, Ctx, Queue, Reconcile, Result, util};

const DEFAULT: &str = "default";

pub struct Controller {
    ctx: Ctx,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("serviceaccount", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers
        .namespaces
        .on(move |ns, _| q.add(ns.name_any()));
    let q = queue.clone();
    ctx.informers.serviceaccounts.on(move |sa, change| {
        if change == Change::Deleted && sa.name_any() == DEFAULT {
            q.add(sa.namespace().unwrap_or_default());
        }
    });
    let this = Arc::new(Controller { ctx: ctx.clone() });
    ctx.spawn_workers("serviceaccount", &queue, workers, this);
    queue
}

/// Whether namespace `name` exists and is not being deleted (nothing new goes into one
/// that is).
pub fn active(ctx: &Ctx, name: &str) -> bool {
    ctx.informers
        .namespaces
        .store()
        .get(&ObjectRef::new(name))
        .is_some_and(|ns| {
            ns.metadata.deletion_timestamp.is_none()
                && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
        })
}

impl Reconcile for Controller {
    async fn reconcile(&self, ns: String) -> Result<Option<Duration>> {
        if !active(&self.ctx, &ns) {
            return Ok(None);
        }
        let cached = self
            .ctx
            .informers
            .serviceaccounts
            .store()
            .get(&ObjectRef::new(DEFAULT).within(&ns));
        if cached.is_some() {
            return Ok(None);
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {
                tracing::debug!(namespace = ns, "created the default service account");
                Ok(None)
            }
            // There already (the cache was behind), or the namespace is going away.
            Err(e) if matches!(util::code(&e), Some(409 | 403 | 404)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
