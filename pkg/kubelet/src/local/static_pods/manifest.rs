//! Reading the manifests directory as kubelet's file source does: every `.yaml`, `.yml`
//! or `.json` file (dotfiles skipped, not recursive) holds one Pod, which becomes the
//! static pod `<name>-<node>` (namespace `default` when unset) bound to the node, with the
//! API server's pod defaults, its uid a hash of the file and the node
//! (`kubernetes.io/config.hash`), and the annotations `kubernetes.io/config.source: file`
//! and `kubernetes.io/config.seen`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

pub const HASH: &str = "kubernetes.io/config.hash";
pub const SOURCE: &str = "kubernetes.io/config.source";
pub const SEEN: &str = "kubernetes.io/config.seen";

/// Why a manifest is not a static pod.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML or JSON: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Whether `name` is a manifest file the kubelet reads.
pub fn is_manifest(name: &str) -> bool {
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// The uid of the static pod of `bytes` read from `path` on `node` (32 hex digits, like
/// kubelet's md5-based ones).
pub fn hash(bytes: &[u8], node: &str, path: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(bytes);
    ctx.update(format!("host:{node}").as_bytes());
    ctx.update(format!("file:{path}").as_bytes());
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn default(obj: &mut Value, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj[key] = value;
    }
}

/// The defaults the API server gives a pod (which the kubelet's decoding gives a static
/// pod): restart and DNS policy, grace period, each container's pull policy and
/// termination message.
fn defaults(spec: &mut Value) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        let Some(Value::Array(cs)) = spec.get_mut(list) else {
            continue;
        };
        for c in cs {
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            let tag = image.rsplit('/').next().unwrap_or("");
            let latest = !image.contains('@') && (!tag.contains(':') || tag.ends_with(":latest"));
            let policy = if latest { "Always" } else { "IfNotPresent" };
            default(c, "imagePullPolicy", json!(policy));
            default(c, "terminationMessagePath", json!("/dev/termination-log"));
            default(c, "terminationMessagePolicy", json!("File"));
        }
    }
}

/// The static pod of manifest `bytes` (file `path`) on `node`, first seen at `seen`.
pub fn static_pod(bytes: &[u8], path: &str, node: &str, seen: &str) -> Result<Pod, ManifestError> {
    let text = String::from_utf8_lossy(bytes);
    let mut v: Value = serde_saphyr::from_str(&text).map_err(|e| ManifestError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    let invalid = |message: String| ManifestError::Invalid {
        path: path.into(),
        message,
    };
    if v["kind"] != "Pod" || v["apiVersion"] != "v1" {
        return Err(invalid(format!(
            "holds {} {}, not a v1 Pod",
            v["apiVersion"], v["kind"]
        )));
    }
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(invalid("the pod has no name".into()));
    }
    let uid = match v["metadata"]["uid"].as_str() {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => hash(bytes, node, path),
    };
    let meta = &mut v["metadata"];
    meta["name"] = json!(format!("{name}-{node}"));
    default(meta, "namespace", json!("default"));
    meta["uid"] = json!(uid);
    default(meta, "annotations", json!({}));
    meta["annotations"][HASH] = json!(uid);
    meta["annotations"][SOURCE] = json!("file");
    meta["annotations"][SEEN] = json!(seen);
    for gone in [
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
    ] {
        if let Some(m) = meta.as_object_mut() {
            m.remove(gone);
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    default(&mut v, "spec", json!({}));
    v["spec"]["nodeName"] = json!(node);
    defaults(&mut v["spec"]);
    let pod: Pod = serde_json::from_value(v).map_err(|e| invalid(e.to_string()))?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Err(invalid("the pod has no containers".into()));
    }
    Ok(pod)
}

/// The static pods of `dir` now, by "namespace/name". `seen` keeps when each uid was first
/// seen (the config.seen annotation stays while the file does not change). A file that
/// is not a pod is logged and skipped; a missing directory has none.
pub fn scan(dir: &Path, node: &str, seen: &mut HashMap<String, String>) -> BTreeMap<String, Pod> {
    let mut pods = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return pods;
    };
    let mut files: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_manifest))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut uids = Vec::new();
    for path in files {
        let shown = path.display().to_string();
        let pod = std::fs::read(&path)
            .map_err(|source| ManifestError::Read {
                path: shown.clone(),
                source,
            })
            .and_then(|bytes| {
                let uid = hash(&bytes, node, &shown);
                let at = seen
                    .entry(uid.clone())
                    .or_insert_with(|| Timestamp::now().to_string())
                    .clone();
                static_pod(&bytes, &shown, node, &at).map(|pod| (uid, pod))
            });
        match pod {
            Ok((uid, pod)) => {
                let key = format!(
                    "{}/{}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                if pods.contains_key(&key) {
                    tracing::warn!(
                        file = shown,
                        pod = key,
                        "another manifest has this pod; skipping"
                    );
                    continue;
                }
                uids.push(uid);
                pods.insert(key, pod);
            }
            Err(e) => tracing::warn!(error = %e, "skipping a static pod manifest"),
        }
    }
    seen.retain(|uid, _| uids.contains(uid));
    pods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_becomes_a_static_pod_of_the_node() {
        let yaml = b"apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n\
            spec: {containers: [{name: c, image: busybox}]}\n";
        let pod = static_pod(yaml, "/m/web.yaml", "n1", "t").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        let a = pod.metadata.annotations.clone().unwrap();
        assert_eq!(a[HASH], uid);
        assert_eq!(a[SOURCE], "file");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Always")
        );
        // Another node or other content: another uid.
        assert_ne!(hash(yaml, "n2", "/m/web.yaml"), uid);
        assert_ne!(hash(b"x", "n1", "/m/web.yaml"), uid);
        assert!(static_pod(b"kind: Service\napiVersion: v1", "f", "n", "t").is_err());
        assert!(static_pod(b"{", "f", "n", "t").is_err());
        assert!(is_manifest("a.yml") && is_manifest("b.json") && !is_manifest(".a.yaml"));
        assert!(!is_manifest("a.txt"));
    }

    #[test]
    fn scanning_reads_each_manifest_and_keeps_when_it_was_seen() {
        let dir = tempfile::tempdir().unwrap();
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"kube-system"},
            "spec":{"containers":[{"name":"c","image":"busybox:1"}]}}"#;
        std::fs::write(dir.path().join("a.json"), pod).unwrap();
        std::fs::write(dir.path().join(".hidden.json"), pod).unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
        let mut seen = HashMap::new();
        let pods = scan(dir.path(), "n", &mut seen);
        assert_eq!(pods.keys().collect::<Vec<_>>(), ["kube-system/a-n"]);
        let first = pods["kube-system/a-n"]
            .metadata
            .annotations
            .clone()
            .unwrap()[SEEN]
            .clone();
        let again = scan(dir.path(), "n", &mut seen);
        assert_eq!(
            again["kube-system/a-n"]
                .metadata
                .annotations
                .clone()
                .unwrap()[SEEN],
            first
        );
        std::fs::remove_file(dir.path().join("a.json")).unwrap();
        assert!(scan(dir.path(), "n", &mut seen).is_empty());
        assert!(seen.is_empty());
        assert!(scan(&dir.path().join("missing"), "n", &mut seen).is_empty());
    }
}
