//! CNI results: the pod's addresses from a result (`ips[].address` since 0.3.0, `ip4.ip` and
//! `ip6.ip` before), and a result rewritten for the cniVersion of the plugin that gets it
//! as prevResult (0.3.x/0.4.0 carry `ips[].version`, 1.0.0 does not).

use std::net::IpAddr;

use serde_json::Value;

use super::config::Version;

/// The addresses in `result`, IPv4 first. Addresses on the container interface `if_name`
/// when the result says which interface each is on, else all of them.
pub fn addresses(result: &Value, if_name: &str) -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = match result.get("ips").and_then(Value::as_array) {
        Some(ips) => {
            let on_if = |ip: &&Value| {
                ip.get("interface")
                    .and_then(Value::as_u64)
                    .and_then(|i| result.get("interfaces")?.get(usize::try_from(i).ok()?))
                    .is_some_and(|iface| {
                        iface.get("name").and_then(Value::as_str) == Some(if_name)
                            && iface
                                .get("sandbox")
                                .and_then(Value::as_str)
                                .is_some_and(|s| !s.is_empty())
                    })
            };
            let chosen: Vec<&Value> = if ips.iter().any(|ip| on_if(&ip)) {
                ips.iter().filter(on_if).collect()
            } else {
                ips.iter().collect()
            };
            chosen
                .into_iter()
                .filter_map(|ip| parse_cidr(ip.get("address")?.as_str()?))
                .collect()
        }
        None => ["ip4", "ip6"]
            .iter()
            .filter_map(|k| parse_cidr(result.get(k)?.get("ip")?.as_str()?))
            .collect(),
    };
    found.sort_by_key(|ip| ip.is_ipv6());
    found.dedup();
    found
}

/// "10.88.0.5/16" -> 10.88.0.5.
fn parse_cidr(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.trim().parse().ok()
}

/// `result` as a plugin of cniVersion `to` reads it: 0.3.0 up to 1.0.0 differ only in
/// `ips[].version`. Results of other shapes are passed on unchanged.
pub fn convert(result: &Value, to: Option<&str>) -> Value {
    let mut out = result.clone();
    let Some(target) = to.and_then(Version::parse) else {
        return out;
    };
    let from = result
        .get("cniVersion")
        .and_then(Value::as_str)
        .and_then(Version::parse);
    let rich = |v: Version| v >= Version::V0_3_0;
    if !rich(target) || !from.is_some_and(rich) {
        return out;
    }
    if let Some(ips) = out.get_mut("ips").and_then(Value::as_array_mut) {
        for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
            if target >= Version::V1_0_0 {
                ip.remove("version");
            } else if !ip.contains_key("version") {
                let v6 = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .and_then(parse_cidr)
                    .is_some_and(|a| a.is_ipv6());
                ip.insert(
                    "version".into(),
                    Value::String(if v6 { "6" } else { "4" }.into()),
                );
            }
        }
    }
    if let (Some(obj), Some(v)) = (out.as_object_mut(), to) {
        obj.insert("cniVersion".into(), Value::String(v.into()));
    }
    out
}
