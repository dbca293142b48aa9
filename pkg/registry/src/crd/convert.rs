//! Versions of a custom resource: with the `None` strategy only apiVersion changes; with
//! `Webhook`, the CRD's conversion webhook converts them (a ConversionReview over HTTPS, to
//! a URL or to a service).

use minik_api::ResourceInfo;
use serde_json::{Value, json};

use crate::{ApiError, Registry, Result};

impl Registry {
    /// The webhook client config of a custom resource's CRD, if it converts by webhook.
    pub(crate) fn conversion_webhook(&self, info: &ResourceInfo) -> Option<Value> {
        if !info.custom {
            return None;
        }
        let (def, _) = self.crds.version(info)?;
        def.webhook.clone()
    }

    /// `objects` (of `info`'s resource, in any version) in `api_version`.
    pub(crate) async fn convert_custom(
        &self,
        info: &ResourceInfo,
        objects: Vec<Value>,
        api_version: &str,
    ) -> Result<Vec<Value>> {
        let differ = |o: &Value| o.get("apiVersion").and_then(Value::as_str) != Some(api_version);
        if !objects.iter().any(differ) {
            return Ok(objects);
        }
        let Some(config) = self.conversion_webhook(info) else {
            return Ok(objects
                .into_iter()
                .map(|mut o| {
                    o["apiVersion"] = json!(api_version);
                    o
                })
                .collect());
        };
        let uid = uuid::Uuid::new_v4().to_string();
        let review = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": uid, "desiredAPIVersion": api_version, "objects": objects}});
        let failed = |why: String| {
            ApiError::Internal(format!(
                "conversion webhook for {}, Kind={} failed: {why}",
                info.api_version(),
                info.kind
            ))
        };
        let answer = self
            .call_webhook(&config, &review, std::time::Duration::from_secs(10))
            .await
            .map_err(failed)?;
        let response = &answer["response"];
        if response["result"]["status"] != "Success" {
            return Err(failed(
                response["result"]["message"]
                    .as_str()
                    .unwrap_or("the webhook did not succeed")
                    .to_string(),
            ));
        }
        let converted = response["convertedObjects"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if converted.len() != objects.len() {
            return Err(failed(format!(
                "expected {} converted objects, got {}",
                objects.len(),
                converted.len()
            )));
        }
        Ok(converted)
    }

    /// Stored objects (of any resource) as `info` shows them; objects that need no
    /// conversion are shared, not copied.
    pub(crate) async fn shown_all(
        &self,
        info: &ResourceInfo,
        objects: Vec<std::sync::Arc<Value>>,
    ) -> Result<Vec<std::sync::Arc<Value>>> {
        if self.conversion_webhook(info).is_some() {
            let plain = objects.iter().map(|o| (**o).clone()).collect();
            let shown = self
                .convert_custom(info, plain, &info.api_version())
                .await?;
            return Ok(shown.into_iter().map(std::sync::Arc::new).collect());
        }
        if !crate::convert::converts(info) {
            return Ok(objects);
        }
        Ok(objects
            .into_iter()
            .map(|o| std::sync::Arc::new(crate::convert::from_storage(info, (*o).clone())))
            .collect())
    }

    /// A stored custom resource as its served version shows it.
    pub(crate) async fn custom_shown(&self, info: &ResourceInfo, obj: Value) -> Result<Value> {
        let mut v = self
            .convert_custom(info, vec![obj], &info.api_version())
            .await?;
        Ok(v.pop().unwrap_or(Value::Null))
    }

    /// A custom resource as it is stored (its storage version).
    pub(crate) async fn custom_stored(&self, info: &ResourceInfo, obj: &Value) -> Result<Value> {
        let storage = format!("{}/{}", info.group, info.storage_version);
        let mut v = self
            .convert_custom(info, vec![obj.clone()], &storage)
            .await?;
        Ok(v.pop().unwrap_or(Value::Null))
    }
}
