//! What the Endpoints and EndpointSlice controllers share: which services a pod change
//! concerns (the services that select it now or selected it before), when the change
//! happened (the `last-change-trigger-time`), and how a service port maps to a pod's port.

mod plan;
pub mod slices;
pub mod subsets;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::{Change, Ctx, Queue, util};

pub use slices::start as start_slices;
pub use subsets::start;

pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
const HEADLESS: &str = "service.kubernetes.io/headless";

/// The services a pod change concerns, and when each first changed since its last sync.
#[derive(Default)]
pub struct Tracker {
    /// pod key -> the service keys that selected it when last seen, and what of it they
    /// publish (`fingerprint`).
    selected_by: Mutex<HashMap<String, (HashSet<String>, u64)>>,
    /// service key -> the earliest change not yet synced.
    pending: Mutex<HashMap<String, Timestamp>>,
}

/// Start a controller named `name` over services: its queue, fed by a tracker of the pods
/// and services it concerns, and `workers` running what `make` builds around the tracker.
fn start_with<R: crate::Reconcile>(
    ctx: &Ctx,
    name: &'static str,
    workers: usize,
    make: impl FnOnce(Arc<Tracker>) -> R,
) -> Queue {
    let queue = Queue::new(name, ctx.metrics.clone());
    let tracker = Arc::new(Tracker::default());
    tracker.watch(ctx, &queue);
    ctx.spawn_workers(name, &queue, workers, Arc::new(make(tracker)));
    queue
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tracker {
    /// Queue every service of `queue` that a service or pod change concerns.
    pub fn watch(self: &Arc<Self>, ctx: &Ctx, queue: &Queue) {
        let (me, q) = (self.clone(), queue.clone());
        ctx.informers.services.on(move |svc, change| {
            let at = match change {
                Change::Applied => svc.creation_timestamp().map(|t| t.0),
                Change::Deleted => None,
            };
            me.changed(&util::key(svc), at);
            q.add(util::key(svc));
        });
        let (me, q, services) = (self.clone(), queue.clone(), ctx.informers.services.clone());
        ctx.informers.pods.on(move |pod, change| {
            // A service made after the pod's last change selects it without the map
            // knowing: its deletion concerns that service too.
            let selecting: HashSet<String> = services
                .store()
                .state()
                .iter()
                .filter(|s| selects(s, pod))
                .map(|s| util::key(s.as_ref()))
                .collect();
            let now = match change {
                Change::Deleted => HashSet::new(),
                Change::Applied => selecting.clone(),
            };
            let print = fingerprint(pod);
            let before = {
                let mut map = lock(&me.selected_by);
                if now.is_empty() {
                    map.remove(&util::key(pod))
                } else {
                    map.insert(util::key(pod), (now.clone(), print))
                }
            };
            // Status writes that change nothing endpoints show concern nobody.
            if before.as_ref() == Some(&(now.clone(), print)) {
                return;
            }
            let at = pod_trigger_time(pod, change);
            let before = before.map(|b| b.0);
            for svc in selecting.iter().chain(before.iter().flatten()) {
                me.changed(svc, Some(at));
                q.add(svc.clone());
            }
        });
    }

    fn changed(&self, svc: &str, at: Option<Timestamp>) {
        if let Some(at) = at {
            let mut pending = lock(&self.pending);
            let t = pending.entry(svc.to_string()).or_insert(at);
            *t = (*t).min(at);
        }
    }

    /// The earliest change to `svc` since its last sync (forgotten: the sync takes it).
    pub fn take(&self, svc: &str) -> Option<Timestamp> {
        lock(&self.pending).remove(svc)
    }

    /// A failed sync gives its change time back.
    pub fn give_back(&self, svc: &str, at: Option<Timestamp>) {
        self.changed(svc, at);
    }
}

/// A hash of what endpoints show of a pod: labels, addresses, readiness, termination,
/// names, node and ports.
fn fingerprint(pod: &Pod) -> u64 {
    use std::hash::{Hash, Hasher};
    let spec = pod.spec.as_ref();
    let ports: Vec<_> = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .map(|c| {
            (
                c.restart_policy.clone(),
                serde_json::to_string(&c.ports).ok(),
            )
        })
        .collect();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        pod.labels(),
        pod_ips(pod),
        util::is_ready(pod),
        pod.metadata.deletion_timestamp.is_some(),
        util::is_terminal(pod),
        spec.map(|s| (&s.hostname, &s.subdomain, &s.node_name)),
        ports,
    )
        .hash(&mut h);
    h.finish()
}

/// When a pod change happened: its deletion, its last readiness change, or its creation.
fn pod_trigger_time(pod: &Pod, change: Change) -> Timestamp {
    let deleted = pod.metadata.deletion_timestamp.as_ref().map(|t| t.0);
    if change == Change::Deleted {
        return deleted.unwrap_or_else(Timestamp::now);
    }
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    deleted
        .or(ready)
        .or_else(|| pod.creation_timestamp().map(|t| t.0))
        .unwrap_or_else(Timestamp::now)
}

/// The trigger time as the annotation writes it (RFC 3339 in UTC).
pub fn format_time(t: Timestamp) -> String {
    t.to_string()
}

/// The selector of a service the controllers manage (None: the user manages its endpoints,
/// it is an ExternalName alias, or it is the API server's own `kubernetes` service).
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    if svc.namespace().as_deref() == Some("default") && svc.name_any() == "kubernetes" {
        return None;
    }
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `svc` selects `pod`.
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    svc.namespace() == pod.namespace()
        && selector(svc).is_some_and(|sel| sel.iter().all(|(k, v)| pod.labels().get(k) == Some(v)))
}

/// The pods of `svc` that may be endpoints: not finished, with an IP, and not being deleted
/// unless `include_terminating`.
pub fn candidates(ctx: &Ctx, svc: &Service, include_terminating: bool) -> Vec<Arc<Pod>> {
    let mut pods: Vec<Arc<Pod>> = ctx
        .informers
        .pods
        .store()
        .state()
        .into_iter()
        .filter(|p| selects(svc, p) && !util::is_terminal(p) && !pod_ips(p).is_empty())
        .filter(|p| include_terminating || p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by_key(|p| p.name_any());
    pods
}

/// The pod's IPs (status.podIPs, or status.podIP).
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .iter()
        .filter(|ip| !ip.is_empty())
        .cloned()
        .collect()
}

/// "IPv4" or "IPv6", as addressType and ipFamilies spell them.
pub fn family_of(ip: &str) -> &'static str {
    if ip.contains(':') { "IPv6" } else { "IPv4" }
}

/// The service's IP families, primary first (IPv4 when it names none).
pub fn families(svc: &Service) -> Vec<String> {
    let spec = svc.spec.as_ref();
    let named = spec.and_then(|s| s.ip_families.clone()).unwrap_or_default();
    if !named.is_empty() {
        return named;
    }
    let cluster_ip = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    let family = if cluster_ip.contains(':') {
        "IPv6"
    } else {
        "IPv4"
    };
    vec![family.to_string()]
}

/// The pod's IP of `family`, if it has one.
pub fn ip_of(pod: &Pod, family: &str) -> Option<String> {
    pod_ips(pod).into_iter().find(|ip| family_of(ip) == family)
}

/// The pod port a service port sends to: a number as is, a name looked up among the pod's
/// container (and sidecar) ports of the same protocol. None when the pod has no such port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(name)) => name,
    };
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name.as_str())
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}

/// The pod's hostname in the service's DNS, when its subdomain is the service.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace())
    .then(|| host.to_string())
}

pub fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// A reference to the pod, as endpoints carry it.
pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..Default::default()
    }
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The service's labels, with the headless label on headless services.
pub fn labels_for(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if is_headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels
}

/// Whether namespace `ns` is being deleted (writes into it are refused, and need not be).
pub fn terminating(ctx: &Ctx, ns: &str) -> bool {
    ctx.informers
        .namespaces
        .store()
        .get(&kube::runtime::reflector::ObjectRef::new(ns))
        .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

#[cfg(test)]
pub(crate) mod test_objects {
    use k8s_openapi::api::core::v1::{Pod, Service};
    use serde_json::json;

    pub fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns",
            "uid": "svc-uid", "labels": {"team": "a"}}, "spec": spec}))
        .unwrap()
    }

    /// A pod `name` with label app=web on node n1, with `ip`, Ready or not.
    pub fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_objects::{pod, service};
    use super::*;
    use serde_json::json;

    #[test]
    fn named_target_ports_resolve_per_pod_and_protocol() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"name": "a", "port": 80, "targetPort": "http"},
            {"name": "b", "port": 81, "protocol": "UDP", "targetPort": "http"},
            {"name": "c", "port": 82, "targetPort": 9000},
            {"name": "d", "port": 83}]}));
        let p = pod("p1", "10.42.0.5", true);
        let ports = svc.spec.as_ref().unwrap().ports.as_ref().unwrap();
        let found: Vec<Option<i32>> = ports.iter().map(|sp| find_port(&p, sp)).collect();
        assert_eq!(found, vec![Some(8080), None, Some(9000), Some(83)]);
        assert!(selects(&svc, &p));
    }

    #[test]
    fn hostnames_only_for_pods_in_the_service_subdomain() {
        let svc = service(json!({"selector": {"app": "web"}}));
        let mut p = pod("p1", "10.42.0.5", true);
        p.spec.as_mut().unwrap().hostname = Some("h".into());
        assert_eq!(hostname(&p, &svc), None);
        p.spec.as_mut().unwrap().subdomain = Some("web".into());
        assert_eq!(hostname(&p, &svc).as_deref(), Some("h"));
    }

    #[test]
    fn services_without_selectors_and_the_kubernetes_service_are_left_alone() {
        assert!(selector(&service(json!({"ports": [{"port": 80}]}))).is_none());
        assert!(selector(&service(json!({"selector": {}}))).is_none());
        let alias = json!({"type": "ExternalName", "externalName": "example.com",
            "selector": {"app": "web"}});
        assert!(selector(&service(alias)).is_none());
        let mut k = service(json!({"selector": {"app": "web"}}));
        k.metadata.namespace = Some("default".into());
        k.metadata.name = Some("kubernetes".into());
        assert!(selector(&k).is_none());
    }
}
