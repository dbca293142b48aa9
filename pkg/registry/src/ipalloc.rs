//! ClusterIP allocation as kube-apiserver's IPAddress allocator does it: each allocated IP is
//! an `IPAddress` object named by the IP, so two services can never get the same one (the
//! second create of the same name fails).

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
    minik_api::find("networking.k8s.io", "v1", "ipaddresses").expect("ipaddresses are served")
}

fn not_allocatable(svc: &str, ip: &str, why: &str) -> ApiError {
    let services = minik_api::find("", "v1", "services").expect("services are served");
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

    /// Free the ClusterIP of a deleted service.
    pub(crate) async fn release_cluster_ip(&self, svc: &Value) {
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
