//! ServiceAccount: a new pod runs as its namespace's `default` service account unless it
//! names one, and gets the account's token, the cluster CA and its namespace in a projected
//! `kube-api-access-*` volume mounted where clients look for them, unless the pod or its
//! service account turns automounting off.

use minik_registry::admission::Attributes;
use minik_registry::{Registry, Result};
use rand::Rng;
use serde_json::{Value, json};

use crate::Plugin;

const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Characters Kubernetes uses for generated suffixes.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn suffix() -> String {
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn volume(name: &str) -> Value {
    json!({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
    ]}})
}

pub struct ServiceAccount;

#[async_trait::async_trait]
impl Plugin for ServiceAccount {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        if !crate::creates(attrs, "pods") {
            return Ok(Vec::new());
        }
        if pod
            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some()
        {
            return Ok(Vec::new());
        }
        let account = match pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
        {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => "default".to_string(),
        };
        pod["spec"]["serviceAccountName"] = json!(account);
        pod["spec"]["serviceAccount"] = json!(account);
        let accounts = crate::cached(reg, "", "v1", "serviceaccounts", attrs.namespace).await?;
        let sa_automount = accounts
            .iter()
            .find(|a| a["metadata"]["name"] == account.as_str())
            .and_then(|a| a.get("automountServiceAccountToken"))
            .and_then(Value::as_bool);
        let automount = pod
            .pointer("/spec/automountServiceAccountToken")
            .and_then(Value::as_bool)
            .or(sa_automount)
            .unwrap_or(true);
        if !automount {
            return Ok(Vec::new());
        }
        let name = format!("kube-api-access-{}", suffix());
        let spec = &mut pod["spec"];
        crate::ensure_array(&mut spec["volumes"]);
        if let Some(v) = spec["volumes"].as_array_mut() {
            v.push(volume(&name));
        }
        for c in crate::pods::containers_mut(spec) {
            let mounted = c["volumeMounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["mountPath"] == MOUNT_PATH));
            if mounted {
                continue;
            }
            crate::ensure_array(&mut c["volumeMounts"]);
            if let Some(m) = c["volumeMounts"].as_array_mut() {
                m.push(json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
            }
        }
        Ok(Vec::new())
    }
}
