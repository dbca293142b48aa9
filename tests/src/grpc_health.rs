//! A gRPC health server for probe tests: grpc.health.v1.Health/Check on 127.0.0.1 (plain
//! HTTP/2), answering each service's status as the test sets it; a service never set is
//! NotFound "unknown service", as grpc-go's health server says. It runs on a thread of its
//! own (usable from sync and async tests) and stops, closing its connections, when
//! dropped. The messages are declared here, apart from the kubelet's, so the wire format is
//! checked independently.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::server::TcpIncoming;

/// grpc.health.v1.HealthCheckRequest.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// grpc.health.v1.HealthCheckResponse.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// ServingStatus values.
pub const SERVING: i32 = 1;
pub const NOT_SERVING: i32 = 2;

/// Each service's status, and how many times each was asked for.
#[derive(Default)]
struct State {
    statuses: HashMap<String, i32>,
    checks: HashMap<String, usize>,
}

type Statuses = Arc<Mutex<State>>;

fn lock(s: &Statuses) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running health server; stops when dropped.
pub struct HealthServer {
    pub addr: SocketAddr,
    statuses: Statuses,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthServer {
    /// Serve on a free port of 127.0.0.1, with no service set.
    pub fn start() -> HealthServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let statuses = Statuses::default();
        let service = Health(statuses.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("grpc-health".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the health server");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    let serve = tonic::transport::Server::builder()
                        .serve_with_incoming(service, TcpIncoming::from(listener));
                    // Stopping drops the runtime and with it every open connection, without
                    // waiting for clients to hang up.
                    tokio::select! {
                        _ = serve => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("starting the health server's thread");
        HealthServer {
            addr,
            statuses,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What Check answers for `service` ("" is the server as a whole).
    pub fn set(&self, service: &str, status: i32) {
        lock(&self.statuses)
            .statuses
            .insert(service.to_string(), status);
    }

    /// How many Check calls asked about `service` so far.
    pub fn checks(&self, service: &str) -> usize {
        lock(&self.statuses)
            .checks
            .get(service)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The HTTP side: Check by its path, Unimplemented for anything else.
#[derive(Clone)]
struct Health(Statuses);

impl tower::Service<http::Request<Body>> for Health {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let statuses = self.0.clone();
        Box::pin(async move {
            if request.uri().path() != "/grpc.health.v1.Health/Check" {
                return Ok(tonic::Status::unimplemented("unknown method").into_http());
            }
            let check = tower::service_fn(move |r: tonic::Request<CheckRequest>| {
                let service = &r.get_ref().service;
                let mut state = lock(&statuses);
                *state.checks.entry(service.clone()).or_default() += 1;
                let status = state.statuses.get(service).copied();
                drop(state);
                async move {
                    match status {
                        Some(status) => Ok(tonic::Response::new(CheckResponse { status })),
                        None => Err(tonic::Status::not_found("unknown service")),
                    }
                }
            });
            let codec = tonic_prost::ProstCodec::<CheckResponse, CheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(check, request).await)
        })
    }
}
