//! Node IPAM: every Node gets a /24 podCIDR from the cluster CIDR (10.42.0.0/16 by
//! default), as kube-controller-manager's range allocator hands them out.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::{Ctx, Queue, Reconcile, Result};

/// An IPv4 network, e.g. 10.42.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub bits: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (ip, bits) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an IPv4 CIDR like 10.42.0.0/16"))?;
        let base: Ipv4Addr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let bits: u8 = bits.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if bits > 24 {
            return Err(format!("{s:?}: the cluster CIDR must be /24 or larger"));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(base) & mask),
            bits,
        })
    }
}

impl Cidr {
    /// The `i`-th /24 inside.
    pub fn subnet(&self, i: u32) -> Option<String> {
        let count = 1u32 << (24 - u32::from(self.bits));
        (i < count).then(|| format!("{}/24", Ipv4Addr::from(u32::from(self.base) + (i << 8))))
    }
}

pub struct Controller {
    ctx: Ctx,
    cidr: Cidr,
    /// Handed out (node -> podCIDR) but maybe not yet seen in the cache: a node updated
    /// again before its podCIDR shows there gets the same one, not a second.
    taken: Mutex<HashMap<String, String>>,
}

pub fn start(ctx: &Ctx, cidr: Cidr) -> Queue {
    let queue = Queue::new("nodeipam", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers
        .nodes
        .on(move |n, _| q.add(crate::util::key(n)));
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        cidr,
        taken: Mutex::default(),
    });
    // One worker: allocations never race each other.
    ctx.spawn_workers("nodeipam", &queue, 1, this);
    queue
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let store = self.ctx.informers.nodes.store();
        let taken = || self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let Some(node) = store.get(&ObjectRef::new(&key)) else {
            taken().remove(&key);
            return Ok(None);
        };
        if node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .is_some()
        {
            taken().remove(&key);
            return Ok(None);
        }
        let mine = taken().get(&key).cloned();
        let cidr = match mine {
            Some(cidr) => cidr,
            None => {
                let mut used: HashSet<String> = store
                    .state()
                    .iter()
                    .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
                    .collect();
                used.extend(taken().values().cloned());
                (0..)
                    .map_while(|i| self.cidr.subnet(i))
                    .find(|c| !used.contains(c))
                    .ok_or_else(|| crate::Error::Other(format!("no /24 left in {:?}", self.cidr)))?
            }
        };
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        api.patch(&key, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        taken().insert(key, cidr);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_the_24s_of_the_cluster_cidr() {
        let c: Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(c.subnet(0).as_deref(), Some("10.42.0.0/24"));
        assert_eq!(c.subnet(5).as_deref(), Some("10.42.5.0/24"));
        assert_eq!(c.subnet(256), None);
        assert!("10.42.0.0/25".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
