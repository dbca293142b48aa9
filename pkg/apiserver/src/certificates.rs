//! CertificateApproval, CertificateSigning and CertificateSubjectRestriction: approving or
//! denying a CertificateSigningRequest takes `approve` on `signers/<signerName>`, issuing its
//! certificate takes `sign`, and nobody may ask the kube-apiserver-client signer for a
//! system:masters certificate.

use minik_registry::admission::{Attributes as Write, Operation};
use minik_registry::{ApiError, Registry, Result};
use serde_json::Value;

use crate::authn::UserInfo;
use crate::authz::{Attributes, Decision, Mode};

fn decided(conds: &Value) -> bool {
    conds
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| matches!(c["type"].as_str(), Some("Approved" | "Denied")))
}

/// Whether `user` may `verb` the signer (or every signer of its domain).
async fn may(mode: &Mode, reg: &Registry, user: &UserInfo, verb: &str, signer: &str) -> bool {
    let domain = signer.split_once('/').map(|(d, _)| format!("{d}/*"));
    for name in std::iter::once(signer.to_string()).chain(domain) {
        let a = Attributes {
            verb: verb.into(),
            resource_request: true,
            group: "certificates.k8s.io".into(),
            resource: "signers".into(),
            name,
            ..Default::default()
        };
        if mode.decide(reg, user, &a).await == Decision::Allow {
            return true;
        }
    }
    false
}

/// The organizations the CSR of `spec.request` asks for.
fn organizations(csr: &Value) -> Vec<String> {
    use base64::Engine;
    let Some(pem) = csr["spec"]["request"]
        .as_str()
        .and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok())
    else {
        return Vec::new();
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return Vec::new();
    };
    use x509_parser::prelude::FromDer;
    let Ok((_, req)) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
    else {
        return Vec::new();
    };
    req.certification_request_info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect()
}

/// As kube-apiserver's strategy for CertificateSigningRequests: a new request records who
/// made it (`spec.username`, `uid`, `groups`, replacing whatever the client sent), which the
/// approvers trust; no update changes the spec.
pub fn prepare(w: &Write<'_>, csr: &mut Value) {
    let Some(spec) = csr.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match (w.operation, w.old) {
        (Operation::Create, _) => {
            spec.insert("username".into(), Value::from(w.user.name.as_str()));
            spec.insert("groups".into(), Value::from(w.user.groups.clone()));
            spec.remove("extra");
            spec.remove("uid");
            if !w.user.uid.is_empty() {
                spec.insert("uid".into(), Value::from(w.user.uid.as_str()));
            }
        }
        (Operation::Update, Some(old)) if old["spec"].is_object() => {
            *spec = old["spec"].as_object().cloned().unwrap_or_default();
        }
        _ => {}
    }
}

/// Check a write of a CertificateSigningRequest.
pub async fn check(
    on: &[&str],
    mode: Option<&Mode>,
    reg: &Registry,
    w: &Write<'_>,
    csr: &Value,
) -> Result<()> {
    let signer = csr["spec"]["signerName"].as_str().unwrap_or("");
    let forbid = |m: String| Err(ApiError::forbidden(w.info, w.name, m));
    if on.contains(&"CertificateSubjectRestriction")
        && w.operation == Operation::Create
        && signer == "kubernetes.io/kube-apiserver-client"
        && organizations(csr).iter().any(|o| o == "system:masters")
    {
        return forbid(format!(
            "use of {signer} signer with system:masters group is not allowed"
        ));
    }
    let Some(mode) = mode else {
        return Ok(());
    };
    let old = w.old.unwrap_or(&Value::Null);
    if on.contains(&"CertificateApproval")
        && w.subresource == Some("approval")
        && decided(&csr["status"]["conditions"])
        && csr["status"]["conditions"] != old["status"]["conditions"]
        && !may(mode, reg, w.user, "approve", signer).await
    {
        return forbid(format!(
            "user not permitted to approve requests with signerName {signer:?}"
        ));
    }
    let issued = csr["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty());
    if on.contains(&"CertificateSigning")
        && w.subresource == Some("status")
        && issued
        && csr["status"]["certificate"] != old["status"]["certificate"]
        && !may(mode, reg, w.user, "sign", signer).await
    {
        return forbid(format!(
            "user not permitted to sign requests with signerName {signer:?}"
        ));
    }
    Ok(())
}
