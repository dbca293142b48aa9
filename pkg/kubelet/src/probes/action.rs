//! What a probe or a lifecycle hook does (exec, httpGet, tcpSocket, grpc, sleep) and
//! running it against one container: exec through the runtime (exit 0 passes), httpGet and
//! tcpSocket and grpc to the pod's ports (see net.rs, http.rs, grpc.rs).

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::grpc;
use super::http::{self, Get, HttpResult};
use super::net::Endpoint;

/// One handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Exec(Vec<String>),
    Http(HTTPGetAction),
    Tcp(TCPSocketAction),
    Grpc { port: i32, service: Option<String> },
    Sleep(Duration),
}

impl Action {
    pub fn of_probe(p: &Probe) -> Option<Action> {
        if let Some(e) = &p.exec {
            return Some(Action::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(h) = &p.http_get {
            return Some(Action::Http(h.clone()));
        }
        if let Some(t) = &p.tcp_socket {
            return Some(Action::Tcp(t.clone()));
        }
        p.grpc.as_ref().map(|g| Action::Grpc {
            port: g.port,
            service: g.service.clone(),
        })
    }

    pub fn of_hook(h: &LifecycleHandler) -> Option<Action> {
        if let Some(e) = &h.exec {
            return Some(Action::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(g) = &h.http_get {
            return Some(Action::Http(g.clone()));
        }
        if let Some(t) = &h.tcp_socket {
            return Some(Action::Tcp(t.clone()));
        }
        h.sleep
            .as_ref()
            .map(|s| Action::Sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0))))
    }
}

/// How a handler ended: passed (maybe with a warning to record) or failed, with output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    Success,
    Warning(String),
    Failure(String),
}

/// The container a handler runs against.
pub struct Target<'a> {
    pub runtime: &'a dyn crate::backend::Backend,
    pub container_id: &'a str,
    pub spec: &'a Container,
    pub endpoint: &'a Endpoint,
}

/// A port by number, or by the name of one of the container's ports.
pub fn port(spec: &Container, port: &IntOrString) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => spec
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {name} in {}", spec.name))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

impl Target<'_> {
    /// Run `action`, giving up after `timeout` (exec, httpGet, tcpSocket, grpc).
    pub async fn run(&self, action: &Action, timeout: Duration) -> Ran {
        match action {
            Action::Exec(argv) => self.exec(argv, timeout).await,
            Action::Http(h) => self.http(h, timeout).await,
            Action::Tcp(t) => {
                let port = match port(self.spec, &t.port) {
                    Ok(p) => p,
                    Err(e) => return Ran::Failure(e),
                };
                let host = t
                    .host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| self.endpoint.default_host());
                match self.endpoint.connect(&host, port, timeout).await {
                    Ok(_) => Ran::Success,
                    Err(e) => Ran::Failure(e),
                }
            }
            Action::Grpc { port, service } => self.grpc(*port, service.as_deref(), timeout).await,
            Action::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Ran::Success
            }
        }
    }

    async fn exec(&self, argv: &[String], timeout: Duration) -> Ran {
        match self
            .runtime
            .exec(self.container_id, argv, &[], timeout)
            .await
        {
            Ok(r) if r.exit_code == 0 => Ran::Success,
            Ok(r) => Ran::Failure(String::from_utf8_lossy(&r.output).into_owned()),
            Err(minik_runtime::Error::Timeout(_)) => {
                Ran::Failure(format!("command {argv:?} timed out"))
            }
            Err(e) => Ran::Failure(e.to_string()),
        }
    }

    /// A grpc probe: kubelet dials the pod's address (grpc has no host field).
    async fn grpc(&self, port: i32, service: Option<&str>, timeout: Duration) -> Ran {
        let Some(port) = u16::try_from(port).ok().filter(|p| *p > 0) else {
            return Ran::Failure(format!("invalid port number: {port}"));
        };
        let host = self.endpoint.default_host();
        let service = service.unwrap_or_default();
        match grpc::check(self.endpoint, &host, port, service, timeout).await {
            Ok(()) => Ran::Success,
            Err(e) => Ran::Failure(e),
        }
    }

    async fn http(&self, h: &HTTPGetAction, timeout: Duration) -> Ran {
        let port = match port(self.spec, &h.port) {
            Ok(p) => p,
            Err(e) => return Ran::Failure(e),
        };
        let mut path = h.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let get = Get {
            https: h.scheme.as_deref() == Some("HTTPS"),
            host: h
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| self.endpoint.default_host()),
            port,
            path,
            headers: h
                .http_headers
                .iter()
                .flatten()
                .map(|hd| (hd.name.clone(), hd.value.clone()))
                .collect(),
        };
        match http::get(self.endpoint, get, timeout).await {
            HttpResult::Success => Ran::Success,
            HttpResult::Warning(w) => Ran::Warning(w),
            HttpResult::Failure(f) => Ran::Failure(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn ports_by_number_or_name() {
        let spec = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(port(&spec, &IntOrString::Int(80)), Ok(80));
        assert_eq!(port(&spec, &IntOrString::String("http".into())), Ok(8080));
        assert_eq!(port(&spec, &IntOrString::String("81".into())), Ok(81));
        assert!(port(&spec, &IntOrString::String("nope".into())).is_err());
        assert!(port(&spec, &IntOrString::Int(0)).is_err());
    }
}
