//! What the certificates under `<data-dir>/tls` say (subject, names, expiry), and rotation
//! of the leaf certificates: renewed at start within 90 days of expiry, or on demand with
//! `minik certificate rotate` (the CAs stay, so clients keep trusting the server).

use std::path::Path;

use crate::{Error, Result, io};

/// Leaf certificates are renewed this long before they expire.
pub const RENEW_BEFORE_DAYS: i64 = 90;

/// The leaf certificates minik issues (the rest are CAs).
pub const LEAVES: &[&str] = &[
    "serving-kube-apiserver",
    "client-admin",
    "client-auth-proxy",
];

/// One certificate's particulars.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub name: String,
    pub subject: String,
    pub issuer: String,
    /// RFC 3339.
    pub not_after: String,
    pub days_left: i64,
    /// DNS names and IP addresses it is valid for.
    pub names: Vec<String>,
}

/// Read a PEM certificate.
pub fn inspect(name: &str, pem: &str) -> Result<CertInfo> {
    let bad = |m: String| Error::Cert {
        what: name.into(),
        message: m,
    };
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let cert = p.parse_x509().map_err(|e| bad(e.to_string()))?;
    let not_after = cert.validity().not_after.timestamp();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let addr = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.extend(addr.map(|a| a.to_string()));
                }
                _ => {}
            }
        }
    }
    let when = time::OffsetDateTime::from_unix_timestamp(not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Ok(CertInfo {
        name: name.into(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: when,
        days_left: (not_after - now).div_euclid(86_400),
        names,
    })
}

/// Every certificate in `dir`, by file name.
pub fn check(dir: &Path) -> Result<Vec<CertInfo>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    for f in files {
        let pem = std::fs::read_to_string(&f).map_err(io(format!("reading {}", f.display())))?;
        let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        out.push(inspect(name, &pem)?);
    }
    Ok(out)
}

/// Whether a leaf certificate must be issued again: near its end, or missing names it must
/// have.
pub(crate) fn stale(name: &str, pem: &str, wanted_names: &[String]) -> bool {
    match inspect(name, pem) {
        Ok(info) => {
            info.days_left < RENEW_BEFORE_DAYS
                || wanted_names.iter().any(|n| !info.names.contains(n))
        }
        Err(_) => true,
    }
}

/// Move the leaf certificates `names` (all leaves when empty) aside into
/// `dir/backup-<timestamp>/`, so the next `Pki::load_or_create` issues new ones. Returns the
/// backup directory. The serving certificate's names are kept for the new one.
pub fn retire(dir: &Path, names: &[String]) -> Result<(std::path::PathBuf, Vec<String>)> {
    for n in names {
        if !LEAVES.contains(&n.as_str()) {
            return Err(Error::Cert {
                what: n.clone(),
                message: format!(
                    "not a leaf certificate minik rotates (those are {})",
                    LEAVES.join(", ")
                ),
            });
        }
    }
    let chosen: Vec<&str> = if names.is_empty() {
        LEAVES.to_vec()
    } else {
        names.iter().map(String::as_str).collect()
    };
    let serving = dir.join("serving-kube-apiserver.crt");
    let sans = match std::fs::read_to_string(&serving) {
        Ok(pem) => inspect("serving-kube-apiserver", &pem)?.names,
        Err(_) => Vec::new(),
    };
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let backup = dir.join(format!("backup-{stamp}"));
    std::fs::create_dir_all(&backup).map_err(io(format!("creating {}", backup.display())))?;
    for name in chosen {
        for ext in ["crt", "key"] {
            let from = dir.join(format!("{name}.{ext}"));
            if from.exists() {
                let to = backup.join(format!("{name}.{ext}"));
                std::fs::rename(&from, &to).map_err(io(format!("moving {}", from.display())))?;
            }
        }
    }
    Ok((backup, sans))
}
