//! Keep the table in step with the API: informers on Pods, Namespaces and NetworkPolicies
//! mark it dirty on every change; after a short pause that gathers a burst of changes the
//! table is rendered again and applied if it changed (retried while nft refuses it). The
//! table stays on stop: pods stay isolated while minik restarts.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use minik_controllers::Informer;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::render::render;
use super::{PolicyError, PolicyOptions};
use crate::nft::Nft;

/// How long a burst of changes may gather before the table is rendered again.
const COALESCE: Duration = Duration::from_millis(50);
/// How long to wait before trying again after nft refused a script.
const RETRY: Duration = Duration::from_secs(2);

/// Enforce policies until `stop`, then delete the table.
pub async fn run(
    client: kube::Client,
    options: PolicyOptions,
    nft: Arc<dyn Nft>,
    stop: CancellationToken,
) -> Result<(), PolicyError> {
    let pods = Informer::new(Api::<Pod>::all(client.clone()));
    let namespaces = Informer::new(Api::<Namespace>::all(client.clone()));
    let policies = Informer::new(Api::<NetworkPolicy>::all(client));
    let dirty = Arc::new(Notify::new());
    {
        let d = dirty.clone();
        pods.on(move |_, _| d.notify_one());
        let d = dirty.clone();
        namespaces.on(move |_, _| d.notify_one());
        let d = dirty.clone();
        policies.on(move |_, _| d.notify_one());
    }
    let watches = stop.child_token();
    let mut tasks = JoinSet::new();
    tasks.spawn(pods.clone().run(watches.clone()));
    tasks.spawn(namespaces.clone().run(watches.clone()));
    tasks.spawn(policies.clone().run(watches.clone()));

    let synced = async {
        pods.synced().await;
        namespaces.synced().await;
        policies.synced().await;
    };
    let started = tokio::select! {
        () = stop.cancelled() => false,
        () = synced => true,
    };
    let mut applied: Option<String> = None;
    if started {
        loop {
            let script = render(
                &snapshot(&pods),
                &snapshot(&namespaces),
                &snapshot(&policies),
                &options,
            );
            let mut failed = false;
            if applied.as_deref() != Some(script.as_str()) {
                match apply(&nft, script.clone()).await {
                    Ok(()) => {
                        tracing::debug!(bytes = script.len(), "network policy table applied");
                        applied = Some(script);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "network policy table not applied");
                        failed = true;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = dirty.notified() => {}
                () = tokio::time::sleep(RETRY), if failed => {}
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(COALESCE) => {}
            }
        }
    }
    watches.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The informer's objects, shared rather than copied.
fn snapshot<K>(informer: &Informer<K>) -> Vec<Arc<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    informer.store().state()
}

/// Run nft off the async threads (it spawns a process and waits).
async fn apply(nft: &Arc<dyn Nft>, script: String) -> Result<(), PolicyError> {
    let nft = nft.clone();
    tokio::task::spawn_blocking(move || nft.apply(&script)).await??;
    Ok(())
}
