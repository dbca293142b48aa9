//! A container's environment as the kubelet makes it (makeEnvironmentVariables): envFrom
//! first, then env in order (values with `$(VAR)` expanded against the variables before them
//! and the service variables; configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef),
//! then the Docker-link style variables of Services (links.rs) that nothing above defined.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::api::Lookups;
use super::expand::expand;
use super::fieldpath::{self, Addresses};
use super::resources;

/// Name -> value, in the order first defined (a later definition replaces in place).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(Vec<(String, String)>);

impl Env {
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// "NAME=value" entries.
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().map(|(n, v)| format!("{n}={v}")).collect()
    }
}

/// A name an environment may hold: printable ASCII without '=' (the relaxed rule).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// What the environment is made from, besides the API.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub addresses: &'a Addresses,
    pub allocatable: &'a BTreeMap<String, Quantity>,
    pub services: &'a BTreeMap<String, String>,
}

/// The container's environment; an error is the CreateContainerConfigError message.
pub async fn build(lookups: &mut Lookups, input: &Inputs<'_>) -> Result<Env, String> {
    let (pod, c) = (input.pod, input.container);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = Env::default();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            let found = lookups
                .config_map(&r.name)
                .await
                .map_err(|e| e.to_string())?;
            match found {
                // envFrom takes a ConfigMap's string data only.
                Some(cm) => cm.data.clone().unwrap_or_default(),
                None if optional => continue,
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match lookups
                .secret_data(&r.name, optional)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(d) => d
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
                None => continue,
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let name = format!("{prefix}{k}");
            if valid_name(&name) {
                env.set(&name, v);
            } else {
                tracing::debug!(name, "skipping an invalid environment variable name");
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = var.value.clone().unwrap_or_default();
        let resolved = if !value.is_empty() {
            let lookup = |name: &str| {
                env.get(name)
                    .or(input.services.get(name).map(String::as_str))
                    .map(str::to_string)
            };
            expand(&value, &lookup)
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                fieldpath::value(pod, &f.field_path, input.addresses)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => fieldpath::container(pod, name)?,
                    None => c,
                };
                resources::field_value(r, target, input.allocatable)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                let found = lookups
                    .config_map(&r.name)
                    .await
                    .map_err(|e| e.to_string())?;
                let cm = match found {
                    Some(cm) => cm,
                    None if optional => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            r.key, r.name
                        ));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                let Some(data) = lookups
                    .secret_data(&r.name, optional)
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    continue;
                };
                match data.get(&r.key) {
                    Some(v) => String::from_utf8_lossy(v).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in Secret {namespace}/{}",
                            r.key, r.name
                        ));
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(&var.name, resolved);
    }
    for (name, value) in input.services {
        if env.get(name).is_none() {
            env.set(name, value.clone());
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(env: serde_json::Value, env_from: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "env": env, "envFrom": env_from,
                "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    async fn build_env(env: serde_json::Value, env_from: serde_json::Value) -> Result<Env, String> {
        let client = crate::embedded::fake_api::client(vec![
            (
                "/api/v1/namespaces/default/configmaps/cfg",
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "cfg", "namespace": "default"},
                    "data": {"color": "blue", "bad=name": "x", "LEVEL": "3"}}),
            ),
            (
                "/api/v1/namespaces/default/secrets/creds",
                serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "creds", "namespace": "default"},
                    "data": {"password": "czNjcmV0"}}),
            ),
        ]);
        let (pod, c) = pod(env, env_from);
        let mut lookups = Lookups::new(client, "default");
        let services: BTreeMap<String, String> = [(
            "KUBERNETES_SERVICE_HOST".to_string(),
            "10.43.0.1".to_string(),
        )]
        .into();
        let addresses = Addresses {
            host_ips: vec!["192.168.0.9".into()],
            pod_ips: vec![],
        };
        let allocatable = BTreeMap::new();
        let input = Inputs {
            pod: &pod,
            container: &c,
            addresses: &addresses,
            allocatable: &allocatable,
            services: &services,
        };
        build(&mut lookups, &input).await
    }

    #[tokio::test]
    async fn env_comes_from_values_references_and_sources() {
        let env = build_env(
            serde_json::json!([
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "MSG", "value": "$(COLOR) at $(KUBERNETES_SERVICE_HOST) $(NOPE) $$(COLOR)"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k", "optional": true}}},
                {"name": "LEVEL", "value": "override"}]),
            serde_json::json!([{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                {"configMapRef": {"name": "cfg"}},
                {"secretRef": {"name": "absent", "optional": true}}]),
        )
        .await
        .unwrap();
        assert_eq!(env.get("CFG_color"), Some("blue"));
        assert_eq!(env.get("bad=name"), None);
        assert_eq!(env.get("COLOR"), Some("blue"));
        assert_eq!(env.get("PASSWORD"), Some("s3cret"));
        assert_eq!(env.get("MSG"), Some("blue at 10.43.0.1 $(NOPE) $(COLOR)"));
        assert_eq!(env.get("NODE"), Some("n1"));
        assert_eq!(env.get("HOST"), Some("192.168.0.9"));
        assert_eq!(env.get("MEM"), Some("64"));
        assert_eq!(env.get("OPT"), None);
        assert_eq!(env.get("LEVEL"), Some("override"));
        assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
    }

    #[tokio::test]
    async fn missing_sources_are_config_errors_with_the_kubelets_words() {
        let err = |env, from| async move { build_env(env, from).await.unwrap_err() };
        assert_eq!(
            err(serde_json::json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}]), serde_json::json!([])).await,
            "couldn't find key nope in ConfigMap default/cfg"
        );
        assert_eq!(
            err(serde_json::json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]), serde_json::json!([])).await,
            "couldn't find key nope in Secret default/creds"
        );
        assert_eq!(
            err(serde_json::json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]), serde_json::json!([])).await,
            "configmap \"gone\" not found"
        );
        assert_eq!(
            err(
                serde_json::json!([]),
                serde_json::json!([{"secretRef": {"name": "gone"}}])
            )
            .await,
            "secret \"gone\" not found"
        );
    }

    #[test]
    fn env_keeps_the_first_definitions_place() {
        let mut env = Env::default();
        env.set("A", "1".into());
        env.set("B", "2".into());
        env.set("A", "3".into());
        assert_eq!(env.entries(), vec!["A=3", "B=2"]);
        assert!(
            valid_name("my.var-1") && !valid_name("A=B") && !valid_name("") && !valid_name("é")
        );
    }
}
