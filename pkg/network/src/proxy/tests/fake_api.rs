//! Tests only: a kube::Client over an in-memory API that lists fixed collections, streams
//! watch events the test sends, and records PATCH requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body::Frame;
use http_body_util::StreamBody;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Watchers = HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>;

/// The API's state: collections by path, open watches, and the patches received.
#[derive(Default)]
pub struct FakeApi {
    lists: Mutex<HashMap<String, Vec<Value>>>,
    watchers: Mutex<Watchers>,
    pub patches: Mutex<Vec<(String, Value)>>,
}

pub const SERVICES: &str = "/api/v1/services";
pub const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
pub const NODES: &str = "/api/v1/nodes";

impl FakeApi {
    /// An API whose collection `path` holds `items`.
    pub fn new(lists: Vec<(&str, Vec<Value>)>) -> Arc<FakeApi> {
        let api = FakeApi::default();
        *api.lists.lock().unwrap() = lists.into_iter().map(|(p, v)| (p.to_string(), v)).collect();
        Arc::new(api)
    }

    /// Tell every watch of `path` that `object` was added.
    pub fn added(&self, path: &str, mut object: Value) {
        // kube's watcher needs each event's resourceVersion.
        object["metadata"]["resourceVersion"] = json!("2");
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

    /// A client of this API.
    pub fn client(self: &Arc<Self>) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: http::Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.answer(req).await) }
        });
        kube::Client::new(service, "default")
    }

    async fn answer(
        &self,
        req: http::Request<Body>,
    ) -> http::Response<StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>> {
        let path = req.uri().path().to_string();
        let watch = req.uri().query().unwrap_or_default().contains("watch=true");
        let body: BoxStream<'static, Result<Frame<Bytes>, Infallible>> = if req.method()
            == http::Method::PATCH
        {
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
            self.watchers
                .lock()
                .unwrap()
                .entry(path)
                .or_default()
                .push(tx);
            futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
            })
            .boxed()
        } else {
            let items = self
                .lists
                .lock()
                .unwrap()
                .get(&path)
                .cloned()
                .unwrap_or_default();
            once(
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        };
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(body))
            .unwrap()
    }
}

fn once(v: Value) -> BoxStream<'static, Result<Frame<Bytes>, Infallible>> {
    let bytes = Bytes::from(serde_json::to_vec(&v).unwrap());
    futures::stream::once(async move { Ok(Frame::data(bytes)) }).boxed()
}
