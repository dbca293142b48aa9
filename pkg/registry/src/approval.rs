//! PUT certificatesigningrequests/<name>/approval: only the Approved, Denied and Failed
//! conditions change (what `kubectl certificate approve|deny` sends); an approval and a
//! denial exclude each other and neither can be taken back.

use serde_json::{Value, json};

use crate::error::{ApiError, Cause, Result};
use crate::rest::Registry;
use crate::subresources::Change;

fn of_type<'a>(conds: &'a [Value], t: &str) -> Option<&'a Value> {
    conds.iter().find(|c| c["type"] == t)
}

impl Registry {
    pub async fn update_approval(
        &self,
        name: &str,
        body: &Value,
        params: &crate::WriteParams,
    ) -> Result<Value> {
        let info = minik_api::builtin("certificates.k8s.io", "v1", "certificatesigningrequests");
        let wanted = body
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let rv = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        let invalid = |message: &str| {
            ApiError::invalid(
                info,
                name,
                vec![Cause {
                    field: "status.conditions".into(),
                    message: message.into(),
                    reason: "FieldValueForbidden".into(),
                }],
            )
        };
        self.modify(
            info,
            None,
            name,
            Change::by(params, "approval", rv),
            |csr| {
                let old = csr
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if of_type(&wanted, "Approved").is_some() && of_type(&wanted, "Denied").is_some() {
                    return Err(invalid(
                        "Invalid value: Approved and Denied conditions are mutually exclusive",
                    ));
                }
                for t in ["Approved", "Denied"] {
                    if of_type(&old, t).is_some() && of_type(&wanted, t).is_none() {
                        return Err(invalid(&format!(
                            "Forbidden: updates may not remove a condition of type {t:?}"
                        )));
                    }
                }
                let now = crate::now_rfc3339();
                let conds: Vec<Value> = wanted
                    .iter()
                    .filter(|c| {
                        matches!(c["type"].as_str(), Some("Approved" | "Denied" | "Failed"))
                    })
                    .map(|c| {
                        let mut c = c.clone();
                        for k in ["lastUpdateTime", "lastTransitionTime"] {
                            if c[k].is_null() {
                                c[k] = json!(now);
                            }
                        }
                        if c["status"].is_null() {
                            c["status"] = json!("True");
                        }
                        c
                    })
                    .collect();
                if !csr["status"].is_object() {
                    csr["status"] = json!({});
                }
                csr["status"]["conditions"] = json!(conds);
                Ok(())
            },
        )
        .await
    }
}
