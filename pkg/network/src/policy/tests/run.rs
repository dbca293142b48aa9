//! `run` against a fake API server (lists from fixed objects, watches fed by the test):
//! the table follows the objects and stays on stop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use http_body::Frame;
use http_body_util::StreamBody;
use kube::client::Body;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{namespace, options, pod, policy};
use crate::nft::FakeNft;
use crate::policy::{render, run};

type Watches = Arc<Mutex<HashMap<String, Vec<UnboundedSender<Bytes>>>>>;

/// A client whose lists of a path return `lists[path]` and whose watches stay open, fed
/// through the returned senders.
fn fake_api(lists: HashMap<&'static str, (&'static str, Vec<Value>)>) -> (kube::Client, Watches) {
    let watches: Watches = Arc::default();
    let w = watches.clone();
    let service = tower::service_fn(move |req: http::Request<Body>| {
        let (tx, rx) = unbounded::<Bytes>();
        let path = req.uri().path().to_string();
        if req.uri().query().unwrap_or_default().contains("watch=true") {
            w.lock().unwrap().entry(path).or_default().push(tx);
        } else {
            let (kind, items) = lists.get(path.as_str()).cloned().unwrap_or_default();
            let list = json!({"kind": kind, "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"}, "items": items});
            tx.unbounded_send(Bytes::from(list.to_string())).unwrap();
        }
        let body = StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b))));
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        async move { Ok::<_, Infallible>(response) }
    });
    (kube::Client::new(service, "default"), watches)
}

fn typed(kind: &str, api_version: &str, obj: impl serde::Serialize) -> Value {
    let mut v = serde_json::to_value(obj).unwrap();
    v["kind"] = json!(kind);
    v["apiVersion"] = json!(api_version);
    v
}

/// Wait (up to 10 s) until `f` holds.
async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

#[tokio::test]
async fn the_table_follows_the_api_and_stays_on_stop() {
    let web = pod("web", "a", "10.42.0.5", json!({}));
    let ns = namespace("web", json!({}));
    let lists = HashMap::from([
        ("/api/v1/pods", ("PodList", vec![typed("Pod", "v1", &web)])),
        (
            "/api/v1/namespaces",
            ("NamespaceList", vec![typed("Namespace", "v1", &ns)]),
        ),
        (
            "/apis/networking.k8s.io/v1/networkpolicies",
            ("NetworkPolicyList", vec![]),
        ),
    ]);
    let (client, watches) = fake_api(lists);
    let nft = FakeNft::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(client, options(), Arc::new(nft.clone()), stop.clone()));

    let open = render(
        std::slice::from_ref(&web),
        std::slice::from_ref(&ns),
        &[],
        &options(),
    );
    eventually(|| nft.last().as_deref() == Some(open.as_str())).await;

    let mut deny = policy("web", "deny", json!({"podSelector": {}}));
    deny.metadata.resource_version = Some("2".into());
    let path = "/apis/networking.k8s.io/v1/networkpolicies";
    eventually(|| watches.lock().unwrap().contains_key(path)).await;
    let event =
        json!({"type": "ADDED", "object": typed("NetworkPolicy", "networking.k8s.io/v1", &deny)});
    for tx in &watches.lock().unwrap()[path] {
        tx.unbounded_send(Bytes::from(format!("{event}\n")))
            .unwrap();
    }
    let closed = render(&[web], &[ns], &[deny], &options());
    eventually(|| nft.last().as_deref() == Some(closed.as_str())).await;
    assert!(closed.contains("chain in/web/a"));
    let applied = nft.scripts.lock().unwrap().len();
    assert_eq!(applied, 2, "an unchanged table is not applied again");

    stop.cancel();
    task.await.unwrap().unwrap();
    // The rules stay while minik is down (restarting): nothing more is applied.
    assert_eq!(nft.scripts.lock().unwrap().len(), applied);
    assert_eq!(nft.last().as_deref(), Some(closed.as_str()));
}
