//! What a pod asks of a node: the effective requests (regular containers summed, init
//! containers at their peak with the sidecars started before them, plus overhead), its
//! host ports, and the defaults kube-scheduler scores pods without requests with.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Amounts of resources: cpu in millicores, the rest in units (bytes, pods, devices).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Res {
    pub cpu: i64,
    pub memory: i64,
    pub storage: i64,
    pub pods: i64,
    /// Extended resources (e.g. example.com/gpu), hugepages.
    pub other: BTreeMap<String, i64>,
}

/// What scoring assumes for a container that requests no cpu or memory.
pub const DEFAULT_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

fn amount(name: &str, q: &Quantity) -> i64 {
    let milli = minik_api::quantity::parse(&q.0).unwrap_or(0);
    let v = if name == "cpu" { milli } else { milli / 1000 };
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Res {
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Res {
        let mut r = Res::default();
        for (k, q) in map {
            r.set(k, amount(k, q));
        }
        r
    }

    fn set(&mut self, name: &str, v: i64) {
        match name {
            "cpu" => self.cpu = v,
            "memory" => self.memory = v,
            "ephemeral-storage" => self.storage = v,
            "pods" => self.pods = v,
            other => {
                self.other.insert(other.to_string(), v);
            }
        }
    }

    pub fn add(&mut self, o: &Res) {
        self.cpu += o.cpu;
        self.memory += o.memory;
        self.storage += o.storage;
        self.pods += o.pods;
        for (k, v) in &o.other {
            *self.other.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Res) {
        self.cpu -= o.cpu;
        self.memory -= o.memory;
        self.storage -= o.storage;
        self.pods -= o.pods;
        for (k, v) in &o.other {
            *self.other.entry(k.clone()).or_default() -= v;
        }
    }

    fn max(&mut self, o: &Res) {
        self.cpu = self.cpu.max(o.cpu);
        self.memory = self.memory.max(o.memory);
        self.storage = self.storage.max(o.storage);
        for (k, v) in &o.other {
            let e = self.other.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

fn container_requests(c: &Container) -> Res {
    let r = c.resources.as_ref();
    let mut out = r
        .and_then(|r| r.requests.as_ref())
        .map(Res::from_map)
        .unwrap_or_default();
    // A limit without a request is the request too.
    if let Some(limits) = r.and_then(|r| r.limits.as_ref()) {
        for (k, q) in limits {
            let have = r
                .and_then(|r| r.requests.as_ref())
                .is_some_and(|m| m.contains_key(k));
            if !have {
                out.set(k, amount(k, q));
            }
        }
    }
    out
}

/// The pod's effective requests (with `pods: 1`).
pub fn pod_requests(pod: &Pod) -> Res {
    let Some(spec) = &pod.spec else {
        return Res::default();
    };
    let mut total = Res::default();
    for c in &spec.containers {
        total.add(&container_requests(c));
    }
    let mut sidecars = Res::default();
    let mut init_peak = Res::default();
    for c in spec.init_containers.iter().flatten() {
        let req = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&req);
            init_peak.max(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&req);
            init_peak.max(&during);
        }
    }
    total.add(&sidecars);
    total.max(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Res::from_map(overhead));
    }
    total.pods = 1;
    total
}

/// cpu and memory as scoring counts them (defaults for containers that ask for none).
pub fn nonzero_requests(pod: &Pod) -> (i64, i64) {
    let Some(spec) = &pod.spec else {
        return (0, 0);
    };
    spec.containers.iter().fold((0, 0), |(cpu, mem), c| {
        let r = container_requests(c);
        let c = if r.cpu == 0 { DEFAULT_CPU } else { r.cpu };
        let m = if r.memory == 0 {
            DEFAULT_MEMORY
        } else {
            r.memory
        };
        (cpu + c, mem + m)
    })
}

/// The host ports a pod takes: (protocol, port, host IP).
pub fn host_ports(pod: &Pod) -> Vec<(String, i32, String)> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some((
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port,
                p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
            ))
        })
        .collect()
}

/// Whether two host ports collide (same protocol and port, and an overlapping address).
pub fn ports_conflict(a: &(String, i32, String), b: &(String, i32, String)) -> bool {
    a.0 == b.0 && a.1 == b.1 && (a.2 == b.2 || a.2 == "0.0.0.0" || b.2 == "0.0.0.0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn c(cpu: &str, always: bool) -> Container {
        Container {
            name: "c".into(),
            restart_policy: always.then(|| "Always".into()),
            resources: Some(ResourceRequirements {
                requests: Some(
                    [("cpu".to_string(), Quantity(cpu.into()))]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn init_containers_count_at_their_peak_with_sidecars() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![c("500m", false)],
                init_containers: Some(vec![c("200m", true), c("1", false)]),
                overhead: Some(
                    [("cpu".to_string(), Quantity("10m".into()))]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        // max(500m + 200m sidecar, 200m + 1000m init) + 10m overhead
        assert_eq!(pod_requests(&pod).cpu, 1210);
        assert_eq!(pod_requests(&pod).pods, 1);
        assert_eq!(nonzero_requests(&pod).1, DEFAULT_MEMORY);
    }
}
