//! Issuing a certificate for a request, by kube-controller-manager's local signing policy:
//! the request's subject, names and public key; the usages the CSR lists; basic constraints
//! CA:false; valid from 5 minutes ago for the requested duration (at least 10 minutes, at
//! most the signer's, never past the CA's own expiry).

use std::time::Duration;

use base64::Engine;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SigningKey,
};
use time::OffsetDateTime;

use super::request::Request;

/// kube-controller-manager's `--cluster-signing-duration` default.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Certificates shorter than this are not backdated by their length.
const SHORT: Duration = Duration::from_secs(8 * 3600);
/// The least a request may ask for (twice the backdate).
const MIN_DURATION: Duration = Duration::from_secs(10 * 60);

/// How long a certificate is issued for: `spec.expirationSeconds` within [10 min, `max`].
pub fn duration(expiration_seconds: Option<i32>, max: Duration) -> Duration {
    let Some(secs) = expiration_seconds else {
        return max;
    };
    let wanted = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    wanted.clamp(MIN_DURATION, max.max(MIN_DURATION))
}

/// (notBefore, notAfter) of a certificate issued at `now` for `ttl` by a CA valid until
/// `ca_not_after`.
pub fn validity(
    now: OffsetDateTime,
    ttl: Duration,
    ca_not_after: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), String> {
    let not_before = now - BACKDATE;
    let mut not_after = if ttl < SHORT {
        now + ttl
    } else {
        not_before + ttl
    };
    if not_after >= ca_not_after {
        not_after = ca_not_after;
    }
    if not_before >= ca_not_after {
        return Err(format!("the signer has expired: NotAfter={ca_not_after}"));
    }
    if now >= ca_not_after {
        return Err(format!(
            "refusing to sign a certificate that expired in the past: NotAfter={ca_not_after}"
        ));
    }
    Ok((not_before, not_after))
}

/// The key usage bits and extended key usages (in Go's order) of `usages`.
pub fn key_usages(
    usages: &[String],
) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), String> {
    use ExtendedKeyUsagePurpose as E;
    use KeyUsagePurpose as K;
    let mut bits = Vec::new();
    // Sorted by Go's x509.ExtKeyUsage number.
    let mut ext: Vec<(u8, E)> = Vec::new();
    let mut unknown = Vec::new();
    for u in usages {
        let bit = match u.as_str() {
            "signing" | "digital signature" => Some(K::DigitalSignature),
            "content commitment" => Some(K::ContentCommitment),
            "key encipherment" => Some(K::KeyEncipherment),
            "key agreement" => Some(K::KeyAgreement),
            "data encipherment" => Some(K::DataEncipherment),
            "cert sign" => Some(K::KeyCertSign),
            "crl sign" => Some(K::CrlSign),
            "encipher only" => Some(K::EncipherOnly),
            "decipher only" => Some(K::DecipherOnly),
            _ => None,
        };
        if let Some(b) = bit {
            if !bits.contains(&b) {
                bits.push(b);
            }
            continue;
        }
        let e = match u.as_str() {
            "any" => (0, E::Any),
            "server auth" => (1, E::ServerAuth),
            "client auth" => (2, E::ClientAuth),
            "code signing" => (3, E::CodeSigning),
            "email protection" | "s/mime" => (4, E::EmailProtection),
            "ipsec end system" => (5, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5])),
            "ipsec tunnel" => (6, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])),
            "ipsec user" => (7, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7])),
            "timestamping" => (8, E::TimeStamping),
            "ocsp signing" => (9, E::OcspSigning),
            "microsoft sgc" => (10, E::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3])),
            "netscape sgc" => (11, E::Other(vec![2, 16, 840, 1, 113730, 4, 1])),
            other => {
                unknown.push(format!("{other:?}"));
                continue;
            }
        };
        if !ext.iter().any(|(n, _)| *n == e.0) {
            ext.push(e);
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "unrecognized usage values: [{}]",
            unknown.join(" ")
        ));
    }
    ext.sort_by_key(|(n, _)| *n);
    Ok((bits, ext.into_iter().map(|(_, e)| e).collect()))
}

/// A CA that issues certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's subject (DER), the issuer of what it signs.
    name: Vec<u8>,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A CA from its certificate and key (PEM).
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Authority, String> {
        let (_, block) =
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        let cert = block.parse_x509().map_err(|e| e.to_string())?;
        let name = cert.subject().as_raw().to_vec();
        let not_after = cert.validity().not_after.to_datetime();
        let key = KeyPair::from_pem(key_pem).map_err(|e| e.to_string())?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| e.to_string())?;
        Ok(Authority {
            issuer,
            name,
            not_after,
        })
    }

    /// A certificate (PEM) for `req` with `usages`, valid for `ttl` from `now`.
    pub fn issue(
        &self,
        req: &Request,
        usages: &[String],
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<String, String> {
        let public_key =
            rcgen::SubjectPublicKeyInfo::from_der(&req.public_key).map_err(|e| e.to_string())?;
        let mut p = CertificateParams::default();
        (p.not_before, p.not_after) = validity(now, ttl, self.not_after)?;
        (p.key_usages, p.extended_key_usages) = key_usages(usages)?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        let mut serial: [u8; 16] = rand::random();
        serial[0] = (serial[0] & 0x7f) | 0x01;
        p.serial_number = Some(serial.to_vec().into());
        p.subject_alt_names = sans(req)?;
        // The subject is the request's own, put in below as it was encoded (rcgen keeps one
        // value per attribute type, and a client's groups are several organizations). A
        // stand-in now keeps the names extension non-critical unless the subject is empty.
        let empty_subject = req.subject.len() <= 2;
        if !empty_subject {
            p.distinguished_name.push(DnType::CommonName, "-");
        }
        let cert = p
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let der = with_names(cert.der(), &self.name, &req.subject, self.issuer.key())?;
        Ok(pem("CERTIFICATE", &der))
    }
}

fn sans(req: &Request) -> Result<Vec<SanType>, String> {
    let ia5 = |s: &String| {
        s.clone()
            .try_into()
            .map_err(|e: rcgen::Error| e.to_string())
    };
    let mut out = Vec::new();
    for d in &req.dns_names {
        out.push(SanType::DnsName(ia5(d)?));
    }
    for e in &req.emails {
        out.push(SanType::Rfc822Name(ia5(e)?));
    }
    for ip in &req.ip_addresses {
        out.push(SanType::IpAddress(*ip));
    }
    for u in &req.uris {
        out.push(SanType::URI(ia5(u)?));
    }
    Ok(out)
}

/// (header length, element length) of the DER element at the start of `der`.
fn element(der: &[u8]) -> Option<(usize, usize)> {
    let first = usize::from(*der.get(1)?);
    let (header, len) = if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = der
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (2 + n, len)
    };
    let total = header.checked_add(len)?;
    (total <= der.len()).then_some((header, total))
}

/// A DER element of `tag` holding `content`.
fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if content.len() < 0x80 {
        out.push(content.len() as u8);
    } else {
        let bytes = content.len().to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The certificate `cert` (DER) with issuer and subject replaced, signed again by `key`.
fn with_names(
    cert: &[u8],
    issuer: &[u8],
    subject: &[u8],
    key: &KeyPair,
) -> Result<Vec<u8>, String> {
    let bad = || "unexpected certificate encoding".to_string();
    let (header, total) = element(cert).ok_or_else(bad)?;
    let body = &cert[header..total];
    let (tbs_header, tbs_total) = element(body).ok_or_else(bad)?;
    let (_, alg_total) = element(&body[tbs_total..]).ok_or_else(bad)?;
    let algorithm = &body[tbs_total..tbs_total + alg_total];
    let tbs = &body[tbs_header..tbs_total];
    let mut fields = Vec::new();
    let mut at = 0;
    while at < tbs.len() {
        let (_, len) = element(&tbs[at..]).ok_or_else(bad)?;
        fields.push(&tbs[at..at + len]);
        at += len;
    }
    // version [0], serialNumber, signature, issuer, validity, subject, ...
    if fields.len() < 7 || fields[0].first() != Some(&0xa0) {
        return Err(bad());
    }
    fields[3] = issuer;
    fields[5] = subject;
    let tbs = wrap(0x30, &fields.concat());
    let signature = key.sign(&tbs).map_err(|e| e.to_string())?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&signature);
    Ok(wrap(
        0x30,
        &[tbs, algorithm.to_vec(), wrap(0x03, &bits)].concat(),
    ))
}

/// PEM of one DER block.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
