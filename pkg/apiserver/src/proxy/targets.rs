//! Where pods/proxy, services/proxy and nodes/proxy go: the pod's IP, one ready endpoint
//! of the service (for the service port asked for), the node's kubelet. The name may carry
//! a scheme and a port (`https:web:8443`, `web:http`); a pod or endpoint is reached over
//! plain HTTP, or TLS without checking its certificate, as kube-apiserver's proxy does.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::client::conn::http1::SendRequest;
use minik_registry::ApiError;
use minik_registry::client::{self, TlsTarget};
use serde_json::Value;

use super::forward;
use super::kubelet::{self, CONNECT_TIMEOUT, unreachable};
use crate::AppState;

/// A proxy name: `[scheme:]name[:port]`.
#[derive(Debug, PartialEq, Eq)]
struct ProxyName<'a> {
    https: bool,
    name: &'a str,
    port: &'a str,
}

fn split(id: &str) -> ProxyName<'_> {
    let parts: Vec<&str> = id.splitn(3, ':').collect();
    let scheme = |s: &str| matches!(s, "http" | "https");
    let (s, name, port) = match parts.as_slice() {
        [s, n, p] => (*s, *n, *p),
        [s, n] if scheme(s) => (*s, *n, ""),
        [n, p] => ("", *n, *p),
        _ => ("", id, ""),
    };
    ProxyName {
        https: s == "https",
        name,
        port,
    }
}

/// An HTTP/1.1 connection to `addr`, over TLS when `https`.
async fn dial(addr: SocketAddr, https: bool) -> Result<SendRequest<Body>, ApiError> {
    if https {
        let target = TlsTarget {
            addr,
            server_name: addr.ip().to_string(),
            ca_bundle: None,
            insecure: true,
        };
        return tokio::time::timeout(CONNECT_TIMEOUT, client::connect::<Body>(&target, None))
            .await
            .map_err(|_| unreachable(addr, "i/o timeout"))?
            .map_err(|e| unreachable(addr, &e));
    }
    tokio::time::timeout(CONNECT_TIMEOUT, minik_streaming::proxy::connect(addr))
        .await
        .map_err(|_| unreachable(addr, "i/o timeout"))?
        .map_err(|e| ApiError::Denied {
            code: 503,
            message: format!("error trying to reach service: {e}"),
        })
}

fn path_and_query(path: &str, req: &Request) -> String {
    match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

fn bad_port(port: &str) -> ApiError {
    ApiError::BadRequest(format!("invalid port {port:?}"))
}

/// pods/<[scheme:]name[:port]>/proxy/<path>: to the pod's IP.
pub async fn pod(
    state: &AppState,
    ns: &str,
    id: &str,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let p = split(id);
    let pods = minik_api::builtin("", "v1", "pods");
    let pod = state.registry.get(pods, Some(ns), p.name).await?;
    let ip: IpAddr = pod["status"]["podIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| ApiError::Denied {
            code: 503,
            message: format!("pod {} has no IP address yet", p.name),
        })?;
    let port = match p.port {
        "" if p.https => 443,
        "" => 80,
        n => n.parse().map_err(|_| bad_port(n))?,
    };
    let addr = SocketAddr::new(ip, port);
    let pq = path_and_query(path, &req);
    forward(dial(addr, p.https).await?, req, &pq, &addr.to_string()).await
}

/// The service port a proxy name asks for: by name or number, else the only (or unnamed)
/// one.
fn service_port<'a>(service: &'a Value, port: &str) -> Option<&'a Value> {
    let ports = service["spec"]["ports"].as_array()?;
    if port.is_empty() {
        return ports
            .iter()
            .find(|p| p["name"].as_str().unwrap_or("").is_empty())
            .or_else(|| (ports.len() == 1).then(|| &ports[0]));
    }
    ports.iter().find(|p| {
        p["name"].as_str() == Some(port)
            || p["port"].as_i64().map(|n| n.to_string()).as_deref() == Some(port)
    })
}

/// The ready addresses of `endpoints` for the service port named `port_name`.
fn ready_addresses(endpoints: &Value, port_name: &str) -> Vec<SocketAddr> {
    let mut out = vec![];
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let Some(port) = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| u16::try_from(p["port"].as_u64()?).ok())
        else {
            continue;
        };
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str().and_then(|ip| ip.parse::<IpAddr>().ok()) {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out
}

/// services/<[scheme:]name[:port]>/proxy/<path>: to one ready endpoint, chosen at random.
pub async fn service(
    state: &AppState,
    ns: &str,
    id: &str,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let p = split(id);
    let find = |plural| minik_api::builtin("", "v1", plural);
    let svc = state
        .registry
        .get(find("services"), Some(ns), p.name)
        .await?;
    let no_endpoints = || ApiError::Denied {
        code: 503,
        message: format!("no endpoints available for service \"{}\"", p.name),
    };
    let sp = service_port(&svc, p.port).ok_or_else(|| ApiError::Denied {
        code: 503,
        message: format!(
            "no service port {:?} found for service \"{}\"",
            p.port, p.name
        ),
    })?;
    let endpoints = state
        .registry
        .get(find("endpoints"), Some(ns), p.name)
        .await
        .map_err(|_| no_endpoints())?;
    let addrs = ready_addresses(&endpoints, sp["name"].as_str().unwrap_or(""));
    if addrs.is_empty() {
        return Err(no_endpoints());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    let addr = addrs[nanos % addrs.len()];
    let pq = path_and_query(path, &req);
    forward(dial(addr, p.https).await?, req, &pq, &addr.to_string()).await
}

/// nodes/<name>/proxy/<path>: to the node's kubelet.
pub async fn node(
    state: &AppState,
    id: &str,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let p = split(id);
    let (sender, addr) = kubelet::connect(state, p.name).await?;
    let pq = path_and_query(path, &req);
    forward(sender, req, &pq, &addr.to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_carry_a_scheme_and_a_port() {
        let n = |https, name, port| ProxyName { https, name, port };
        assert_eq!(split("web"), n(false, "web", ""));
        assert_eq!(split("web:8080"), n(false, "web", "8080"));
        assert_eq!(split("https:web"), n(true, "web", ""));
        assert_eq!(split("https:web:8443"), n(true, "web", "8443"));
        assert_eq!(split("http:web:http"), n(false, "web", "http"));
    }

    #[test]
    fn a_service_port_is_found_by_name_or_number() {
        let svc =
            json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "m", "port": 9090}]}});
        assert_eq!(service_port(&svc, "http").unwrap()["port"], 80);
        assert_eq!(service_port(&svc, "9090").unwrap()["name"], "m");
        assert!(service_port(&svc, "").is_none());
        let one = json!({"spec": {"ports": [{"port": 80}]}});
        assert_eq!(service_port(&one, "").unwrap()["port"], 80);
    }

    #[test]
    fn only_ready_addresses_with_the_port_are_used() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}],
            "notReadyAddresses": [{"ip": "10.0.0.2"}],
            "ports": [{"name": "http", "port": 8080}]}]});
        assert_eq!(
            ready_addresses(&ep, "http"),
            vec!["10.0.0.1:8080".parse().unwrap()]
        );
        assert!(ready_addresses(&ep, "other").is_empty());
    }
}
