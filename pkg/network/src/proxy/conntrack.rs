//! UDP has no connection to end: conntrack keeps sending a flow to the endpoint it was
//! first DNATed to, even after that endpoint is gone from the rules. As kube-proxy does,
//! after each sync the entries of UDP flows to removed endpoints are deleted, and those of
//! service addresses that had no endpoint (their packets were rejected) once they get one.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::model::{PortPlan, Proto};

/// One conntrack deletion: flows of UDP to `dst:port`, only those DNATed to `nat` if set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stale {
    pub dst: Option<Ipv4Addr>,
    pub port: u16,
    pub nat: Option<Ipv4Addr>,
}

fn backends(p: &PortPlan) -> BTreeSet<Ipv4Addr> {
    p.cluster.iter().chain(&p.local).map(|b| b.ip).collect()
}

/// Every (address, port) a plan's traffic arrives on: the cluster IP, external IPs and the
/// node port (on any address).
fn fronts(p: &PortPlan) -> Vec<(Option<Ipv4Addr>, u16)> {
    let mut out = vec![(Some(p.cluster_ip), p.port)];
    out.extend(p.external_ips.iter().map(|ip| (Some(*ip), p.port)));
    out.extend(p.node_port.map(|np| (None, np)));
    out
}

/// What to delete going from `previous` to `next`.
pub fn stale(previous: &[PortPlan], next: &[PortPlan]) -> BTreeSet<Stale> {
    let before: HashMap<&str, &PortPlan> = previous
        .iter()
        .filter(|p| p.proto == Proto::Udp)
        .map(|p| (p.id.as_str(), p))
        .collect();
    let mut out = BTreeSet::new();
    for old in before.values() {
        let kept = next
            .iter()
            .find(|n| n.id == old.id)
            .map(backends)
            .unwrap_or_default();
        for gone in backends(old).difference(&kept) {
            for (dst, port) in fronts(old) {
                out.insert(Stale {
                    dst,
                    port,
                    nat: Some(*gone),
                });
            }
        }
    }
    for new in next.iter().filter(|p| p.proto == Proto::Udp) {
        let had = before
            .get(new.id.as_str())
            .is_some_and(|p| !backends(p).is_empty());
        if !had && !backends(new).is_empty() {
            for (dst, port) in fronts(new) {
                out.insert(Stale {
                    dst,
                    port,
                    nat: None,
                });
            }
        }
    }
    out
}

/// Delete the entries with conntrack(8) (a missing tool or no matching entry is fine).
pub fn flush(entries: &BTreeSet<Stale>) {
    for e in entries {
        let mut cmd = Command::new("conntrack");
        cmd.args(["-D", "-p", "udp", "--orig-port-dst", &e.port.to_string()]);
        if let Some(dst) = e.dst {
            cmd.args(["--orig-dst", &dst.to_string()]);
        }
        if let Some(nat) = e.nat {
            cmd.args(["--dst-nat", &nat.to_string()]);
        }
        let done = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
        if let Err(err) = done {
            tracing::debug!(error = %err, "conntrack is not available; stale UDP flows stay");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::Backend;

    fn plan(id: &str, proto: Proto, eps: &[[u8; 4]], node_port: Option<u16>) -> PortPlan {
        PortPlan {
            id: id.into(),
            proto,
            port: 53,
            cluster_ip: Ipv4Addr::new(10, 43, 0, 10),
            external_ips: Vec::new(),
            node_port,
            external_local: false,
            internal_local: false,
            affinity_seconds: None,
            cluster: eps
                .iter()
                .map(|ip| Backend {
                    ip: Ipv4Addr::from(*ip),
                    port: 5353,
                })
                .collect(),
            local: Vec::new(),
        }
    }

    #[test]
    fn removed_udp_endpoints_and_services_that_got_one_are_flushed() {
        let a = [10, 42, 0, 5];
        let b = [10, 42, 0, 6];
        let before = [
            plan("ns/dns/udp/53", Proto::Udp, &[a, b], Some(30053)),
            plan("ns/web/tcp/53", Proto::Tcp, &[a], None),
            plan("ns/empty/udp/53", Proto::Udp, &[], None),
        ];
        let after = [
            plan("ns/dns/udp/53", Proto::Udp, &[b], Some(30053)),
            plan("ns/empty/udp/53", Proto::Udp, &[a], None),
        ];
        let got: Vec<Stale> = stale(&before, &after).into_iter().collect();
        let svc = Some(Ipv4Addr::new(10, 43, 0, 10));
        let want = vec![
            Stale {
                dst: None,
                port: 30053,
                nat: Some(Ipv4Addr::from(a)),
            },
            Stale {
                dst: svc,
                port: 53,
                nat: None,
            },
            Stale {
                dst: svc,
                port: 53,
                nat: Some(Ipv4Addr::from(a)),
            },
        ];
        assert_eq!(got, want);
        // Nothing changed: nothing to flush; TCP never.
        assert!(stale(&after, &after).is_empty());
    }
}
