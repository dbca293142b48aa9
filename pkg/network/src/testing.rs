//! Tests only: helpers shared by the test modules of this crate. `FakeApi` is a
//! kube::Client over an in-memory API server that lists fixed collections, streams the
//! watch events the test sends, and records PATCH requests; `eventually` waits for a
//! condition; `stop_and_join` ends a task; `value` turns an object into JSON.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body::Frame;
use http_body_util::StreamBody;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SERVICES: &str = "/api/v1/services";
pub const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
pub const NODES: &str = "/api/v1/nodes";
pub const PODS: &str = "/api/v1/pods";
pub const NAMESPACES: &str = "/api/v1/namespaces";
pub const NETWORK_POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";

type Watchers = HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>;
type Chunks = BoxStream<'static, Result<Frame<Bytes>, Infallible>>;

/// The API's state: collections by path, open watches, and the patches received.
#[derive(Default)]
pub struct FakeApi {
    lists: Mutex<HashMap<String, Vec<Value>>>,
    watchers: Mutex<Watchers>,
    /// Every PATCH received, as (path, body).
    pub patches: Mutex<Vec<(String, Value)>>,
}

impl FakeApi {
    /// An API whose collection `path` holds `items`; other collections are empty.
    pub fn new(lists: Vec<(&str, Vec<Value>)>) -> Arc<FakeApi> {
        let api = FakeApi::default();
        *api.lists.lock().unwrap() = lists.into_iter().map(|(p, v)| (p.to_string(), v)).collect();
        Arc::new(api)
    }

    /// Tell every open watch of `path` that `object` was added. An object without a
    /// resourceVersion gets one, as kube's watcher needs it on each event.
    pub fn added(&self, path: &str, mut object: Value) {
        if object["metadata"]["resourceVersion"].is_null() {
            object["metadata"]["resourceVersion"] = json!("2");
        }
        let mut line = serde_json::to_vec(&json!({"type": "ADDED", "object": object})).unwrap();
        line.push(b'\n');
        let mut watchers = self.watchers.lock().unwrap();
        for w in watchers.entry(path.to_string()).or_default() {
            let _ = w.send(Bytes::from(line.clone()));
        }
    }

    /// How many watches of `path` are open.
    pub fn watching(&self, path: &str) -> usize {
        let watchers = self.watchers.lock().unwrap();
        watchers
            .get(path)
            .map_or(0, |w| w.iter().filter(|w| !w.is_closed()).count())
    }

    /// Wait until every path in `paths` has an open watch (events sent before reach nobody).
    pub async fn until_watched(&self, paths: &[&str]) {
        let what = format!("watches of {paths:?}");
        eventually(&what, || paths.iter().all(|p| self.watching(p) > 0)).await;
    }

    /// A client of this API.
    pub fn client(self: &Arc<Self>) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: http::Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.answer(req).await) }
        });
        kube::Client::new(service, "default")
    }

    async fn answer(&self, req: http::Request<Body>) -> http::Response<StreamBody<Chunks>> {
        let path = req.uri().path().to_string();
        let watch = req.uri().query().unwrap_or_default().contains("watch=true");
        let body = if req.method() == http::Method::PATCH {
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let patch: Value = serde_json::from_slice(&bytes).unwrap();
            self.patches.lock().unwrap().push((path.clone(), patch));
            let name = path
                .trim_end_matches("/status")
                .rsplit('/')
                .next()
                .unwrap_or_default();
            once(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}}))
        } else if watch {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut watchers = self.watchers.lock().unwrap();
            watchers.entry(path).or_default().push(tx);
            futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
            })
            .boxed()
        } else {
            let lists = self.lists.lock().unwrap();
            let items = lists.get(&path).cloned().unwrap_or_default();
            once(json!({"apiVersion": "v1", "kind": "List",
                "metadata": {"resourceVersion": "1"}, "items": items}))
        };
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(body))
            .unwrap()
    }
}

fn once(v: Value) -> Chunks {
    let bytes = Bytes::from(serde_json::to_vec(&v).unwrap());
    futures::stream::once(async move { Ok(Frame::data(bytes)) }).boxed()
}

/// `t` as JSON (a k8s-openapi object keeps its kind and apiVersion).
pub fn value<T: serde::Serialize>(t: T) -> Value {
    serde_json::to_value(t).unwrap()
}

/// Wait up to 10 s for `check`; panic naming `what` if it never holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Cancel `stop`, then wait up to 5 s for `task` and return what it returned; panic if it
/// fails, panics or is still running.
pub async fn stop_and_join<T, E: std::fmt::Debug>(
    stop: &CancellationToken,
    task: JoinHandle<Result<T, E>>,
) -> T {
    stop.cancel();
    let done = tokio::time::timeout(Duration::from_secs(5), task).await;
    done.expect("the task ends on stop")
        .expect("the task does not panic")
        .expect("the task succeeds")
}
