//! grpc probes, as kubelet's prober does them: dial host:port (the pod's address) in plain
//! HTTP/2 (no TLS), call grpc.health.v1.Health/Check with the probe's service ("" when
//! unset) within the probe's timeout; SERVING passes, any other status, an RPC error, a
//! failed connect or the timeout fails, in kubelet's words. The pod is reached the way
//! tcpSocket and httpGet reach it (net.rs: from inside its network namespace). The two
//! messages of grpc/health/v1/health.proto are declared here with prost's derive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tonic::Code;
use tonic::transport::Channel;

use super::net::Endpoint;

/// grpc.health.v1.HealthCheckRequest.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// grpc.health.v1.HealthCheckResponse; `status` is a ServingStatus.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// ServingStatus values.
pub const UNKNOWN: i32 = 0;
pub const SERVING: i32 = 1;
pub const NOT_SERVING: i32 = 2;
pub const SERVICE_UNKNOWN: i32 = 3;

/// The method a probe calls.
pub const CHECK: &str = "/grpc.health.v1.Health/Check";

/// A ServingStatus as Go's generated code names it (unknown values as their number).
pub fn status_name(status: i32) -> String {
    match status {
        UNKNOWN => "UNKNOWN".into(),
        SERVING => "SERVING".into(),
        NOT_SERVING => "NOT_SERVING".into(),
        SERVICE_UNKNOWN => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

/// Ask host:port whether `service` is SERVING, within `timeout`; Err is kubelet's message.
pub async fn check(
    endpoint: &Endpoint,
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    let addr = join_host_port(host, port);
    let deadline = tokio::time::Instant::now() + timeout;
    let channel = match tokio::time::timeout_at(deadline, dial(endpoint, host, port, timeout)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("error: failed to connect service at {addr:?}: {e}")),
        Err(_) => {
            return Err(format!(
                "timeout: failed to connect service {addr:?} within {}: context deadline exceeded",
                minik_api::quantity::go_duration(timeout)
            ));
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    request.set_timeout(timeout);
    let call = async {
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(chain(&e)))?;
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        client
            .unary(request, PathAndQuery::from_static(CHECK), codec)
            .await
    };
    let response = match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(r)) => r.into_inner(),
        // Past the deadline the channel's own timeout (grpc-timeout) may end the call first.
        Ok(Err(status)) if tokio::time::Instant::now() < deadline => {
            return Err(rpc_failure(&status, timeout));
        }
        _ => {
            return Err(format!(
                "timeout: health rpc did not complete within {}",
                minik_api::quantity::go_duration(timeout)
            ));
        }
    };
    if response.status != SERVING {
        return Err(format!(
            "service unhealthy (responded with {:?})",
            status_name(response.status)
        ));
    }
    Ok(())
}

/// A channel over one connection made to host:port from where the pod's ports are reached.
async fn dial(
    endpoint: &Endpoint,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Channel, String> {
    let tcp = endpoint.connect(host, port, timeout).await?;
    let slot = Arc::new(Mutex::new(Some(tcp)));
    // The channel's only connection: a reconnect after it closed fails.
    let connector = tower::service_fn(move |_: http::Uri| {
        let tcp = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        async move {
            tcp.map(TokioIo::new).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotConnected, "connection closed")
            })
        }
    });
    let user_agent = format!(
        "kube-probe/{}.{}",
        minik_version::KUBERNETES_MAJOR,
        minik_version::KUBERNETES_MINOR
    );
    Channel::from_shared(format!("http://{}", join_host_port(host, port)))
        .map_err(|e| chain(&e))?
        .user_agent(user_agent)
        .map_err(|e| chain(&e))?
        .connect_with_connector(connector)
        .await
        .map_err(|e| chain(&e))
}

/// Kubelet's message for a failed call.
fn rpc_failure(status: &tonic::Status, timeout: Duration) -> String {
    match status.code() {
        Code::Unimplemented => format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            status.message()
        ),
        Code::DeadlineExceeded => format!(
            "timeout: health rpc did not complete within {}",
            minik_api::quantity::go_duration(timeout)
        ),
        code => format!(
            "error: health rpc probe failed: rpc error: code = {} desc = {}",
            go_code(code),
            status.message()
        ),
    }
}

/// A status code as grpc-go names it.
fn go_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// An error and its causes, "outer: inner".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Go's net.JoinHostPort: IPv6 literals in brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_api::quantity::go_duration;

    #[test]
    fn words_are_grpc_go_s() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(status_name(NOT_SERVING), "NOT_SERVING");
        assert_eq!(status_name(7), "7");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(
            rpc_failure(
                &tonic::Status::not_found("unknown service"),
                Duration::from_secs(1)
            ),
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
        );
        assert_eq!(
            rpc_failure(&tonic::Status::unimplemented(""), Duration::from_secs(1)),
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
        );
    }

    #[test]
    fn messages_encode_as_health_proto() {
        use prost::Message;
        let request = HealthCheckRequest {
            service: "a".into(),
        };
        // Field 1, length-delimited, "a".
        assert_eq!(request.encode_to_vec(), vec![0x0a, 1, b'a']);
        let response = HealthCheckResponse::decode(&[0x08, 2][..]).unwrap();
        assert_eq!(response.status, NOT_SERVING);
    }
}
