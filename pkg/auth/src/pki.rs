//! The cluster's certificates, made at first start under `<data-dir>/tls` and reused after.
//!
//! - `server-ca`: signs the API server's serving certificate.
//! - `client-ca`: signs client certificates (admin: CN=system:admin, O=system:masters).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::{Error, Result, io, write_private};

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The certificates an API server needs.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub server_ca: CertPair,
    pub client_ca: CertPair,
    pub serving: CertPair,
    pub admin: CertPair,
    /// The CA aggregated API servers trust for front-proxy (request-header) clients.
    pub request_header_ca: CertPair,
    /// The client certificate the API server proxies aggregated requests with.
    pub proxy_client: CertPair,
    /// The client certificate the API server reaches kubelets with (pods/log and the
    /// streaming subresources), as kubeadm's `apiserver-kubelet-client`.
    pub kubelet_client: CertPair,
    /// The service-account token signing key (ECDSA P-256, PKCS#8 PEM).
    pub service_key_pem: String,
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::Cert {
        what: what.into(),
        message: e.to_string(),
    }
}

fn load(dir: &Path, name: &str) -> Result<Option<CertPair>> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    if !crt.exists() || !key.exists() {
        return Ok(None);
    }
    Ok(Some(CertPair {
        cert_pem: std::fs::read_to_string(&crt)
            .map_err(io(format!("reading {}", crt.display())))?,
        key_pem: std::fs::read_to_string(&key).map_err(io(format!("reading {}", key.display())))?,
    }))
}

fn save(dir: &Path, name: &str, pair: &CertPair) -> Result<()> {
    write_private(&dir.join(format!("{name}.crt")), pair.cert_pem.as_bytes())?;
    write_private(&dir.join(format!("{name}.key")), pair.key_pem.as_bytes())
}

fn params(cn: &str, org: Option<&str>, days: i64) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err(cn))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    p.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(days);
    Ok(p)
}

fn new_ca(cn: &str) -> Result<CertPair> {
    let key = KeyPair::generate().map_err(cert_err(cn))?;
    let mut p = params(cn, None, 3650)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).map_err(cert_err(cn))?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn sign(ca: &CertPair, mut p: CertificateParams, what: &str) -> Result<CertPair> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(cert_err(what))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(cert_err(what))?;
    let key = KeyPair::generate().map_err(cert_err(what))?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = p.signed_by(&key, &issuer).map_err(cert_err(what))?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn load_or(dir: &Path, name: &str, make: impl FnOnce() -> Result<CertPair>) -> Result<CertPair> {
    load_or_renew(dir, name, &[], false, make)
}

/// A certificate from `dir`, or a new one; a leaf is issued again when it is near its end
/// or lacks one of `names`.
fn load_or_renew(
    dir: &Path,
    name: &str,
    names: &[String],
    leaf: bool,
    make: impl FnOnce() -> Result<CertPair>,
) -> Result<CertPair> {
    let existing = load(dir, name)?;
    if let Some(p) = &existing
        && !(leaf && crate::certs::stale(name, &p.cert_pem, names))
    {
        return Ok(p.clone());
    }
    let p = make()?;
    save(dir, name, &p)?;
    if existing.is_some() {
        tracing::info!(name, "renewed certificate");
    } else {
        tracing::info!(name, "created certificate");
    }
    Ok(p)
}

/// The names the serving certificate covers, beyond the ones given.
fn default_sans(extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.43.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in extra {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    sans
}

impl Pki {
    /// Load the certificates under `dir`, making any that are missing.
    pub fn load_or_create(dir: &Path, extra_sans: &[String]) -> Result<Pki> {
        minik_store::private_dir(dir).map_err(|e| Error::Io {
            context: format!("creating {}", dir.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let server_ca = load_or(dir, "server-ca", || new_ca("minik-server-ca"))?;
        let client_ca = load_or(dir, "client-ca", || new_ca("minik-client-ca"))?;
        let sans = default_sans(extra_sans);
        let serving = load_or_renew(dir, "serving-kube-apiserver", &sans, true, || {
            let mut p = params("kube-apiserver", None, 365)?;
            p.subject_alt_names = sans
                .clone()
                .into_iter()
                .map(|s| match s.parse() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => s.try_into().map(SanType::DnsName),
                })
                .collect::<Result<_, _>>()
                .map_err(cert_err("serving"))?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            sign(&server_ca, p, "serving")
        })?;
        let admin = load_or_renew(dir, "client-admin", &[], true, || {
            let mut p = params("system:admin", Some("system:masters"), 365)?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            sign(&client_ca, p, "admin")
        })?;
        let request_header_ca = load_or(dir, "request-header-ca", || {
            new_ca("minik-request-header-ca")
        })?;
        let proxy_client = load_or_renew(dir, "client-auth-proxy", &[], true, || {
            let mut p = params("system:auth-proxy", None, 365)?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            sign(&request_header_ca, p, "auth-proxy")
        })?;
        let kubelet_client =
            load_or_renew(dir, "client-kube-apiserver-kubelet", &[], true, || {
                let mut p = params("kube-apiserver-kubelet-client", Some("system:masters"), 365)?;
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                sign(&client_ca, p, "kube-apiserver-kubelet-client")
            })?;
        let service_key_pem = match std::fs::read_to_string(dir.join("service.key")) {
            Ok(pem) => pem,
            Err(_) => {
                let key = KeyPair::generate().map_err(cert_err("service account key"))?;
                let pem = key.serialize_pem();
                write_private(&dir.join("service.key"), pem.as_bytes())?;
                tracing::info!("created the service-account signing key");
                pem
            }
        };
        Ok(Pki {
            service_key_pem,
            dir: dir.to_path_buf(),
            server_ca,
            client_ca,
            serving,
            admin,
            request_header_ca,
            proxy_client,
            kubelet_client,
        })
    }
}

/// The kubelet's serving certificate for node `node` (`serving-kubelet.crt` and `.key` under
/// `dir`, as k3s keeps them in its agent dir), signed by the server CA `ca`, for `names`
/// (the node's name, host name and addresses); reused until it nears its end or lacks a name.
pub fn kubelet_serving(
    dir: &Path,
    ca: &CertPair,
    node: &str,
    names: &[String],
) -> Result<CertPair> {
    minik_store::private_dir(dir).map_err(|e| Error::Io {
        context: format!("creating {}", dir.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    load_or_renew(dir, "serving-kubelet", names, true, || {
        let mut p = params(node, None, 365)?;
        p.subject_alt_names = names
            .iter()
            .map(|s| match s.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(cert_err("serving-kubelet"))?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sign(ca, p, "serving-kubelet")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let a = Pki::load_or_create(&tls, &["minik.example".into()]).unwrap();
        let b = Pki::load_or_create(&tls, &[]).unwrap();
        assert_eq!(a.serving.cert_pem, b.serving.cert_pem);
        assert_eq!(a.server_ca.key_pem, b.server_ca.key_pem);
        assert!(a.admin.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls.join("server-ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
