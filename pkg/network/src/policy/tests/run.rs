//! `run` against a fake API server (lists from fixed objects, watches fed by the test):
//! the table follows the objects and stays on stop.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{NO_POLICIES, namespace, options, pod, policy};
use crate::nft::FakeNft;
use crate::policy::{render, run};
use crate::testing::{
    FakeApi, NAMESPACES, NETWORK_POLICIES, PODS, eventually, stop_and_join, value,
};

#[tokio::test]
async fn the_table_follows_the_api_and_stays_on_stop() {
    let web = pod("web", "a", "10.42.0.5", json!({}));
    let ns = namespace("web", json!({}));
    let api = FakeApi::new(vec![
        (PODS, vec![value(&web)]),
        (NAMESPACES, vec![value(&ns)]),
        (NETWORK_POLICIES, vec![]),
    ]);
    let nft = FakeNft::default();
    let stop = CancellationToken::new();
    let client = api.client();
    let task = tokio::spawn(run(client, options(), Arc::new(nft.clone()), stop.clone()));

    let open = render(
        std::slice::from_ref(&web),
        std::slice::from_ref(&ns),
        NO_POLICIES,
        &options(),
    );
    eventually("the first table", || {
        nft.last().as_deref() == Some(open.as_str())
    })
    .await;

    let mut deny = policy("web", "deny", json!({"podSelector": {}}));
    deny.metadata.resource_version = Some("2".into());
    api.until_watched(&[NETWORK_POLICIES]).await;
    api.added(NETWORK_POLICIES, value(&deny));
    let closed = render(&[web], &[ns], &[deny], &options());
    eventually("the table with the policy", || {
        nft.last().as_deref() == Some(closed.as_str())
    })
    .await;
    assert!(closed.contains("chain in/web/a"));
    let applied = nft.scripts.lock().unwrap().len();
    assert_eq!(applied, 2, "an unchanged table is not applied again");

    stop_and_join(&stop, task).await;
    // The rules stay while minik is down (restarting): nothing more is applied.
    assert_eq!(nft.scripts.lock().unwrap().len(), applied);
    assert_eq!(nft.last().as_deref(), Some(closed.as_str()));
}
