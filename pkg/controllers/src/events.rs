//! Events about objects, as client-go's recorder writes them: core/v1 Events, the same
//! event again (same object, reason and message) counted on the first one instead of
//! written anew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

/// What an event said: (object uid, reason, message).
type Said = (String, String, String);
/// Where it was written: (namespace, name, count).
type Written = (String, String, i32);

/// Writes events for one component ("deployment-controller", "default-scheduler", ...).
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    seen: Arc<Mutex<HashMap<Said, Written>>>,
    /// The same event is written by one task at a time (so repeats are counted, not
    /// written twice); different events go in parallel.
    shards: Arc<Vec<tokio::sync::Mutex<()>>>,
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Normal,
    Warning,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.into(),
            seen: Arc::default(),
            shards: Arc::new((0..16).map(|_| tokio::sync::Mutex::new(())).collect()),
        }
    }

    /// Record an event about `obj` in the background.
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: Kind,
        reason: &str,
        message: &str,
    ) {
        let involved = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(obj.name_any()),
            namespace: obj.namespace(),
            uid: obj.uid(),
            resource_version: obj.resource_version(),
            ..Default::default()
        };
        let this = self.clone();
        let (reason, message) = (reason.to_string(), message.to_string());
        tokio::spawn(async move {
            if let Err(e) = this.write(involved, kind, &reason, &message).await {
                tracing::debug!(error = %e, reason, "recording an event");
            }
        });
    }

    async fn write(
        &self,
        involved: ObjectReference,
        kind: Kind,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let ns = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = (
            involved.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.to_string(),
        );
        let shard = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            (h.finish() % self.shards.len() as u64) as usize
        };
        let _turn = self.shards[shard].lock().await;
        let now = Time(Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let known = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some((ns, name, count)) = known {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.remember(key, ns, name, count + 1);
                return Ok(());
            }
        }
        let object = involved.name.clone().unwrap_or_default();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{object}.")),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(format!("{kind:?}")),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        let made = api.create(&PostParams::default(), &event).await?;
        self.remember(key, ns, made.name_any(), 1);
        Ok(())
    }

    fn remember(&self, key: (String, String, String), ns: String, name: String, count: i32) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 4096 {
            seen.clear();
        }
        seen.insert(key, (ns, name, count));
    }
}
