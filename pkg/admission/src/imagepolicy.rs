//! ImagePolicyWebhook: a new pod's images are sent as an ImageReview
//! (imagepolicy.k8s.io/v1alpha1) to the service the plugin's kubeconfig names; a denial (or,
//! unless `defaultAllow`, a failed call) refuses the pod. Answers are remembered for
//! `allowTTL` / `denyTTL` seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use minik_registry::admission::{Attributes, Verdict};
use minik_registry::kubeclient::WebhookClient;
use minik_registry::{ApiError, Registry, Result};
use serde_json::{Value, json};

use crate::Plugin;

pub struct ImagePolicyWebhook {
    client: WebhookClient,
    allow_ttl: Duration,
    deny_ttl: Duration,
    default_allow: bool,
    cache: Mutex<HashMap<String, (Instant, bool, String)>>,
}

impl ImagePolicyWebhook {
    pub fn new(config: Option<&Value>) -> std::result::Result<Self, String> {
        let c = config
            .map(|c| &c["imagePolicy"])
            .filter(|c| c.is_object())
            .ok_or(
                "ImagePolicyWebhook needs imagePolicy settings in --admission-control-config-file",
            )?;
        let file = c["kubeConfigFile"]
            .as_str()
            .ok_or("ImagePolicyWebhook: imagePolicy.kubeConfigFile is required")?;
        let client = WebhookClient::from_kubeconfig(std::path::Path::new(file))
            .map_err(|e| format!("ImagePolicyWebhook: {e}"))?;
        let secs = |k: &str, d: u64| Duration::from_secs(c[k].as_u64().unwrap_or(d));
        Ok(ImagePolicyWebhook {
            client,
            allow_ttl: secs("allowTTL", 300),
            deny_ttl: secs("denyTTL", 30),
            default_allow: c["defaultAllow"] == true,
            cache: Mutex::new(HashMap::new()),
        })
    }

    async fn review(&self, review: &Value) -> std::result::Result<(bool, String), String> {
        let key = review.to_string();
        if let Some((until, ok, why)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && Instant::now() < *until
        {
            return Ok((*ok, why.clone()));
        }
        let answer = self.client.post(review).await?;
        let allowed = answer["status"]["allowed"] == true;
        let reason = answer["status"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let ttl = if allowed {
            self.allow_ttl
        } else {
            self.deny_ttl
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now() + ttl, allowed, reason.clone()));
        Ok((allowed, reason))
    }
}

#[async_trait::async_trait]
impl Plugin for ImagePolicyWebhook {
    async fn validate(&self, _: &Registry, attrs: &Attributes<'_>, pod: &Value) -> Result<Verdict> {
        let ephemeral = crate::is_core_sub(attrs, "pods", "ephemeralcontainers");
        if !(crate::creates(attrs, "pods") || ephemeral) {
            return Ok(Verdict::default());
        }
        let containers: Vec<Value> = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .filter_map(|k| pod["spec"][*k].as_array())
            .flatten()
            .map(|c| json!({"image": c["image"]}))
            .collect();
        let annotations: serde_json::Map<String, Value> = pod["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.contains(".image-policy.k8s.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let review = json!({"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
            "spec": {"containers": containers, "annotations": annotations,
                "namespace": attrs.namespace.unwrap_or("")}});
        let refuse = |why: String| Err(ApiError::forbidden(attrs.info, attrs.name, why));
        match self.review(&review).await {
            Ok((true, _)) => Ok(Verdict::default()),
            Ok((false, reason)) => refuse(format!(
                "image policy webhook backend denied one or more images: {reason}"
            )),
            Err(e) if self.default_allow => {
                tracing::warn!(error = %e, "image policy webhook failed; allowed by defaultAllow");
                Ok(Verdict::default())
            }
            Err(e) => refuse(format!("image policy webhook failed: {e}")),
        }
    }
}
