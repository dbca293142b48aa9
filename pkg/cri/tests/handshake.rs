//! The client's connection checks against fake runtimes served on a unix socket: a runtime
//! that speaks only an older CRI version, one that serves no RuntimeService, calls that
//! outlive their deadline, and a runtime.v1 runtime that connects.

use std::path::Path;
use std::time::Duration;

use minik_cri::proto::image_service_server::{ImageService, ImageServiceServer};
use minik_cri::proto::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use minik_cri::proto::{StatusRequest, StatusResponse, VersionRequest, VersionResponse};
use minik_cri::{CriClient, Error, Options};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// A runtime answering Version with `api` and taking `status_delay` to answer Status.
struct FakeRuntime {
    api: &'static str,
    status_delay: Duration,
}

#[tonic::async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(
        &self,
        req: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        assert_eq!(req.into_inner().version, "v1");
        Ok(Response::new(VersionResponse {
            version: "0.1.0".to_string(),
            runtime_name: "fake".to_string(),
            runtime_version: "1.0.0".to_string(),
            runtime_api_version: self.api.to_string(),
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        tokio::time::sleep(self.status_delay).await;
        Ok(Response::new(StatusResponse::default()))
    }
}

struct FakeImages;

#[tonic::async_trait]
impl ImageService for FakeImages {}

fn endpoint(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// Serve `router` on a new socket in `dir`; the socket's path.
fn serve(dir: &Path, router: tonic::transport::server::Router) -> std::path::PathBuf {
    let path = dir.join("cri.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
    path
}

fn runtime(api: &'static str, status_delay: Duration) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(FakeRuntime { api, status_delay }))
        .add_service(ImageServiceServer::new(FakeImages))
}

#[tokio::test]
async fn a_runtime_of_another_api_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = serve(dir.path(), runtime("v1alpha2", Duration::ZERO));
    let err = CriClient::connect(&endpoint(&sock)).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedApi { .. }), "{err}");
    assert!(err.to_string().contains("\"v1alpha2\""), "{err}");
}

#[tokio::test]
async fn a_server_without_runtime_v1_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let router =
        tonic::transport::Server::builder().add_service(ImageServiceServer::new(FakeImages));
    let sock = serve(dir.path(), router);
    let err = CriClient::connect(&endpoint(&sock)).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedApi { .. }), "{err}");
    assert!(err.to_string().contains("not implemented"), "{err}");
}

#[tokio::test]
async fn a_socket_nobody_listens_on_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = CriClient::connect(&endpoint(&path)).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
}

#[tokio::test]
async fn calls_past_their_deadline_time_out_and_unimplemented_calls_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let sock = serve(dir.path(), runtime("v1", Duration::from_secs(3600)));
    let options = Options {
        request_timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let client = CriClient::connect_with(&endpoint(&sock), options)
        .await
        .unwrap();
    assert_eq!(client.runtime_version().runtime_name, "fake");
    let err = client.status(false).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout { op: "Status", .. } | Error::Status { op: "Status", .. }
        ),
        "{err}"
    );
    let err = client.list_containers(None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Status { op: "ListContainers", status } if status.code() == tonic::Code::Unimplemented),
        "{err}"
    );
    assert!(!err.is_not_found());
}
