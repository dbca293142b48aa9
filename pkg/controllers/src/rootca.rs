//! The root CA publisher: every active namespace has the ConfigMap `kube-root-ca.crt`
//! holding the cluster's CA (`ca.crt`), which pods' projected service-account volumes
//! mount; edited or deleted, it is put back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::{Ctx, Queue, Reconcile, Result, util};

pub const NAME: &str = "kube-root-ca.crt";
const DESCRIPTION_KEY: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
when using internal endpoints such as the internal service IP or kubernetes.default.svc. No \
other usage is guaranteed across distributions of Kubernetes clusters.";

pub struct Controller {
    ctx: Ctx,
    ca: String,
}

pub fn start(ctx: &Ctx, ca: String, workers: usize) -> Queue {
    let queue = Queue::new("root_ca_cert_publisher", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers
        .namespaces
        .on(move |ns, _| q.add(ns.name_any()));
    let q = queue.clone();
    ctx.informers.configmaps.on(move |cm, _| {
        if cm.name_any() == NAME {
            q.add(cm.namespace().unwrap_or_default());
        }
    });
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        ca,
    });
    ctx.spawn_workers("root_ca_cert_publisher", &queue, workers, this);
    queue
}

/// What the ConfigMap should be, from what it is (None: create it); None when it is right.
pub fn wanted(current: Option<&ConfigMap>, ns: &str, ca: &str) -> Option<ConfigMap> {
    let data = BTreeMap::from([("ca.crt".to_string(), ca.to_string())]);
    let right = current.is_some_and(|c| {
        c.data.as_ref() == Some(&data)
            && c.binary_data.as_ref().is_none_or(BTreeMap::is_empty)
            && c.annotations().get(DESCRIPTION_KEY).map(String::as_str) == Some(DESCRIPTION)
    });
    if right {
        return None;
    }
    let mut meta = current.map(|c| c.metadata.clone()).unwrap_or(ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    });
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_KEY.into(), DESCRIPTION.into());
    Some(ConfigMap {
        metadata: meta,
        data: Some(data),
        binary_data: None,
        immutable: None,
    })
}

impl Reconcile for Controller {
    async fn reconcile(&self, ns: String) -> Result<Option<Duration>> {
        if !crate::serviceaccount::active(&self.ctx, &ns) {
            return Ok(None);
        }
        let store = self.ctx.informers.configmaps.store();
        let current = store.get(&ObjectRef::new(NAME).within(&ns));
        if current
            .as_ref()
            .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
        {
            return Ok(None);
        }
        let Some(cm) = wanted(current.as_deref(), &ns, &self.ca) else {
            return Ok(None);
        };
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &ns);
        let pp = PostParams::default();
        let written = match current {
            Some(_) => api.replace(NAME, &pp, &cm).await.map(drop),
            None => api.create(&pp, &cm).await.map(drop),
        };
        match written {
            Ok(()) => Ok(None),
            // The cache was behind (its next event brings the key back), or the namespace
            // is going away.
            Err(e) if matches!(util::code(&e), Some(409 | 403 | 404)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_is_made_and_put_right() {
        let made = wanted(None, "ns", "PEM").unwrap();
        assert_eq!(made.metadata.name.as_deref(), Some(NAME));
        assert_eq!(made.data.as_ref().unwrap()["ca.crt"], "PEM");
        assert!(wanted(Some(&made), "ns", "PEM").is_none());
        let mut edited = made.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        edited.metadata.labels = Some(BTreeMap::from([("keep".into(), "me".into())]));
        let fixed = wanted(Some(&edited), "ns", "PEM").unwrap();
        assert_eq!(fixed.data, made.data);
        assert_eq!(fixed.labels()["keep"], "me");
        assert!(wanted(Some(&made), "ns", "NEW").is_some());
    }
}
