//! The ResourceQuota controller: recounts what each quota's namespace uses of every
//! resource in `spec.hard` and writes it to `status.used` (with `status.hard`), as
//! kube-controller-manager does. The ResourceQuota admission plugin keeps the status current
//! on each create and delete; this controller fills it in for a new or changed quota, and
//! gives back what pods that finished no longer use (replenishment), what deleted services
//! and claims used, and every five minutes recounts everything.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use minik_api::{ResourceInfo, quantity, quota};
use serde_json::Value;

use crate::{Change, Ctx, Informer, Queue, Reconcile, Result, util};

const RESYNC: Duration = Duration::from_secs(300);

pub struct Controller {
    ctx: Ctx,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("resourcequota", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.resourcequotas.on(move |rq, change| {
        if change == Change::Applied {
            q.add(util::key(rq));
        }
    });
    // Replenishment: what finished or went gives its share back.
    let quotas = ctx.informers.resourcequotas.clone();
    let q = queue.clone();
    ctx.informers.pods.on(move |p: &Pod, change| {
        if change == Change::Deleted || util::is_terminal(p) {
            queue_namespace(&q, &quotas, &p.namespace().unwrap_or_default());
        }
    });
    replenish_on_delete::<Service>(ctx, &ctx.informers.services, &queue);
    replenish_on_delete::<PersistentVolumeClaim>(ctx, &ctx.informers.pvcs, &queue);
    let (q, quotas, stop) = (
        queue.clone(),
        ctx.informers.resourcequotas.clone(),
        ctx.stop.clone(),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RESYNC) => {}
            }
            for rq in quotas.store().state() {
                q.add(util::key(rq.as_ref()));
            }
        }
    });
    let this = Arc::new(Controller { ctx: ctx.clone() });
    ctx.spawn_workers("resourcequota", &queue, workers, this);
    queue
}

fn replenish_on_delete<K>(ctx: &Ctx, informer: &Informer<K>, queue: &Queue)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug,
    K: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (q, quotas) = (queue.clone(), ctx.informers.resourcequotas.clone());
    informer.on(move |obj, change| {
        if change == Change::Deleted {
            queue_namespace(&q, &quotas, &obj.namespace().unwrap_or_default());
        }
    });
}

/// Queue every quota of `ns`.
fn queue_namespace(queue: &Queue, quotas: &Informer<ResourceQuota>, ns: &str) {
    for rq in quotas.store().state() {
        if rq.namespace().as_deref() == Some(ns) {
            queue.add(util::key(rq.as_ref()));
        }
    }
}

/// What objects a quota resource name counts.
#[derive(Debug)]
pub enum Target {
    /// A served built-in resource whose objects the quota accounting knows.
    Builtin(&'static ResourceInfo),
    /// `count/<plural>.<group>` of a resource only discovery knows (a CRD's).
    Discovered { group: String, plural: String },
}

fn builtin(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    minik_api::all()
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// The objects the quota resource `name` is counted from; None for names minik does not
/// account (they are left out of `status.used`).
pub fn target(name: &str) -> Option<Target> {
    if let Some(resource) = name.strip_prefix("count/") {
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        return Some(match builtin(group, plural) {
            Some(info) => Target::Builtin(info),
            None => Target::Discovered {
                group: group.into(),
                plural: plural.into(),
            },
        });
    }
    let plural = match name {
        "pods"
        | "services"
        | "configmaps"
        | "secrets"
        | "replicationcontrollers"
        | "resourcequotas"
        | "persistentvolumeclaims" => name,
        "services.loadbalancers" | "services.nodeports" => "services",
        "requests.storage" => "persistentvolumeclaims",
        _ if quota::COMPUTE.iter().any(|(n, _, _)| *n == name) => "pods",
        _ => return None,
    };
    builtin("", plural).map(Target::Builtin)
}

fn api_resource(info: &ResourceInfo) -> ApiResource {
    let api_version = match info.group {
        "" => info.version.to_string(),
        g => format!("{g}/{}", info.version),
    };
    ApiResource {
        group: info.group.into(),
        version: info.version.into(),
        api_version,
        kind: info.kind.into(),
        plural: info.plural.into(),
    }
}

impl Controller {
    async fn list(&self, ns: &str, resource: &ApiResource) -> Result<Vec<Value>> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.ctx.client.clone(), ns, resource);
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect())
    }

    async fn discover(&self, group: &str, plural: &str) -> Option<ApiResource> {
        let found = kube::discovery::group(&self.ctx.client, group).await.ok()?;
        found
            .recommended_resources()
            .into_iter()
            .find(|(r, _)| r.plural == plural)
            .map(|(r, _)| r)
    }

    /// What `ns` uses of every resource in `hard` (thousandths).
    async fn used(&self, ns: &str, rq: &Value, hard: &[String]) -> Result<BTreeMap<String, i128>> {
        let mut lists: HashMap<String, Vec<Value>> = HashMap::new();
        let mut used = BTreeMap::new();
        for name in hard {
            let total = match target(name) {
                Some(Target::Builtin(info)) => {
                    let key = format!("{}/{}", info.group, info.plural);
                    if !lists.contains_key(&key) {
                        lists.insert(key.clone(), self.list(ns, &api_resource(info)).await?);
                    }
                    lists[&key]
                        .iter()
                        .filter(|o| quota::in_scope(rq, info, o))
                        .filter_map(|o| quota::usage(info, o, name).ok().flatten())
                        .sum()
                }
                // A custom resource counts only in quotas without scopes (scopes are of pods).
                Some(Target::Discovered { group, plural }) => {
                    let scoped = rq["spec"]["scopes"]
                        .as_array()
                        .is_some_and(|s| !s.is_empty());
                    match self.discover(&group, &plural).await {
                        Some(r) if !scoped => self.list(ns, &r).await?.len() as i128 * 1000,
                        _ => 0,
                    }
                }
                None => continue,
            };
            used.insert(name.clone(), total);
        }
        Ok(used)
    }
}

/// The status a quota should have: its hard limits and what is used of each.
pub fn status(
    hard: &BTreeMap<String, Quantity>,
    used: &BTreeMap<String, i128>,
) -> ResourceQuotaStatus {
    ResourceQuotaStatus {
        hard: Some(hard.clone()),
        used: Some(
            used.iter()
                .map(|(k, v)| (k.clone(), Quantity(quantity::format(*v, k.contains("cpu")))))
                .collect(),
        ),
    }
}

/// Whether two statuses say the same (quantities compared by value).
fn same(a: Option<&ResourceQuotaStatus>, b: &ResourceQuotaStatus) -> bool {
    let norm = |m: Option<&BTreeMap<String, Quantity>>| -> BTreeMap<String, Option<i128>> {
        m.into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), quantity::parse(&v.0)))
            .collect()
    };
    a.is_some_and(|a| {
        norm(a.hard.as_ref()) == norm(b.hard.as_ref())
            && norm(a.used.as_ref()) == norm(b.used.as_ref())
    })
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, rq)) = self.ctx.informers.resourcequotas.namespaced(&key) else {
            return Ok(None);
        };
        if rq.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let hard = rq
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        let value =
            serde_json::to_value(rq.as_ref()).map_err(|e| crate::Error::Other(e.to_string()))?;
        let names: Vec<String> = hard.keys().cloned().collect();
        let used = self.used(ns, &value, &names).await?;
        let want = status(&hard, &used);
        if same(rq.status.as_ref(), &want) {
            return Ok(None);
        }
        let api: Api<ResourceQuota> = Api::namespaced(self.ctx.client.clone(), ns);
        // The whole status is replaced (names dropped from hard leave both maps), and only
        // over the version that was read.
        let mut update = rq.as_ref().clone();
        update.status = Some(want);
        match api
            .replace_status(&rq.name_any(), &PostParams::default(), &update)
            .await
        {
            Err(e) if matches!(util::code(&e), Some(404)) => return Ok(None),
            r => r?,
        };
        tracing::debug!(quota = key, "quota usage recounted");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_names_map_to_the_objects_they_count() {
        let plural = |n: &str| match target(n) {
            Some(Target::Builtin(i)) => format!("{}/{}", i.group, i.plural),
            Some(Target::Discovered { group, plural }) => format!("?{group}/{plural}"),
            None => "-".into(),
        };
        assert_eq!(plural("pods"), "/pods");
        assert_eq!(plural("requests.cpu"), "/pods");
        assert_eq!(plural("limits.memory"), "/pods");
        assert_eq!(plural("services.nodeports"), "/services");
        assert_eq!(plural("requests.storage"), "/persistentvolumeclaims");
        assert_eq!(plural("count/deployments.apps"), "apps/deployments");
        assert_eq!(plural("count/configmaps"), "/configmaps");
        assert_eq!(plural("count/widgets.example.com"), "?example.com/widgets");
        assert_eq!(plural("hugepages-2Mi"), "-");
    }

    #[test]
    fn status_formats_and_compares_by_value() {
        let hard: BTreeMap<String, Quantity> = [
            ("requests.cpu".to_string(), Quantity("1".into())),
            ("pods".to_string(), Quantity("10".into())),
        ]
        .into();
        let used = [
            ("requests.cpu".to_string(), 250),
            ("pods".to_string(), 2000),
        ]
        .into();
        let s = status(&hard, &used);
        let u = s.used.clone().unwrap();
        assert_eq!(u["requests.cpu"].0, "250m");
        assert_eq!(u["pods"].0, "2");
        let mut other = s.clone();
        other
            .used
            .as_mut()
            .unwrap()
            .insert("requests.cpu".into(), Quantity("0.25".into()));
        assert!(same(Some(&other), &s));
        other
            .used
            .as_mut()
            .unwrap()
            .insert("pods".into(), Quantity("3".into()));
        assert!(!same(Some(&other), &s));
        assert!(!same(None, &s));
    }
}
