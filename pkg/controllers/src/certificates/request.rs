//! A CertificateSigningRequest's PKCS#10 request as the signers and the approver read it,
//! and the checks kube-controller-manager makes per signer (errors in its words).

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// The signers minik issues for (kube-controller-manager's csrsigning controllers).
pub const SIGNERS: &[&str] = &[
    KUBE_APISERVER_CLIENT,
    KUBELET_CLIENT,
    KUBELET_SERVING,
    LEGACY_UNKNOWN,
];

/// What a request asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The subject as it was encoded (a DER Name), copied into the certificate.
    pub subject: Vec<u8>,
    /// The public key (a DER SubjectPublicKeyInfo); the request's signature was checked.
    pub public_key: Vec<u8>,
    /// The last common name of the subject (as Go reads it).
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// Parse `spec.request` (one PEM `CERTIFICATE REQUEST`) and check its signature.
pub fn parse(pem: &[u8]) -> Result<Request, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|_| not_a_request().to_string())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(not_a_request().into());
    }
    let (_, csr) =
        X509CertificationRequest::from_der(&block.contents).map_err(|e| e.to_string())?;
    csr.verify_signature()
        .map_err(|e| format!("unable to verify certificate request signature: {e}"))?;
    let info = &csr.certification_request_info;
    let subject = &info.subject;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue| a.as_str().ok().map(str::to_string);
    let mut req = Request {
        subject: subject.as_raw().to_vec(),
        public_key: info.subject_pki.raw.to_vec(),
        common_name: subject
            .iter_common_name()
            .filter_map(text)
            .last()
            .unwrap_or_default(),
        organizations: subject.iter_organization().filter_map(text).collect(),
        ..Default::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => req.dns_names.push(d.to_string()),
                GeneralName::RFC822Name(e) => req.emails.push(e.to_string()),
                GeneralName::URI(u) => req.uris.push(u.to_string()),
                GeneralName::IPAddress(ip) => req.ip_addresses.push(ip_address(ip)?),
                _ => {}
            }
        }
    }
    Ok(req)
}

fn not_a_request() -> &'static str {
    "PEM block type must be CERTIFICATE REQUEST"
}

fn ip_address(bytes: &[u8]) -> Result<IpAddr, String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes)
        .map(IpAddr::from)
        .map_err(|_| format!("invalid IP address of {} bytes", bytes.len()))
}

fn set(usages: &[String]) -> BTreeSet<&str> {
    usages.iter().map(String::as_str).collect()
}

/// Whether the usages are exactly `with_rsa` or `with_rsa` without key encipherment.
fn check_usages(usages: &[String], with_rsa: &[&str]) -> Result<(), String> {
    let wanted: BTreeSet<&str> = with_rsa.iter().copied().collect();
    let mut no_rsa = wanted.clone();
    no_rsa.remove("key encipherment");
    let have = set(usages);
    if have == wanted || have == no_rsa {
        return Ok(());
    }
    // Go prints the sorted list as `[a b c]`.
    let list: Vec<&str> = wanted.into_iter().collect();
    Err(format!("usages did not match [{}]", list.join(" ")))
}

fn check_nodes_org(req: &Request) -> Result<(), String> {
    if req.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    Ok(())
}

fn check_node_name(req: &Request) -> Result<(), String> {
    if !req.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

fn no_emails_or_uris(req: &Request) -> Result<(), String> {
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    Ok(())
}

/// A kubelet's serving certificate request (`kubernetes.io/kubelet-serving`).
pub fn validate_kubelet_serving(req: &Request, usages: &[String]) -> Result<(), String> {
    check_nodes_org(req)?;
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    no_emails_or_uris(req)?;
    check_usages(
        usages,
        &["digital signature", "key encipherment", "server auth"],
    )?;
    check_node_name(req)
}

/// A kubelet's client certificate request (`kubernetes.io/kube-apiserver-client-kubelet`).
pub fn validate_kubelet_client(req: &Request, usages: &[String]) -> Result<(), String> {
    check_nodes_org(req)?;
    if !req.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    check_node_name(req)?;
    check_usages(
        usages,
        &["client auth", "digital signature", "key encipherment"],
    )
}

/// A client certificate request (`kubernetes.io/kube-apiserver-client`): client auth, and
/// nothing but digital signature and key encipherment besides.
pub fn validate_client_usages(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

/// The signer's checks of a request; `Err` holds the Failed condition's message. Signers
/// other than [`SIGNERS`] are not checked here.
pub fn validate(signer: &str, req: &Request, usages: &[String]) -> Result<(), String> {
    match signer {
        KUBELET_SERVING => validate_kubelet_serving(req, usages),
        KUBELET_CLIENT => validate_kubelet_client(req, usages),
        KUBE_APISERVER_CLIENT => validate_client_usages(usages),
        // No restrictions, for compatibility.
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PEM request with `cn`, `orgs` and `sans` (IPs are told apart by parsing).
    pub(crate) fn pem(cn: &str, orgs: &[&str], sans: &[&str]) -> String {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        // rcgen keeps one value per attribute type: a custom type with the same OID adds
        // a second organization.
        let o_oid = vec![2, 5, 4, 10];
        for (i, o) in orgs.iter().enumerate() {
            let ty = match i {
                0 => rcgen::DnType::OrganizationName,
                _ => rcgen::DnType::CustomDnType(o_oid.clone()),
            };
            p.distinguished_name.push(ty, *o);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn usages(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requests_are_read_and_their_signatures_checked() {
        let text = pem("alice", &["dev", "ops"], &["a.example", "10.0.0.1"]);
        let req = parse(text.as_bytes()).unwrap();
        assert_eq!(req.common_name, "alice");
        assert_eq!(req.organizations, ["dev", "ops"]);
        assert_eq!(req.dns_names, ["a.example"]);
        assert_eq!(req.ip_addresses, [IpAddr::from([10, 0, 0, 1])]);
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            parse(cert.as_bytes()).unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        // A flipped bit in the signed part breaks the signature.
        let (_, block) = x509_parser::pem::parse_x509_pem(text.as_bytes()).unwrap();
        let mut der = block.contents.clone();
        let at = der.len() / 3;
        der[at] ^= 1;
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        assert!(parse(tampered.as_bytes()).is_err());
    }

    #[test]
    fn kubelet_client_requests_are_checked_as_kube_controller_manager_does() {
        let ok = parse(pem("system:node:n1", &["system:nodes"], &[]).as_bytes()).unwrap();
        let client = usages(&["digital signature", "key encipherment", "client auth"]);
        assert!(validate(KUBELET_CLIENT, &ok, &client).is_ok());
        assert!(
            validate(
                KUBELET_CLIENT,
                &ok,
                &usages(&["client auth", "digital signature"])
            )
            .is_ok()
        );
        assert_eq!(
            validate(KUBELET_CLIENT, &ok, &usages(&["client auth"])).unwrap_err(),
            "usages did not match [client auth digital signature key encipherment]"
        );
        let wrong_org = parse(pem("system:node:n1", &["devs"], &[]).as_bytes()).unwrap();
        assert_eq!(
            validate(KUBELET_CLIENT, &wrong_org, &client).unwrap_err(),
            "subject organization is not system:nodes"
        );
        let two_orgs =
            parse(pem("system:node:n1", &["system:nodes", "x"], &[]).as_bytes()).unwrap();
        assert!(validate(KUBELET_CLIENT, &two_orgs, &client).is_err());
        let wrong_cn = parse(pem("n1", &["system:nodes"], &[]).as_bytes()).unwrap();
        assert_eq!(
            validate(KUBELET_CLIENT, &wrong_cn, &client).unwrap_err(),
            "subject common name does not begin with system:node:"
        );
        let with_dns = parse(pem("system:node:n1", &["system:nodes"], &["n1"]).as_bytes()).unwrap();
        assert_eq!(
            validate(KUBELET_CLIENT, &with_dns, &client).unwrap_err(),
            "DNS subjectAltNames are not allowed"
        );
    }

    #[test]
    fn kubelet_serving_requests_need_names_and_serving_usages() {
        let serving = usages(&["digital signature", "key encipherment", "server auth"]);
        let ok = parse(pem("system:node:n1", &["system:nodes"], &["n1", "10.0.0.2"]).as_bytes())
            .unwrap();
        assert!(validate(KUBELET_SERVING, &ok, &serving).is_ok());
        let bare = parse(pem("system:node:n1", &["system:nodes"], &[]).as_bytes()).unwrap();
        assert_eq!(
            validate(KUBELET_SERVING, &bare, &serving).unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
        assert_eq!(
            validate(
                KUBELET_SERVING,
                &ok,
                &usages(&["server auth", "client auth"])
            )
            .unwrap_err(),
            "usages did not match [digital signature key encipherment server auth]"
        );
    }

    #[test]
    fn client_requests_need_client_auth_only() {
        let req = Request::default();
        let ok = usages(&["client auth", "digital signature"]);
        assert!(validate(KUBE_APISERVER_CLIENT, &req, &ok).is_ok());
        assert_eq!(
            validate(KUBE_APISERVER_CLIENT, &req, &usages(&["digital signature"])).unwrap_err(),
            "missing required usage for client certificate: client auth"
        );
        assert_eq!(
            validate(
                KUBE_APISERVER_CLIENT,
                &req,
                &usages(&["client auth", "server auth"])
            )
            .unwrap_err(),
            "invalid usage for client certificate: server auth"
        );
        assert!(validate(LEGACY_UNKNOWN, &req, &usages(&["server auth"])).is_ok());
    }
}
