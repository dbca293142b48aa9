//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook: requests that a configuration's
//! rules, selectors and matchConditions name are sent as AdmissionReviews to the webhook
//! (a URL or a service, trusted through its caBundle). Mutating webhooks run one after
//! another and may answer a JSONPatch, validating ones all at once; a webhook with `reinvocationPolicy: IfNeeded` runs
//! again when a later one changed the object. A webhook that cannot be reached or answers
//! nonsense fails the request unless its failurePolicy is Ignore.

use std::time::Duration;

use minik_registry::admission::{Attributes, Operation, Verdict};
use minik_registry::{ApiError, Registry, Result};
use serde_json::{Value, json};

use crate::Plugin;
use crate::matching::{self, Vars};

pub struct Webhooks {
    mutating: bool,
}

impl Webhooks {
    pub fn mutating() -> Self {
        Webhooks { mutating: true }
    }

    pub fn validating() -> Self {
        Webhooks { mutating: false }
    }

    fn plural(&self) -> &'static str {
        if self.mutating {
            "mutatingwebhookconfigurations"
        } else {
            "validatingwebhookconfigurations"
        }
    }

    /// The webhooks that want this request, in configuration-name order.
    async fn matching(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Vec<Value>> {
        if matching::exempt(attrs) {
            return Ok(Vec::new());
        }
        let mut configs = crate::cached(
            reg,
            "admissionregistration.k8s.io",
            "v1",
            self.plural(),
            None,
        )
        .await?;
        if configs.is_empty() {
            return Ok(Vec::new());
        }
        configs.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        let namespace = matching::namespace_object(reg, attrs, obj).await?;
        let mut out = Vec::new();
        for hook in configs
            .iter()
            .filter_map(|c| c["webhooks"].as_array())
            .flatten()
        {
            if matching::any_rule(&hook["rules"], attrs)
                && matching::namespace_selected(hook.get("namespaceSelector"), namespace.as_ref())
                && matching::object_selected(hook.get("objectSelector"), obj, attrs)
            {
                out.push(hook.clone());
            }
        }
        Ok(out)
    }
}

/// What one call gave: a patched object, warnings.
struct Answer {
    patched: Option<Value>,
    warnings: Vec<String>,
}

fn name_of(hook: &Value) -> &str {
    hook["name"].as_str().unwrap_or("")
}

/// Call one webhook; Ok(None) when its matchConditions exclude the request or it failed
/// and may be ignored.
async fn call(
    reg: &Registry,
    hook: &Value,
    attrs: &Attributes<'_>,
    obj: &Value,
) -> Result<Option<Answer>> {
    let name = name_of(hook);
    let uid = uuid::Uuid::new_v4().to_string();
    let request = matching::request(attrs, obj, &uid);
    let vars = Vars {
        request: &request,
        params: None,
        namespace: None,
        variables: None,
    };
    let ignore = hook["failurePolicy"] == "Ignore";
    let failed = |why: String| -> Result<Option<Answer>> {
        if ignore {
            tracing::warn!(webhook = name, error = %why, "admission webhook failed; ignored");
            return Ok(None);
        }
        Err(ApiError::Internal(format!(
            "failed calling webhook {name:?}: {why}"
        )))
    };
    match matching::conditions_hold(hook.get("matchConditions"), &vars) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => return failed(e),
    }
    if attrs.dry_run && !matches!(hook["sideEffects"].as_str(), Some("None" | "NoneOnDryRun")) {
        return Err(ApiError::BadRequest(format!(
            "admission webhook {name:?} does not support dry run"
        )));
    }
    let timeout = hook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30);
    let review =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    let answer = match reg
        .call_webhook(&hook["clientConfig"], &review, Duration::from_secs(timeout))
        .await
    {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    let response = &answer["response"];
    if response["uid"] != uid.as_str() {
        return failed(format!(
            "expected response.uid={uid:?}, got {:?}",
            response["uid"]
        ));
    }
    if response["allowed"] != true {
        return Err(denied(name, &response["status"]));
    }
    let warnings = response["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let patched = match response["patch"].as_str() {
        Some(p) => match patch(obj, p) {
            Ok(v) => Some(v),
            Err(e) => return failed(e),
        },
        None => None,
    };
    Ok(Some(Answer { patched, warnings }))
}

/// A refusal as kube-apiserver words it.
fn denied(name: &str, status: &Value) -> ApiError {
    let by = format!("admission webhook {name:?} denied the request");
    let code = status["code"].as_u64().unwrap_or(0) as u16;
    let message = match (status["message"].as_str(), status["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    ApiError::Denied {
        code: if code < 400 { 403 } else { code },
        message,
    }
}

fn patch(obj: &Value, encoded: &str) -> std::result::Result<Value, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("the patch is not base64: {e}"))?;
    let ops: json_patch::Patch =
        serde_json::from_slice(&bytes).map_err(|e| format!("the patch is not a JSONPatch: {e}"))?;
    let mut out = obj.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| format!("the patch does not apply: {e}"))?;
    Ok(out)
}

#[async_trait::async_trait]
impl Plugin for Webhooks {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<Vec<String>> {
        if !self.mutating {
            return Ok(Vec::new());
        }
        let hooks = self.matching(reg, attrs, obj).await?;
        let mut warnings = Vec::new();
        let mut last_change = None;
        for (i, hook) in hooks.iter().enumerate() {
            if let Some(a) = call(reg, hook, attrs, obj).await? {
                warnings.extend(a.warnings);
                if let Some(p) = a.patched.filter(|p| p != obj) {
                    *obj = reg.retype(attrs.info, &p)?;
                    last_change = Some(i);
                }
            }
        }
        // A webhook that asked to see later changes sees them once more.
        let again = hooks.iter().enumerate().filter(|(i, h)| {
            last_change.is_some_and(|l| *i < l) && h["reinvocationPolicy"] == "IfNeeded"
        });
        for (_, hook) in again {
            if let Some(a) = call(reg, hook, attrs, obj).await? {
                warnings.extend(a.warnings);
                if let Some(p) = a.patched {
                    *obj = reg.retype(attrs.info, &p)?;
                }
            }
        }
        Ok(warnings)
    }

    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict> {
        // Mutating webhooks see deletes here (there is nothing to change).
        if self.mutating && attrs.operation != Operation::Delete {
            return Ok(Verdict::default());
        }
        let hooks = self.matching(reg, attrs, obj).await?;
        // Validating webhooks are asked at once, as kube-apiserver does; the first refusal
        // in configuration order is the answer.
        let answers =
            futures::future::join_all(hooks.iter().map(|h| call(reg, h, attrs, obj))).await;
        let mut verdict = Verdict::default();
        for answer in answers {
            if let Some(a) = answer? {
                verdict.warnings.extend(a.warnings);
            }
        }
        Ok(verdict)
    }
}
