//! What the API server adds around the admission chain: legacy service-account token
//! secrets get their token, (under RBAC) roles and bindings are checked for escalation, and
//! certificate requests are approved and signed only by who may (CertificateApproval,
//! CertificateSigning, CertificateSubjectRestriction).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minik_registry::admission::{Admission, Attributes, Operation, Verdict};
use minik_registry::{ApiError, Cause, Registry, Result};
use serde_json::{Value, json};

use crate::authn::serviceaccount::{TokenSigner, legacy_claims};
use crate::authz::escalation;

/// The admission chain as the server runs it.
pub struct ServerAdmission {
    pub inner: Arc<dyn Admission>,
    /// Check roles and bindings for escalation (RBAC authorization).
    pub rbac: bool,
    /// Signs legacy tokens; the CA clients of the API server trust.
    pub tokens: Option<(Arc<TokenSigner>, String)>,
    /// Decides who may approve and sign certificate requests (None: everyone may).
    pub authorization: Option<crate::authz::Mode>,
    /// Which of the plugins the server runs itself are on (CertificateApproval,
    /// CertificateSigning, CertificateSubjectRestriction, OwnerReferencesPermissionEnforcement).
    pub plugins: Vec<&'static str>,
}

const SA_TOKEN: &str = "kubernetes.io/service-account-token";
const SA_NAME: &str = "kubernetes.io/service-account.name";

/// Fill a new service-account token secret: token, ca.crt, namespace, and the account's uid.
async fn fill_token(
    reg: &Registry,
    attrs: &Attributes<'_>,
    secret: &mut Value,
    signer: &TokenSigner,
    ca: &str,
) -> Result<()> {
    let ns = attrs.namespace.unwrap_or("default");
    let account = secret["metadata"]["annotations"][SA_NAME]
        .as_str()
        .unwrap_or("")
        .to_string();
    let field = format!("metadata.annotations[{SA_NAME}]");
    let invalid = |message: String| {
        ApiError::invalid(
            attrs.info,
            attrs.name,
            vec![Cause {
                field: field.clone(),
                message,
                reason: "FieldValueInvalid".into(),
            }],
        )
    };
    if account.is_empty() {
        return Err(invalid(
            "Required value: the service account the token is for".into(),
        ));
    }
    let info = minik_api::builtin("", "v1", "serviceaccounts");
    let sa = reg.get(info, Some(ns), &account).await.map_err(|_| {
        invalid(format!(
            "Not found: service account {account:?} in namespace {ns:?}"
        ))
    })?;
    let uid = sa["metadata"]["uid"].as_str().unwrap_or("");
    let claims = legacy_claims(ns, &account, uid, attrs.name);
    let token = signer.sign(&claims).map_err(ApiError::Internal)?;
    secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] = json!(uid);
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    secret["data"]["token"] = json!(STANDARD.encode(token));
    secret["data"]["ca.crt"] = json!(STANDARD.encode(ca));
    secret["data"]["namespace"] = json!(STANDARD.encode(ns));
    Ok(())
}

#[async_trait::async_trait]
impl Admission for ServerAdmission {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<Vec<String>> {
        let new_token_secret = attrs.info.group.is_empty()
            && attrs.info.plural == "secrets"
            && attrs.subresource.is_none()
            && attrs.operation == Operation::Create
            && obj["type"] == SA_TOKEN
            && obj["data"]["token"].is_null();
        if let (true, Some((signer, ca))) = (new_token_secret, &self.tokens) {
            fill_token(reg, attrs, obj, signer, ca).await?;
        }
        if attrs.info.group == "certificates.k8s.io"
            && attrs.info.plural == "certificatesigningrequests"
        {
            crate::certificates::prepare(attrs, obj);
        }
        self.inner.mutate(reg, attrs, obj).await
    }

    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict> {
        if self.rbac && escalation::rbac_write(attrs) {
            escalation::check(reg, attrs, obj).await?;
        }
        if attrs.info.group == "certificates.k8s.io"
            && attrs.info.plural == "certificatesigningrequests"
        {
            crate::certificates::check(&self.plugins, self.authorization.as_ref(), reg, attrs, obj)
                .await?;
        }
        if self
            .plugins
            .contains(&"OwnerReferencesPermissionEnforcement")
            && let Some(mode) = &self.authorization
        {
            crate::owners::check(mode, reg, attrs, obj).await?;
        }
        self.inner.validate(reg, attrs, obj).await
    }
}
