//! The EndpointSlice controller: for every service with a selector, EndpointSlices named
//! `<service>-<random>` holding its pods as endpoints with their conditions (ready, serving,
//! terminating), node, zone and ports, at most 100 per slice, owned by the service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::Tracker;
use super::plan::{self, Desired, Group};
use crate::{Ctx, Queue, Reconcile, Result, util};

pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
const ZONE: &str = "topology.kubernetes.io/zone";

pub struct Controller {
    ctx: Ctx,
    tracker: Arc<Tracker>,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = super::start_with(ctx, "endpointslice", workers, |tracker| Controller {
        ctx: ctx.clone(),
        tracker,
    });
    // Slices of ours changed or deleted by someone else are put right.
    let q = queue.clone();
    ctx.informers.endpointslices.on(move |s, _| {
        if s.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER)
            && let Some(svc) = s.labels().get(SERVICE_NAME)
        {
            q.add(format!("{}/{svc}", s.namespace().unwrap_or_default()));
        }
    });
    queue
}

/// The endpoint of `pod` for an address of `family`, if it has one.
pub fn endpoint(pod: &Pod, svc: &Service, node: Option<&Node>, family: &str) -> Option<Endpoint> {
    let ip = super::ip_of(pod, family)?;
    let serving = util::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    // Never ready while terminating, unless the service publishes unready addresses.
    let ready = super::publish_not_ready(svc) || (serving && !terminating);
    Some(Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: super::hostname(pod, svc),
        node_name: super::node_name(pod),
        target_ref: Some(super::target_ref(pod)),
        zone: node.and_then(|n| n.labels().get(ZONE).cloned()),
        ..Default::default()
    })
}

/// The ports `pod` serves for the service (sorted).
pub fn ports(pod: &Pod, svc: &Service) -> Vec<EndpointPort> {
    let mut out: Vec<EndpointPort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(super::find_port(pod, sp)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    plan::sort_ports(&mut out);
    out
}

/// The endpoints `svc` should have, by address type and ports.
pub fn desired(
    svc: &Service,
    pods: &[Arc<Pod>],
    node: impl Fn(&str) -> Option<Arc<Node>>,
) -> Desired {
    let mut out = Desired::new();
    for family in super::families(svc) {
        for pod in pods {
            let n = super::node_name(pod).and_then(|n| node(&n));
            let Some(e) = endpoint(pod, svc, n.as_deref(), &family) else {
                continue;
            };
            let ports = ports(pod, svc);
            out.entry(plan::group_key(&family, &ports))
                .or_insert_with(|| Group {
                    address_type: family.clone(),
                    ports,
                    endpoints: Vec::new(),
                })
                .endpoints
                .push(e);
        }
    }
    out
}

impl Controller {
    fn api(&self, ns: &str) -> Api<EndpointSlice> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// The slices this controller made for service `name`.
    async fn owned(&self, ns: &str, name: &str) -> Result<Vec<EndpointSlice>> {
        let lp = ListParams::default()
            .labels(&format!("{SERVICE_NAME}={name},{MANAGED_BY}={CONTROLLER}"));
        Ok(self.api(ns).list(&lp).await?.items)
    }

    async fn delete(&self, ns: &str, names: &[String]) -> Result<()> {
        for name in names {
            match self.api(ns).delete(name, &DeleteParams::default()).await {
                Err(e) if util::code(&e) != Some(404) => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    async fn sync(&self, svc: &Service, ns: &str, name: &str, at: Option<String>) -> Result<()> {
        let pods = super::candidates(&self.ctx, svc, true);
        let nodes = self.ctx.informers.nodes.store();
        let want = desired(svc, &pods, |n| nodes.get(&ObjectRef::new(n)));
        let existing = self.owned(ns, name).await?;
        let primary = super::families(svc).remove(0);
        let plan = plan::plan(existing, want, &primary);
        let mut labels = super::labels_for(svc);
        labels.insert(SERVICE_NAME.into(), name.into());
        labels.insert(MANAGED_BY.into(), CONTROLLER.into());
        let stamp = |meta: &mut ObjectMeta| {
            let a = meta.annotations.get_or_insert_with(BTreeMap::new);
            match &at {
                Some(t) => a.insert(super::TRIGGER_TIME.into(), t.clone()),
                None => a.remove(super::TRIGGER_TIME),
            };
        };
        self.delete(ns, &plan.delete).await?;
        let api = self.api(ns);
        let pp = PostParams::default();
        for mut s in plan.update {
            s.metadata.labels = Some(labels.clone());
            stamp(&mut s.metadata);
            api.replace(&s.name_any(), &pp, &s).await?;
        }
        for s in plan.keep.into_iter().filter(|s| s.labels() != &labels) {
            let mut s = s;
            s.metadata.labels = Some(labels.clone());
            api.replace(&s.name_any(), &pp, &s).await?;
        }
        for g in plan.create {
            let mut meta = ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.into()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![util::controller_ref(svc)]),
                ..Default::default()
            };
            stamp(&mut meta);
            let slice = EndpointSlice {
                metadata: meta,
                address_type: g.address_type,
                endpoints: Some(g.endpoints),
                ports: (!g.ports.is_empty()).then_some(g.ports),
            };
            match api.create(&pp, &slice).await {
                Err(e) if util::code(&e) == Some(403) && super::terminating(&self.ctx, ns) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let (Some(ns), name) = util::split(&key) else {
            return Ok(None);
        };
        if ns == "default" && name == "kubernetes" {
            return Ok(None);
        }
        let store = self.ctx.informers.services.store();
        let at = self.tracker.take(&key);
        let Some(svc) = store.get(&ObjectRef::new(name).within(ns)) else {
            // The service is gone: so are its slices (as the garbage collector would).
            let names: Vec<String> = self
                .owned(ns, name)
                .await?
                .iter()
                .map(|s| s.name_any())
                .collect();
            self.delete(ns, &names).await?;
            return Ok(None);
        };
        if super::selector(&svc).is_none() {
            return Ok(None);
        }
        if let Err(e) = self.sync(&svc, ns, name, at.map(super::format_time)).await {
            self.tracker.give_back(&key, at);
            return Err(e);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_objects::{pod, service};
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    #[test]
    fn conditions_follow_readiness_and_termination() {
        let svc = service(json!({"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}));
        let mut gone = pod("c", "10.42.0.7", true);
        gone.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let pods = [
            pod("a", "10.42.0.5", true),
            pod("b", "10.42.0.6", false),
            gone,
        ]
        .map(Arc::new);
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1",
            "labels": {ZONE: "z1"}}}))
        .unwrap();
        let node = Arc::new(node);
        let want = desired(&svc, &pods, |_| Some(node.clone()));
        assert_eq!(want.len(), 1);
        let g = want.values().next().unwrap();
        assert_eq!(g.address_type, "IPv4");
        assert_eq!(g.ports[0].port, Some(8080));
        assert_eq!(g.ports[0].name.as_deref(), Some("http"));
        let cond = |i: usize| {
            let c = g.endpoints[i].conditions.clone().unwrap();
            (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        };
        assert_eq!(cond(0), (true, true, false));
        assert_eq!(cond(1), (false, false, false));
        assert_eq!(cond(2), (false, true, true));
        assert_eq!(g.endpoints[0].zone.as_deref(), Some("z1"));
        assert_eq!(g.endpoints[0].node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn pods_without_an_address_of_the_family_are_left_out() {
        let svc = service(json!({"selector": {"app": "web"}, "ipFamilies": ["IPv6"],
            "ports": [{"port": 80}]}));
        let pods = [pod("a", "10.42.0.5", true)].map(Arc::new);
        assert!(desired(&svc, &pods, |_| None).is_empty());
    }
}
