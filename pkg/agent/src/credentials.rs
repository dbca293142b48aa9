//! The agent's credentials, as a kubelet bootstraps them: with the join token it asks for
//! a client certificate (`kubernetes.io/kube-apiserver-client-kubelet`, approved at once
//! for bootstrappers), then, as the node, for a serving certificate
//! (`kubernetes.io/kubelet-serving`). Both are kept under `<data-dir>/agent/` and reused
//! after a restart while they are valid, name this node and (the serving one) its address.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use minik_auth::CertPair;
use minik_controllers::certificates::request::{KUBELET_CLIENT, KUBELET_SERVING};

use crate::Error;

/// How long a certificate request may wait for its certificate.
const CSR_WAIT: Duration = Duration::from_secs(120);

/// How the agent authenticates.
pub enum Auth<'a> {
    /// The join token's credential (a bootstrapper).
    Token(&'a str),
    /// The node's client certificate.
    Cert(&'a CertPair),
}

/// The kubeconfig (YAML-compatible JSON) for `server`, trusting `ca_pem`, as `auth`.
pub fn kubeconfig(server: &str, ca_pem: &str, auth: &Auth<'_>) -> serde_json::Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match auth {
        Auth::Token(t) => serde_json::json!({"token": t}),
        Auth::Cert(pair) => serde_json::json!({"client-certificate-data": b64(&pair.cert_pem),
            "client-key-data": b64(&pair.key_pem)}),
    };
    serde_json::json!({"apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "minik", "cluster": {"server": server,
            "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "kubelet", "user": user}],
        "contexts": [{"name": "minik", "context": {"cluster": "minik", "user": "kubelet"}}],
        "current-context": "minik"})
}

/// A client for `server` trusting `ca_pem`, authenticated by `auth`.
pub async fn client(server: &str, ca_pem: &str, auth: &Auth<'_>) -> Result<kube::Client, Error> {
    let config = serde_json::from_value(kubeconfig(server, ca_pem, auth))
        .map_err(|e| Error::Config(e.to_string()))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
}

/// The certificate in `dir/<name>.crt` and `.key`, if both are there.
fn load(dir: &Path, name: &str) -> Option<CertPair> {
    Some(CertPair {
        cert_pem: std::fs::read_to_string(dir.join(format!("{name}.crt"))).ok()?,
        key_pem: std::fs::read_to_string(dir.join(format!("{name}.key"))).ok()?,
    })
}

fn save(dir: &Path, name: &str, pair: &CertPair) -> Result<(), Error> {
    minik_auth::write_mode(
        &dir.join(format!("{name}.key")),
        pair.key_pem.as_bytes(),
        0o600,
    )?;
    minik_auth::write_mode(
        &dir.join(format!("{name}.crt")),
        pair.cert_pem.as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// Whether `cert_pem` names `cn`, is valid for at least another day, and lists every
/// address of `ips` among its names.
pub fn usable(cert_pem: &str, cn: &str, ips: &[IpAddr]) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let named = cert
        .subject()
        .iter_common_name()
        .any(|c| c.as_str().ok() == Some(cn));
    let day_later = x509_parser::time::ASN1Time::from_timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64 + 86_400),
    );
    let fresh = day_later.is_ok_and(|t| cert.validity().not_after > t);
    let listed: Vec<Vec<u8>> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::IPAddress(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let has_ips = ips.iter().all(|ip| {
        let bytes = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        listed.contains(&bytes)
    });
    named && fresh && has_ips
}

/// Ask for a certificate of `signer` for the node `node`, with `sans`, and wait for it.
async fn request(
    client: &kube::Client,
    signer: &str,
    node: &str,
    sans: Vec<String>,
    usages: &[&str],
) -> Result<CertPair, Error> {
    let csr_err = |e: rcgen::Error| Error::Csr(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(csr_err)?;
    let mut params = rcgen::CertificateParams::new(sans).map_err(csr_err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let cn = format!("system:node:{node}");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn.as_str());
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let pem = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(csr_err)?;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.into_bytes()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(Error::from_api)?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = name, signer, "asked for a certificate");
    let deadline = tokio::time::Instant::now() + CSR_WAIT;
    loop {
        let csr = api.get(&name).await.map_err(Error::from_api)?;
        if let Some(cert) = csr.status.as_ref().and_then(|s| s.certificate.as_ref())
            && !cert.0.is_empty()
        {
            return Ok(CertPair {
                cert_pem: String::from_utf8_lossy(&cert.0).into_owned(),
                key_pem: key.serialize_pem(),
            });
        }
        let refused = csr
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True");
        if let Some(c) = refused {
            return Err(Error::Csr(format!(
                "certificate request {name} was {}: {}",
                c.type_.to_lowercase(),
                c.message.clone().unwrap_or_default()
            )));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Csr(format!(
                "certificate request {name} was not approved and signed within {}s \
                 (is the server's controller manager running?)",
                CSR_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The node's client certificate: the kept one while usable, else a new one asked for
/// with `bootstrap`.
pub async fn client_certificate(
    dir: &Path,
    node: &str,
    bootstrap: impl AsyncFnOnce() -> Result<kube::Client, Error>,
) -> Result<CertPair, Error> {
    let cn = format!("system:node:{node}");
    if let Some(pair) = load(dir, CLIENT).filter(|p| usable(&p.cert_pem, &cn, &[])) {
        return Ok(pair);
    }
    renew_client(dir, &bootstrap().await?, node).await
}

/// Where the client certificate is kept (`<name>.crt`, `<name>.key`).
pub const CLIENT: &str = "client-kubelet";
/// Where the serving certificate is kept.
pub const SERVING: &str = "serving-kubelet";

/// A new client certificate for `node`, asked for with `client` (the bootstrapper's, or
/// the node's own when renewing), kept in `dir`.
pub async fn renew_client(
    dir: &Path,
    client: &kube::Client,
    node: &str,
) -> Result<CertPair, Error> {
    let usages = ["digital signature", "client auth"];
    let pair = request(client, KUBELET_CLIENT, node, Vec::new(), &usages).await?;
    save(dir, CLIENT, &pair)?;
    tracing::info!(node, "got the kubelet client certificate");
    Ok(pair)
}

/// The kubelet server's certificate for `node` at `ip`: the kept one while usable, else a
/// new one asked for by the node.
pub async fn serving_certificate(
    dir: &Path,
    client: &kube::Client,
    node: &str,
    ip: IpAddr,
) -> Result<CertPair, Error> {
    let cn = format!("system:node:{node}");
    if let Some(pair) = load(dir, SERVING).filter(|p| usable(&p.cert_pem, &cn, &[ip])) {
        return Ok(pair);
    }
    renew_serving(dir, client, node, ip).await
}

/// A new serving certificate for `node` at `ip`, asked for by the node, kept in `dir`.
pub async fn renew_serving(
    dir: &Path,
    client: &kube::Client,
    node: &str,
    ip: IpAddr,
) -> Result<CertPair, Error> {
    let mut sans = vec![node.to_string()];
    if let Ok(host) = minik_kubelet::machine::hostname()
        && host != node
    {
        sans.push(host);
    }
    sans.push(ip.to_string());
    let usages = ["digital signature", "server auth"];
    let pair = request(client, KUBELET_SERVING, node, sans, &usages).await?;
    save(dir, SERVING, &pair)?;
    tracing::info!(node, "got the kubelet serving certificate");
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str], days: i64) -> String {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn kept_certificates_are_reused_only_when_they_fit() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let good = cert("system:node:n1", &["n1", "10.1.2.3"], 300);
        assert!(usable(&good, "system:node:n1", &[ip]));
        assert!(usable(&good, "system:node:n1", &[]));
        assert!(!usable(&good, "system:node:n2", &[ip]));
        assert!(!usable(
            &good,
            "system:node:n1",
            &["10.9.9.9".parse().unwrap()]
        ));
        let expiring = cert("system:node:n1", &["n1"], 0);
        assert!(!usable(&expiring, "system:node:n1", &[]));
        assert!(!usable("not a certificate", "system:node:n1", &[]));
    }

    #[test]
    fn kubeconfigs_carry_the_ca_and_the_credential() {
        let k = kubeconfig("https://10.0.0.1:6443", "CA", &Auth::Token("abc"));
        assert_eq!(k["users"][0]["user"]["token"], "abc");
        assert_eq!(
            k["clusters"][0]["cluster"]["server"],
            "https://10.0.0.1:6443"
        );
        let pair = CertPair {
            cert_pem: "C".into(),
            key_pem: "K".into(),
        };
        let k = kubeconfig("https://h", "CA", &Auth::Cert(&pair));
        assert_eq!(k["users"][0]["user"]["client-key-data"], "Sw==");
    }
}
