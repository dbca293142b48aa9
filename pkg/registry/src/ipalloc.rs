//! Service allocations. ClusterIPs as kube-apiserver's IPAddress allocator does it: each
//! allocated IP is an `IPAddress` object named by the IP, so two services can never get the
//! same one (the second create of the same name fails). NodePorts (30000-32767) the same way
//! with one store key per port.

use std::net::Ipv4Addr;

use minik_api::ResourceInfo;
use rand::Rng;
use serde_json::{Value, json};

use crate::error::{ApiError, Cause, Result};
use crate::rest::{Registry, WriteParams};

/// An IPv4 service range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for ServiceCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s:?}: bad IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .map_err(|_| format!("{s:?}: bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s:?}: the prefix must be /8 to /30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ServiceCidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl Default for ServiceCidr {
    fn default() -> Self {
        ServiceCidr {
            base: Ipv4Addr::new(10, 43, 0, 0),
            prefix: 16,
        }
    }
}

impl ServiceCidr {
    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.base)) >> (32 - self.prefix) == 0
    }

    /// The n-th address (the network and broadcast addresses are never handed out).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }
}

fn ip_info() -> &'static ResourceInfo {
    minik_api::builtin("networking.k8s.io", "v1", "ipaddresses")
}

fn not_allocatable(svc: &str, ip: &str, why: &str) -> ApiError {
    let services = minik_api::builtin("", "v1", "services");
    ApiError::invalid(
        services,
        svc,
        vec![Cause {
            field: "spec.clusterIPs".into(),
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: {why}"),
        }],
    )
}

impl Registry {
    async fn reserve(&self, ip: Ipv4Addr, ns: &str, svc: &str) -> Result<bool> {
        let obj = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
            "metadata": {"name": ip.to_string(), "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}},
            "spec": {"parentRef": {"group": "", "resource": "services", "namespace": ns, "name": svc}}});
        match Box::pin(self.create(ip_info(), None, obj, &WriteParams::default())).await {
            Ok(_) => Ok(true),
            Err(ApiError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give a new service its ClusterIP (the one it asks for, or a free one).
    pub(crate) async fn allocate_cluster_ip(&self, ns: &str, svc: &mut Value) -> Result<()> {
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let spec = &svc["spec"];
        if spec.get("type").and_then(Value::as_str) == Some("ExternalName")
            || spec.get("clusterIP").and_then(Value::as_str) == Some("None")
        {
            return Ok(());
        }
        let cidr = self.service_cidr;
        let ip = match spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(asked) => {
                let ip: Ipv4Addr = asked
                    .parse()
                    .map_err(|_| not_allocatable(&name, asked, "it is not an IPv4 address"))?;
                if !cidr.contains(ip) {
                    return Err(not_allocatable(
                        &name,
                        asked,
                        "the provided IP is not in the valid range",
                    ));
                }
                if !self.reserve(ip, ns, &name).await? {
                    return Err(not_allocatable(
                        &name,
                        asked,
                        "provided IP is already allocated",
                    ));
                }
                ip
            }
            None => {
                let size = cidr.size();
                let start = rand::rng().random_range(1..size - 1);
                let mut found = None;
                for i in 0..size - 2 {
                    // Offsets 1..size-2, starting at a random one; the first 16 addresses
                    // are left for services that ask for one (10.43.0.1, 10.43.0.10).
                    let n = 1 + (start - 1 + i) % (size - 2);
                    if n < 16 && size > 256 {
                        continue;
                    }
                    if self.reserve(cidr.nth(n), ns, &name).await? {
                        found = Some(cidr.nth(n));
                        break;
                    }
                }
                found.ok_or_else(|| not_allocatable(&name, "", "the service range is full"))?
            }
        };
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        Ok(())
    }

    /// Give a new service its ClusterIP and, for NodePort and LoadBalancer services, its
    /// node ports. Nothing stays allocated when this fails.
    pub(crate) async fn allocate_service(&self, ns: &str, svc: &mut Value) -> Result<()> {
        self.allocate_cluster_ip(ns, svc).await?;
        if let Err(e) = self.allocate_node_ports(ns, svc).await {
            self.release_cluster_ip(svc).await;
            return Err(e);
        }
        Ok(())
    }

    /// Free what a deleted service held.
    pub(crate) async fn release_service(&self, svc: &Value) {
        self.release_cluster_ip(svc).await;
        for port in node_ports(svc) {
            let _ = self.store.delete(&node_port_key(port), None).await;
        }
    }

    /// A new service's node ports: an update from nothing.
    async fn allocate_node_ports(&self, ns: &str, svc: &mut Value) -> Result<()> {
        self.update_node_ports(ns, &Value::Null, svc)
            .await
            .map(|_| ())
    }

    /// Give ports that need one a node port (keeping those `old` already holds), and drop
    /// node ports from a type that has none. Returns the ports taken here, to give back if
    /// the write fails; on an error nothing taken here stays taken.
    pub(crate) async fn update_node_ports(
        &self,
        ns: &str,
        old: &Value,
        svc: &mut Value,
    ) -> Result<Vec<i64>> {
        let held = node_ports(old);
        let needs = matches!(
            svc.pointer("/spec/type").and_then(Value::as_str),
            Some("NodePort" | "LoadBalancer")
        );
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let owner = format!("{ns}/{name}").into_bytes();
        let count = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mut taken = Vec::new();
        for i in 0..count {
            let port = &mut svc["spec"]["ports"][i];
            if !needs {
                if let Some(m) = port.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            let asked = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
            if asked != 0 && held.contains(&asked) {
                continue;
            }
            match self.node_port(asked, &owner).await {
                Some(p) => {
                    taken.push(p);
                    svc["spec"]["ports"][i]["nodePort"] = json!(p);
                }
                None => {
                    self.release_node_ports(&taken).await;
                    return Err(node_port_error(&name, i, asked));
                }
            }
        }
        Ok(taken)
    }

    /// Give node ports back.
    pub(crate) async fn release_node_ports(&self, ports: &[i64]) {
        for p in ports {
            let _ = self.store.delete(&node_port_key(*p), None).await;
        }
    }

    /// Reserve `asked` (or, for 0, any free node port); None when that cannot be had.
    async fn node_port(&self, asked: i64, owner: &[u8]) -> Option<i64> {
        let reserve = async |p: i64| {
            self.store
                .create(&node_port_key(p), owner.to_vec())
                .await
                .is_ok()
        };
        if asked != 0 {
            return (NODE_PORTS.contains(&asked) && reserve(asked).await).then_some(asked);
        }
        let span = NODE_PORTS.end() - NODE_PORTS.start() + 1;
        let start = rand::rng().random_range(0..span);
        for k in 0..span {
            let p = NODE_PORTS.start() + (start + k) % span;
            if reserve(p).await {
                return Some(p);
            }
        }
        None
    }

    /// Free the ClusterIP of a deleted service.
    async fn release_cluster_ip(&self, svc: &Value) {
        let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) else {
            return;
        };
        if ip == "None" || ip.is_empty() {
            return;
        }
        let key = crate::object_key(ip_info(), None, ip);
        if let Err(e) = self.store.delete(&key, None).await
            && !matches!(e, minik_store::Error::NotFound { .. })
        {
            tracing::warn!(ip, error = %e, "could not release a ClusterIP");
        }
    }
}

/// The node port range (kube-apiserver's default --service-node-port-range).
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn node_port_key(port: i64) -> String {
    format!("/registry/minik/nodeports/{port}")
}

pub(crate) fn node_ports(svc: &Value) -> Vec<i64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
        .filter(|p| *p != 0)
        .collect()
}

fn node_port_error(svc: &str, i: usize, port: i64) -> ApiError {
    let services = minik_api::builtin("", "v1", "services");
    let why = if port == 0 {
        "no free node port in 30000-32767".to_string()
    } else if NODE_PORTS.contains(&port) {
        "provided port is already allocated".to_string()
    } else {
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
            .to_string()
    };
    ApiError::invalid(
        services,
        svc,
        vec![Cause {
            field: format!("spec.ports[{i}].nodePort"),
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {port}: {why}"),
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: ServiceCidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(c.base, Ipv4Addr::new(10, 43, 0, 0));
        assert!(c.contains(Ipv4Addr::new(10, 43, 255, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert_eq!(c.nth(10), Ipv4Addr::new(10, 43, 0, 10));
        assert!("10.0.0.0/33".parse::<ServiceCidr>().is_err());
        assert!("nope".parse::<ServiceCidr>().is_err());
    }
}
