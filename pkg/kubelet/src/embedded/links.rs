//! The environment variables of Services a pod sees (kubelet's envvars.FromServices):
//! `<NAME>_SERVICE_HOST`/`_PORT`, one per named port, and the Docker-link style
//! `<NAME>_PORT_<port>_<PROTO>` family.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// `my-svc` -> `MY_SVC`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_ascii_uppercase()
}

/// The variables of `services` (kubelet's envvars.FromServices), by name.
pub fn service_env(services: &[Service]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for svc in services {
        let spec = svc.spec.clone().unwrap_or_default();
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.unwrap_or_default();
        if ip.is_empty() || ip == "None" || ports.is_empty() {
            continue;
        }
        let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
        out.insert(format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string());
        for p in &ports {
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.insert(
                    format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                    p.port.to_string(),
                );
            }
        }
        let host = |port: i32| match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("[{ip}]:{port}"),
            _ => format!("{ip}:{port}"),
        };
        for (i, p) in ports.iter().enumerate() {
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let lower = protocol.to_ascii_lowercase();
            let url = format!("{lower}://{}", host(p.port));
            if i == 0 {
                out.insert(format!("{prefix}_PORT"), url.clone());
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_ascii_uppercase());
            out.insert(format!("{port_prefix}_PROTO"), lower);
            out.insert(format!("{port_prefix}_PORT"), p.port.to_string());
            out.insert(format!("{port_prefix}_ADDR"), ip.clone());
            out.insert(port_prefix, url);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: n.map(str::to_string),
                            port: *p,
                            protocol: proto.map(str::to_string),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn services_become_link_variables() {
        let env = service_env(&[
            service(
                "kubernetes",
                "10.43.0.1",
                &[(Some("https"), 443, Some("TCP"))],
            ),
            service(
                "my-db",
                "10.43.0.7",
                &[(None, 5432, None), (Some("metrics"), 9187, Some("UDP"))],
            ),
            service("headless", "None", &[(None, 80, None)]),
        ]);
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://10.43.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP"), Some("tcp://10.43.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_ADDR"), Some("10.43.0.1"));
        assert_eq!(get("MY_DB_SERVICE_PORT"), Some("5432"));
        assert_eq!(get("MY_DB_SERVICE_PORT_METRICS"), Some("9187"));
        assert_eq!(get("MY_DB_PORT_9187_UDP"), Some("udp://10.43.0.7:9187"));
        assert!(env.keys().all(|k| !k.starts_with("HEADLESS")));
        assert_eq!(env.len(), 8 + 12);
    }
}
