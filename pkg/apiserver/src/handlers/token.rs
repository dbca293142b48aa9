//! POST serviceaccounts/<name>/token (TokenRequest): a signed token for the service account,
//! with audiences, an expiry (at least 10 minutes, 1 hour by default) and an optional bound
//! pod, secret or node.

use axum::http::StatusCode;
use axum::response::Response;
use minik_registry::{ApiError, Cause};
use serde_json::{Value, json};

use crate::AppState;
use crate::authn::serviceaccount::ISSUER;
use crate::status::json_response;

fn invalid(name: &str, field: &str, message: &str) -> ApiError {
    ApiError::Invalid {
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        name: name.into(),
        causes: vec![Cause {
            field: field.into(),
            message: message.into(),
            reason: "FieldValueInvalid".into(),
        }],
    }
}

pub(super) async fn token_request(
    state: &AppState,
    ns: &str,
    name: &str,
    request: &Value,
) -> Result<Response, ApiError> {
    let signer = state
        .authenticator
        .service_accounts
        .clone()
        .ok_or_else(|| ApiError::Internal("service-account tokens are not issued".into()))?;
    let find = |plural| minik_api::builtin("", "v1", plural);
    let sa = state
        .registry
        .get(find("serviceaccounts"), Some(ns), name)
        .await?;
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if expiration < 600 {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            &format!(
                "Invalid value: {expiration}: may not specify a duration less than 10 minutes"
            ),
        ));
    }
    let audiences = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!(ISSUER)],
    };
    let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name,
        "uid": sa.pointer("/metadata/uid")}});
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
        let kind = bound["kind"].as_str().unwrap_or("");
        let bound_name = bound["name"].as_str().unwrap_or("");
        let (plural, scope, key) = match kind {
            "Pod" => ("pods", Some(ns), "pod"),
            "Secret" => ("secrets", Some(ns), "secret"),
            "Node" => ("nodes", None, "node"),
            other => {
                return Err(invalid(
                    name,
                    "spec.boundObjectRef.kind",
                    &format!(
                        "Unsupported value: \"{other}\": supported values: \"Node\", \"Pod\", \"Secret\""
                    ),
                ));
            }
        };
        let object = state.registry.get(find(plural), scope, bound_name).await?;
        let uid = object
            .pointer("/metadata/uid")
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(want) = bound.get("uid").and_then(Value::as_str)
            && Some(want) != uid.as_str()
        {
            return Err(invalid(
                name,
                "spec.boundObjectRef.uid",
                &format!("Invalid value: \"{want}\": the {kind} has another uid"),
            ));
        }
        k8s[key] = json!({"name": bound_name, "uid": uid});
    }
    let now = chrono::Utc::now();
    let exp = now + chrono::Duration::seconds(expiration);
    let claims = json!({"iss": ISSUER, "sub": format!("system:serviceaccount:{ns}:{name}"),
        "aud": audiences, "iat": now.timestamp(), "nbf": now.timestamp(), "exp": exp.timestamp(),
        "jti": uuid_like(), "kubernetes.io": k8s});
    let token = signer.sign(&claims).map_err(ApiError::Internal)?;
    let mut out_spec = spec.clone();
    out_spec["audiences"] = json!(audiences);
    out_spec["expirationSeconds"] = json!(expiration);
    let body = json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns,
            "creationTimestamp": now.format("%Y-%m-%dT%H:%M:%SZ").to_string()},
        "spec": out_spec,
        "status": {"token": token,
            "expirationTimestamp": exp.format("%Y-%m-%dT%H:%M:%SZ").to_string()}});
    Ok(json_response(StatusCode::CREATED, &body, &[]))
}

/// A random token id.
fn uuid_like() -> String {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
