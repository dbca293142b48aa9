//! The cluster's Services as a watch keeps them, kubelet's service lister: every container
//! start needs them for its service-link environment variables, and listing them from the
//! API for each one costs a round trip (two, outside the default namespace) per container.
//! Until the first list has arrived the API is asked directly.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use minik_controllers::Informer;
use tokio_util::sync::CancellationToken;

use super::api::{self, LookupError};

/// A watch of every Service, started at the first use.
pub struct ServiceCache {
    client: kube::Client,
    informer: OnceLock<Arc<Informer<Service>>>,
    stop: CancellationToken,
}

impl ServiceCache {
    pub fn new(client: kube::Client) -> ServiceCache {
        ServiceCache {
            client,
            informer: OnceLock::new(),
            stop: CancellationToken::new(),
        }
    }

    /// The services a container of a pod in `namespace` sees, as `api::services` gives them.
    pub async fn services(
        &self,
        namespace: &str,
        links: bool,
    ) -> Result<Vec<Service>, LookupError> {
        let informer = self.informer.get_or_init(|| {
            let informer = Informer::new(Api::all(self.client.clone()));
            tokio::spawn(informer.clone().run(self.stop.clone()));
            informer
        });
        if !informer.is_synced() {
            return api::services(&self.client, namespace, links).await;
        }
        Ok(select(&informer.store().state(), namespace, links))
    }
}

/// What `api::services` would list: the namespace's services (with service links), and
/// the default namespace's `kubernetes` service.
fn select(all: &[Arc<Service>], namespace: &str, links: bool) -> Vec<Service> {
    let in_ns = |s: &Service, ns: &str| s.metadata.namespace.as_deref() == Some(ns);
    let mut out: Vec<Service> = if links {
        all.iter()
            .filter(|s| in_ns(s, namespace))
            .map(|s| s.as_ref().clone())
            .collect()
    } else {
        Vec::new()
    };
    if !links || namespace != "default" {
        let kubernetes = all
            .iter()
            .find(|s| in_ns(s, "default") && s.metadata.name.as_deref() == Some("kubernetes"));
        if let Some(k) = kubernetes {
            out.retain(|s| s.metadata.name.as_deref() != Some("kubernetes"));
            out.push(k.as_ref().clone());
        }
    }
    out
}

impl Drop for ServiceCache {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str) -> Arc<Service> {
        let mut s = Service::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        Arc::new(s)
    }

    fn names(list: &[Service]) -> Vec<String> {
        list.iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn a_pod_sees_its_namespace_and_the_kubernetes_service() {
        let all = [
            svc("default", "kubernetes"),
            svc("default", "web"),
            svc("apps", "db"),
            svc("apps", "cache"),
        ];
        assert_eq!(
            names(&select(&all, "apps", true)),
            ["apps/db", "apps/cache", "default/kubernetes"]
        );
        assert_eq!(
            names(&select(&all, "default", true)),
            ["default/kubernetes", "default/web"]
        );
        assert_eq!(names(&select(&all, "apps", false)), ["default/kubernetes"]);
        assert_eq!(
            names(&select(&all, "default", false)),
            ["default/kubernetes"]
        );
        assert!(select(&all[1..], "other", true).is_empty());
    }
}
