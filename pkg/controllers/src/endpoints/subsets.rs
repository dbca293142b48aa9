//! The Endpoints controller: for every service with a selector, an Endpoints object of the
//! same name listing its pods' addresses (ready ones in `addresses`, the others in
//! `notReadyAddresses`) grouped by the ports they serve, at most 1000 of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::Tracker;
use crate::{Change, Ctx, Queue, Reconcile, Result, util};

const MAX_CAPACITY: usize = 1000;
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

pub struct Controller {
    ctx: Ctx,
    tracker: Arc<Tracker>,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = super::start_with(ctx, "endpoint", workers, |tracker| Controller {
        ctx: ctx.clone(),
        tracker,
    });
    // Endpoints deleted by someone else come back.
    let q = queue.clone();
    ctx.informers.endpoints.on(move |ep, change| {
        if change == Change::Deleted {
            q.add(util::key(ep));
        }
    });
    queue
}

/// One pod address with the ports it serves, before packing.
struct Entry {
    address: EndpointAddress,
    ready: bool,
    ports: Vec<EndpointPort>,
}

fn address(pod: &Pod, svc: &Service, ip: String) -> EndpointAddress {
    EndpointAddress {
        ip,
        hostname: super::hostname(pod, svc),
        node_name: super::node_name(pod),
        target_ref: Some(super::target_ref(pod)),
    }
}

fn port(sp: &ServicePort, number: i32) -> EndpointPort {
    EndpointPort {
        name: sp.name.clone().filter(|n| !n.is_empty()),
        port: number,
        protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
        app_protocol: sp.app_protocol.clone(),
    }
}

/// The subsets of `svc` over `pods` (already the service's candidates).
pub fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let tolerate = super::publish_not_ready(svc);
    let family = super::families(svc).remove(0);
    let service_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut entries = Vec::new();
    for pod in pods {
        let Some(ip) = super::ip_of(pod, &family) else {
            continue;
        };
        let ready = tolerate || util::is_ready(pod);
        let address = address(pod, svc, ip);
        if service_ports.is_empty() {
            // Only headless services list addresses without ports.
            if super::is_headless(svc) {
                entries.push(Entry {
                    address,
                    ready,
                    ports: Vec::new(),
                });
            }
            continue;
        }
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|sp| super::find_port(pod, sp).map(|n| port(sp, n)))
            .collect();
        if !ports.is_empty() {
            entries.push(Entry {
                address,
                ready,
                ports,
            });
        }
    }
    repack(entries)
}

/// Addresses serving the same set of ports share a subset (as RepackSubsets does); addresses
/// sorted by IP, ports by name and number.
fn repack(entries: Vec<Entry>) -> Vec<EndpointSubset> {
    type PortKey = Vec<(Option<String>, i32, Option<String>, Option<String>)>;
    let mut groups: BTreeMap<PortKey, (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<_>)> =
        BTreeMap::new();
    for mut e in entries {
        e.ports
            .sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        e.ports.dedup();
        let key: PortKey = e
            .ports
            .iter()
            .map(|p| {
                let id = (p.name.clone(), p.port, p.protocol.clone());
                (id.0, id.1, id.2, p.app_protocol.clone())
            })
            .collect();
        let group = groups
            .entry(key)
            .or_insert_with(|| (e.ports, vec![], vec![]));
        if e.ready {
            group.1.push(e.address);
        } else {
            group.2.push(e.address);
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            sort_addresses(&mut ready);
            sort_addresses(&mut not_ready);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

fn sort_addresses(a: &mut [EndpointAddress]) {
    a.sort_by(|x, y| {
        let uid = |e: &EndpointAddress| e.target_ref.as_ref().and_then(|r| r.uid.clone());
        (&x.ip, uid(x)).cmp(&(&y.ip, uid(y)))
    });
}

/// Keep at most 1000 addresses, ready ones first, each subset keeping its share (the last
/// takes what rounding leaves). Whether any were cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let cut_ready = ready > MAX_CAPACITY;
    let (max, total) = if cut_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut left = max;
    let last = subsets.len().saturating_sub(1);
    for (i, s) in subsets.iter_mut().enumerate() {
        let field = if cut_ready {
            s.not_ready_addresses = None;
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let here = count(field);
        let allowed = if i == last {
            left
        } else {
            (here * max / total.max(1)).min(left)
        };
        left -= allowed;
        if let Some(v) = field.as_mut() {
            v.truncate(allowed);
            if v.is_empty() {
                *field = None;
            }
        }
    }
    true
}

impl Controller {
    async fn sync(&self, svc: &Service, ns: &str, name: &str, at: Option<&str>) -> Result<()> {
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), ns);
        let pods = super::candidates(&self.ctx, svc, super::publish_not_ready(svc));
        let mut subsets = subsets(svc, &pods);
        let truncated = truncate(&mut subsets);
        let current = match api.get_opt(name).await? {
            Some(c) if c.metadata.deletion_timestamp.is_some() => return Ok(()),
            other => other,
        };
        let labels = super::labels_for(svc);
        if let Some(c) = &current {
            let same = c.subsets.clone().unwrap_or_default() == subsets
                && c.labels() == &labels
                && c.annotations().contains_key(OVER_CAPACITY) == truncated;
            if same {
                return Ok(());
            }
        }
        let mut annotations = current
            .as_ref()
            .map(|c| c.annotations().clone())
            .unwrap_or_default();
        set(
            &mut annotations,
            super::TRIGGER_TIME,
            at.map(str::to_string),
        );
        set(
            &mut annotations,
            OVER_CAPACITY,
            truncated.then(|| "truncated".into()),
        );
        let ep = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(labels),
                annotations: Some(annotations),
                resource_version: current.as_ref().and_then(|c| c.resource_version()),
                ..current.map(|c| c.metadata).unwrap_or_default()
            },
            subsets: (!subsets.is_empty()).then_some(subsets),
        };
        let pp = PostParams::default();
        let written = if ep.metadata.resource_version.is_some() {
            api.replace(name, &pp, &ep).await
        } else {
            api.create(&pp, &ep).await
        };
        match written {
            Ok(_) => Ok(()),
            // The service's namespace is going away: nothing to publish.
            Err(e) if util::code(&e) == Some(403) && super::terminating(&self.ctx, ns) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn set(map: &mut BTreeMap<String, String>, key: &str, value: Option<String>) {
    match value {
        Some(v) => map.insert(key.into(), v),
        None => map.remove(key),
    };
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
        let Some(svc) = store.get(&ObjectRef::new(name).within(ns)) else {
            // The service is gone: so are its endpoints.
            let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), ns);
            self.tracker.take(&key);
            return match api.delete(name, &DeleteParams::default()).await {
                Err(e) if util::code(&e) != Some(404) => Err(e.into()),
                _ => Ok(None),
            };
        };
        if super::selector(&svc).is_none() {
            self.tracker.take(&key);
            return Ok(None);
        }
        let at = self.tracker.take(&key);
        let stamp = at.map(super::format_time);
        if let Err(e) = self.sync(&svc, ns, name, stamp.as_deref()).await {
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
    use serde_json::json;
    use std::collections::BTreeSet;

    /// The IPs of a list of addresses.
    fn ips(v: &Option<Vec<EndpointAddress>>) -> BTreeSet<String> {
        v.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_share_a_subset_by_ports() {
        let svc = service(json!({"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}));
        let pods = vec![
            Arc::new(pod("b", "10.42.0.6", false)),
            Arc::new(pod("a", "10.42.0.5", true)),
        ];
        let s = subsets(&svc, &pods);
        assert_eq!(s.len(), 1);
        assert_eq!(ips(&s[0].addresses), BTreeSet::from(["10.42.0.5".into()]));
        assert_eq!(
            ips(&s[0].not_ready_addresses),
            BTreeSet::from(["10.42.0.6".into()])
        );
        let ports = s[0].ports.as_ref().unwrap();
        assert_eq!(
            (ports[0].port, ports[0].name.as_deref()),
            (8080, Some("http"))
        );
        let a = &s[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn pods_resolving_named_ports_differently_get_their_own_subsets() {
        let svc = service(
            json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true,
            "ports": [{"port": 80, "targetPort": "http"}]}),
        );
        let mut other = pod("b", "10.42.0.6", false);
        other.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .container_port = 9090;
        let none = {
            let mut p = pod("c", "10.42.0.7", true);
            p.spec.as_mut().unwrap().containers[0].ports = None;
            p
        };
        let pods = [pod("a", "10.42.0.5", true), other, none].map(Arc::new);
        let s = subsets(&svc, &pods);
        assert_eq!(s.len(), 2, "{s:?}");
        // publishNotReadyAddresses: the unready pod is listed as ready.
        assert!(s.iter().all(|s| s.not_ready_addresses.is_none()));
    }

    #[test]
    fn over_a_thousand_addresses_are_cut_ready_first() {
        let mk = |n: usize, ip: &str| {
            (0..n)
                .map(|i| EndpointAddress {
                    ip: format!("{ip}.{i}"),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
        };
        let mut s = vec![
            EndpointSubset {
                addresses: Some(mk(600, "10.0")),
                not_ready_addresses: Some(mk(300, "10.1")),
                ports: None,
            },
            EndpointSubset {
                addresses: Some(mk(200, "10.2")),
                not_ready_addresses: Some(mk(100, "10.3")),
                ports: None,
            },
        ];
        assert!(truncate(&mut s));
        let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
        let ready: usize = s.iter().map(|s| count(&s.addresses)).sum();
        let not_ready: usize = s.iter().map(|s| count(&s.not_ready_addresses)).sum();
        assert_eq!((ready, not_ready), (800, 200));
        assert!(!truncate(&mut s));
    }
}
