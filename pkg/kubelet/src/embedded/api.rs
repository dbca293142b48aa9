//! What the kubelet reads from the API for a pod, as the node: ConfigMaps and Secrets
//! (cached for one sync), Services (for service links), its Node (addresses, allocatable),
//! bound service account tokens (TokenRequest), and the PersistentVolume behind a claim.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};

/// Why something could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// As the kubelet's caches say it: `configmap "x" not found`.
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<kube::Error> for LookupError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => LookupError::Api(s.message.clone()),
            other => LookupError::Api(other.to_string()),
        }
    }
}

/// A GET that maps 404 to None.
async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, LookupError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?)
}

/// ConfigMaps and Secrets of one namespace, each read once per sync.
pub struct Lookups {
    client: kube::Client,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Lookups {
    pub fn new(client: kube::Client, namespace: &str) -> Lookups {
        Lookups {
            client,
            namespace: namespace.into(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// A ConfigMap; None when it does not exist.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, LookupError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = get_opt(&api, name).await?;
            self.config_maps.insert(name.into(), found);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    /// A Secret; None when it does not exist.
    pub async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, LookupError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = get_opt(&api, name).await?;
            self.secrets.insert(name.into(), found);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }

    /// A ConfigMap's data (string and binary), or the error the kubelet gives when it is
    /// missing and not optional (Ok(None) when optional).
    pub async fn config_map_data(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, LookupError> {
        match self.config_map(name).await? {
            Some(cm) => {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect();
                for (k, v) in cm.binary_data.iter().flatten() {
                    data.entry(k.clone()).or_insert_with(|| v.0.clone());
                }
                Ok(Some(data))
            }
            None if optional => Ok(None),
            None => Err(LookupError::NotFound {
                kind: "configmap",
                name: name.into(),
            }),
        }
    }

    /// A Secret's data, as `config_map_data`.
    pub async fn secret_data(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, LookupError> {
        match self.secret(name).await? {
            Some(s) => {
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect();
                // stringData is write-only, but a secret read from a fake may carry it.
                for (k, v) in s.string_data.iter().flatten() {
                    data.entry(k.clone())
                        .or_insert_with(|| v.clone().into_bytes());
                }
                Ok(Some(data))
            }
            None if optional => Ok(None),
            None => Err(LookupError::NotFound {
                kind: "secret",
                name: name.into(),
            }),
        }
    }
}

/// The Services whose environment variables a pod in `namespace` gets: those of its
/// namespace with service links on, and always the default namespace's "kubernetes".
pub async fn services(
    client: &kube::Client,
    namespace: &str,
    links: bool,
) -> Result<Vec<Service>, LookupError> {
    let mut out = Vec::new();
    if links {
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        out = api.list(&ListParams::default()).await?.items;
    }
    if !links || namespace != "default" {
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        if let Some(k) = get_opt(&api, "kubernetes").await? {
            out.retain(|s| s.metadata.name.as_deref() != Some("kubernetes"));
            out.push(k);
        }
    }
    Ok(out)
}

/// What the node's own object says that pods need.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// InternalIP addresses first, then ExternalIP.
    pub addresses: Vec<String>,
    pub allocatable: BTreeMap<String, Quantity>,
}

/// The node's object, read at most once a minute.
pub struct NodeCache {
    client: kube::Client,
    name: String,
    cached: Mutex<Option<(Instant, NodeFacts)>>,
}

const NODE_TTL: Duration = Duration::from_secs(60);

impl NodeCache {
    pub fn new(client: kube::Client, name: &str) -> NodeCache {
        NodeCache {
            client,
            name: name.into(),
            cached: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, NodeFacts)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last facts read, without asking the API (for pod_state).
    pub fn known(&self) -> Option<NodeFacts> {
        self.lock().as_ref().map(|(_, f)| f.clone())
    }

    pub async fn facts(&self) -> Result<NodeFacts, LookupError> {
        if let Some((at, facts)) = self.lock().as_ref()
            && at.elapsed() < NODE_TTL
        {
            return Ok(facts.clone());
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let node = get_opt(&api, &self.name)
            .await?
            .ok_or_else(|| LookupError::NotFound {
                kind: "node",
                name: self.name.clone(),
            })?;
        let status = node.status.unwrap_or_default();
        let mut addresses = Vec::new();
        for kind in ["InternalIP", "ExternalIP"] {
            for a in status
                .addresses
                .iter()
                .flatten()
                .filter(|a| a.type_ == kind)
            {
                if !addresses.contains(&a.address) {
                    addresses.push(a.address.clone());
                }
            }
        }
        let facts = NodeFacts {
            addresses,
            allocatable: status.allocatable.unwrap_or_default(),
        };
        *self.lock() = Some((Instant::now(), facts.clone()));
        Ok(facts)
    }
}

/// A token of the pod's service account bound to the pod; with its expiry.
pub async fn token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration_seconds: i64,
) -> Result<(String, Timestamp), LookupError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience
                .filter(|a| !a.is_empty())
                .map(|a| vec![a.to_string()]),
            expiration_seconds: Some(expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let issued = api
        .create_token_request(&account, &PostParams::default(), &request)
        .await?;
    let status = issued.status.ok_or_else(|| {
        LookupError::Invalid(format!("no token issued for service account {account}"))
    })?;
    match (status.token, status.expiration_timestamp) {
        (Some(token), Some(expires)) => Ok((token, expires.0)),
        _ => Err(LookupError::Invalid(format!(
            "no token issued for service account {account}"
        ))),
    }
}

/// Where a claim's volume is on this node: the bound PV's hostPath (with its type) or
/// local path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    pub path: PathBuf,
    /// hostPath's type ("DirectoryOrCreate", ...); None for local volumes.
    pub host_path_type: Option<String>,
    /// A local volume (fsGroup applies to it; not to hostPath).
    pub local: bool,
}

pub async fn claim(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<ClaimPath, LookupError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = get_opt(&claims, name)
        .await?
        .ok_or_else(|| LookupError::NotFound {
            kind: "persistentvolumeclaim",
            name: name.into(),
        })?;
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            LookupError::Invalid(format!("PVC {namespace}/{name} has not been bound"))
        })?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = get_opt(&volumes, &volume)
        .await?
        .ok_or_else(|| LookupError::NotFound {
            kind: "persistentvolume",
            name: volume.clone(),
        })?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(h) = spec.host_path {
        return Ok(ClaimPath {
            path: h.path.into(),
            host_path_type: h.type_,
            local: false,
        });
    }
    if let Some(l) = spec.local {
        return Ok(ClaimPath {
            path: l.path.into(),
            host_path_type: None,
            local: true,
        });
    }
    Err(LookupError::Invalid(format!(
        "persistentvolume {volume}: only hostPath and local volumes can be mounted on this node"
    )))
}
