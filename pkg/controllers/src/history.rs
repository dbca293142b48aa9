//! ControllerRevision history, shared by the StatefulSet and DaemonSet controllers and kept
//! as kube-controller-manager keeps it: a revision's `data` is the strategic merge patch that
//! puts the owner's pod template back (`{"spec":{"template":{…,"$patch":"replace"}}}`, what
//! `kubectl rollout undo` applies), revisions are named `<owner>-<hash>` and numbered, claimed
//! through controller references (adopting orphans the owner's selector matches), and the
//! ones no pod uses are pruned past `revisionHistoryLimit`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::util::{self, controller_ref};
use crate::{Ctx, Error, Result};

/// The label holding a StatefulSet revision's hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// The label naming the revision a pod was made from (and a DaemonSet revision's hash).
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The patch that restores `obj`'s pod template, as kube writes it (Go encodes the
/// template's empty creationTimestamp as null, so it is there too).
pub fn template_patch<K: Serialize>(obj: &K) -> Value {
    let mut template = serde_json::to_value(obj)
        .ok()
        .and_then(|mut v| v.pointer_mut("/spec/template").map(Value::take))
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        let meta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.entry("creationTimestamp").or_insert(Value::Null);
        }
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// `obj` with a revision's patch applied: each field the patch has under `spec` replaces
/// the object's (the `$patch: replace` directive of a strategic merge patch).
pub fn apply<K: Serialize + DeserializeOwned>(obj: &K, revision: &ControllerRevision) -> Result<K> {
    let invalid = |e: serde_json::Error| Error::Other(format!("applying revision: {e}"));
    let mut value = serde_json::to_value(obj).map_err(invalid)?;
    let patch = revision.data.0.get("spec").and_then(Value::as_object);
    if let (Some(spec), Some(patch)) = (value.get_mut("spec").and_then(Value::as_object_mut), patch)
    {
        for (field, v) in patch {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("$patch");
            }
            spec.insert(field.clone(), v);
        }
    }
    serde_json::from_value(value).map_err(invalid)
}

/// FNV-1a (32 bits) of `bytes`, continuing from `h`.
fn fnv32a(h: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// A revision's hash: FNV-1a of its data (and the collision count), in the alphabet of
/// generated names.
pub fn hash(data: &Value, collisions: Option<i32>) -> String {
    let mut h = fnv32a(0x811c_9dc5, data.to_string().as_bytes());
    if let Some(c) = collisions {
        h = fnv32a(h, c.to_string().as_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// `<prefix>-<hash>`, the prefix cut to 223 characters so the name stays valid.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let prefix: String = prefix.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// A new (unnamed) revision of `owner` holding `data`, labelled like its pods.
pub fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    labels: Option<&BTreeMap<String, String>>,
    data: Value,
    revision: i64,
) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            namespace: owner.namespace(),
            labels: Some(labels.cloned().unwrap_or_default()),
            owner_references: Some(vec![controller_ref(owner)]),
            ..Default::default()
        },
        data: RawExtension(data),
        revision: Some(revision),
    }
}

pub fn number(r: &ControllerRevision) -> i64 {
    r.revision.unwrap_or(0)
}

/// The revision after the last of `sorted`.
pub fn next_number(sorted: &[Arc<ControllerRevision>]) -> i64 {
    sorted.last().map_or(1, |r| number(r) + 1)
}

/// Revisions in history order: by number, then age, then name.
pub fn sort(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by_key(|r| {
        (
            number(r),
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    });
}

fn api(ctx: &Ctx, ns: &str) -> Api<ControllerRevision> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// The revisions `owner` controls (sorted), adopting orphans its selector matches.
pub async fn claim<K: Resource<DynamicType = ()>>(
    ctx: &Ctx,
    owner: &K,
    selector: &LabelSelector,
) -> Result<Vec<Arc<ControllerRevision>>> {
    let ns = owner.namespace().unwrap_or_default();
    let candidates = ctx.informers.revisions.store().state();
    let mut mine = util::claim(&api(ctx, &ns), owner, selector, |_| true, candidates).await?;
    sort(&mut mine);
    Ok(mine)
}

/// Create `revision` named `<owner>-<hash of its data and collisions>`; a same-named
/// revision with other data is a collision, counted in `collisions`, and the next name is
/// tried. An existing revision with the same data is returned as it is.
pub async fn create(
    ctx: &Ctx,
    owner: &str,
    revision: &ControllerRevision,
    collisions: &mut i32,
    hash_of: impl Fn(i32) -> String,
    hash_label: &str,
) -> Result<ControllerRevision> {
    let ns = revision.namespace().unwrap_or_default();
    let api = api(ctx, &ns);
    for _ in 0..100 {
        let hash = hash_of(*collisions);
        let mut r = revision.clone();
        r.metadata.name = Some(revision_name(owner, &hash));
        r.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(hash_label.into(), hash);
        match api.create(&PostParams::default(), &r).await {
            Ok(made) => return Ok(made),
            Err(e) if util::code(&e) == Some(409) => {
                let existing = api.get(&r.name_any()).await?;
                if existing.data == r.data {
                    return Ok(existing);
                }
                *collisions = collisions.saturating_add(1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Other(format!("no free revision name for {owner}")))
}

/// Give an existing revision a new number (a rollback to it).
pub async fn renumber(
    ctx: &Ctx,
    revision: &ControllerRevision,
    to: i64,
) -> Result<ControllerRevision> {
    if number(revision) == to {
        return Ok(revision.clone());
    }
    let ns = revision.namespace().unwrap_or_default();
    let patch = json!({"revision": to});
    Ok(api(ctx, &ns)
        .patch(
            &revision.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?)
}

/// Delete the oldest of `sorted` that are not `live` until at most `limit` such remain.
pub async fn truncate(
    ctx: &Ctx,
    sorted: &[Arc<ControllerRevision>],
    live: &HashSet<String>,
    limit: i32,
) -> Result<()> {
    let old: Vec<&Arc<ControllerRevision>> = sorted
        .iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    let Ok(limit) = usize::try_from(limit) else {
        return Ok(());
    };
    for r in old.iter().take(old.len().saturating_sub(limit)) {
        let ns = r.namespace().unwrap_or_default();
        match api(ctx, &ns)
            .delete(&r.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if util::code(&e) == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet;

    fn set(image: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "serviceName": "web",
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_patch_replaces_the_template_and_applies_back() {
        let old = set("busybox:1");
        let patch = template_patch(&old);
        assert_eq!(patch["spec"]["template"]["$patch"], "replace");
        assert!(patch["spec"]["template"]["metadata"]["creationTimestamp"].is_null());
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:1"
        );
        let rev = new_revision(&old, None, patch, 1);
        let restored = apply(&set("busybox:2"), &rev).unwrap();
        assert_eq!(restored.spec.template, old.spec.template);
        assert_eq!(restored.spec.service_name.as_deref(), Some("web"));
    }

    #[test]
    fn hashes_depend_on_data_and_collisions() {
        let a = template_patch(&set("a"));
        let b = template_patch(&set("b"));
        assert_eq!(hash(&a, Some(0)), hash(&a, Some(0)));
        assert_ne!(hash(&a, Some(0)), hash(&b, Some(0)));
        assert_ne!(hash(&a, Some(0)), hash(&a, Some(1)));
        assert!(
            hash(&a, None)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        assert_eq!(revision_name("web", "abc"), "web-abc");
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn revisions_sort_by_number() {
        let s = set("a");
        let mut revs: Vec<Arc<ControllerRevision>> = [3, 1, 2]
            .into_iter()
            .map(|n| Arc::new(new_revision(&s, None, json!({}), n)))
            .collect();
        sort(&mut revs);
        assert_eq!(
            revs.iter().map(|r| number(r)).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(next_number(&revs), 4);
        assert_eq!(next_number(&[]), 1);
    }
}
