//! A container's requests and limits as the kubelet turns them into cgroup values
//! (cpu.shares from the cpu request, a CFS quota from the cpu limit, the memory limit), and
//! the values the downward API gives for `resourceFieldRef` (limits default to the node's
//! allocatable).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use minik_runtime::Resources;

/// cgroup v1 cpu.shares bounds and the CFS period the kubelet uses.
const MIN_SHARES: i128 = 2;
const MAX_SHARES: i128 = 262_144;
const QUOTA_PERIOD: i128 = 100_000;
const MIN_QUOTA: i128 = 1_000;

/// Thousandths of a unit of `resource` in a list.
fn milli(list: Option<&BTreeMap<String, Quantity>>, resource: &str) -> Option<i128> {
    minik_api::quantity::parse(&list?.get(resource)?.0)
}

/// A container's (requests, limits) in thousandths, requests defaulting to limits as the
/// API server defaults them.
fn requests_and_limits(c: &Container, resource: &str) -> (Option<i128>, Option<i128>) {
    let r = c.resources.as_ref();
    let limit = milli(r.and_then(|r| r.limits.as_ref()), resource);
    let request = milli(r.and_then(|r| r.requests.as_ref()), resource).or(limit);
    (request, limit)
}

/// cpu.shares for a request of `millicpu` (kubelet's MilliCPUToShares).
pub fn cpu_shares(millicpu: i128) -> u64 {
    let shares = if millicpu == 0 {
        MIN_SHARES
    } else {
        (millicpu * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
    };
    u64::try_from(shares).unwrap_or(2)
}

/// The CFS quota for a limit of `millicpu` over the default period (MilliCPUToQuota).
pub fn cpu_quota(millicpu: i128) -> Option<i64> {
    if millicpu <= 0 {
        return None;
    }
    let quota = (millicpu * QUOTA_PERIOD / 1000).max(MIN_QUOTA);
    i64::try_from(quota).ok()
}

/// The cgroup values of a container.
pub fn cgroup(c: &Container) -> Resources {
    let (cpu_request, cpu_limit) = requests_and_limits(c, "cpu");
    let (_, memory_limit) = requests_and_limits(c, "memory");
    let quota = cpu_limit.and_then(cpu_quota);
    Resources {
        cpu_shares: Some(cpu_shares(cpu_request.unwrap_or(0).max(0))),
        cpu_quota: quota,
        cpu_period: quota.map(|_| 100_000),
        memory_limit: memory_limit
            .filter(|m| *m > 0)
            .and_then(|m| i64::try_from(m / 1000).ok()),
        pids_limit: None,
    }
}

/// The value of a resourceFieldRef for container `c`, limits defaulting to `allocatable`
/// (the node's): the quantity divided by the divisor, rounded up, as the downward API
/// gives it. Errors say what was asked that cannot be given.
pub fn field_value(
    selector: &ResourceFieldSelector,
    c: &Container,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    let (request, limit) = requests_and_limits(c, resource);
    let value = match kind {
        "limits" => limit.or_else(|| milli(Some(allocatable), resource)),
        "requests" => request,
        _ => {
            return Err(format!(
                "unsupported container resource : {}",
                selector.resource
            ));
        }
    }
    .unwrap_or(0);
    let divisor = selector
        .divisor
        .as_ref()
        .and_then(|d| minik_api::quantity::parse(&d.0))
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    match resource {
        // cpu: milli-value over the divisor's milli-value; others: whole values.
        "cpu" => Ok(ceil_div(value, divisor).to_string()),
        "memory" | "ephemeral-storage" => {
            Ok(ceil_div(ceil_div(value, 1000), ceil_div(divisor, 1000).max(1)).to_string())
        }
        r if r.starts_with("hugepages-") => {
            Ok(ceil_div(ceil_div(value, 1000), ceil_div(divisor, 1000).max(1)).to_string())
        }
        _ => Err(format!(
            "unsupported container resource : {}",
            selector.resource
        )),
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    if b == 0 {
        return a;
    }
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let list = |l: &[(&str, &str)]| {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_and_memory_become_cgroup_values_as_the_kubelet_computes_them() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(250), 256);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(1_000_000), 262_144);
        assert_eq!(cpu_quota(0), None);
        assert_eq!(cpu_quota(5), Some(1000));
        assert_eq!(cpu_quota(500), Some(50_000));
        assert_eq!(cpu_quota(2000), Some(200_000));
        let r = cgroup(&container(
            &[("cpu", "250m")],
            &[("cpu", "1"), ("memory", "64Mi")],
        ));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(100_000), Some(100_000)));
        assert_eq!(r.memory_limit, Some(64 << 20));
        // A limit alone is also the request.
        let r = cgroup(&container(&[], &[("cpu", "500m")]));
        assert_eq!(r.cpu_shares, Some(512));
        let r = cgroup(&Container::default());
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit),
            (Some(2), None, None)
        );
    }

    #[test]
    fn resource_fields_round_up_over_the_divisor() {
        let c = container(
            &[("cpu", "250m"), ("memory", "32Mi")],
            &[("memory", "64Mi")],
        );
        let node: BTreeMap<String, Quantity> = [("cpu", "4"), ("memory", "8Gi")]
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect();
        let field = |resource: &str, divisor: Option<&str>| {
            let s = ResourceFieldSelector {
                resource: resource.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
                container_name: None,
            };
            field_value(&s, &c, &node)
        };
        assert_eq!(field("requests.cpu", None).as_deref(), Ok("1"));
        assert_eq!(field("requests.cpu", Some("1m")).as_deref(), Ok("250"));
        assert_eq!(field("limits.cpu", None).as_deref(), Ok("4"));
        assert_eq!(field("limits.memory", Some("1Mi")).as_deref(), Ok("64"));
        assert_eq!(field("limits.memory", None).as_deref(), Ok("67108864"));
        assert_eq!(field("requests.memory", Some("1Gi")).as_deref(), Ok("1"));
        assert_eq!(
            field("requests.ephemeral-storage", None).as_deref(),
            Ok("0")
        );
        assert!(field("limits.gpus", None).is_err());
    }
}
