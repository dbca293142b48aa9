//! Where JWT authenticators come from: the `--oidc-*` flags (one issuer) or an
//! AuthenticationConfiguration file's `jwt` list. Mistakes are reported at start.

use std::path::Path;

use serde_json::Value;

use super::oidc::{Issuer, Mapping};

/// The `--oidc-*` flags.
#[derive(Debug, Clone, Default)]
pub struct OidcFlags {
    pub issuer_url: Option<String>,
    pub client_id: Option<String>,
    pub username_claim: String,
    /// None: kube-apiserver's default (`<issuer>#` unless the claim is `email`); "-": none.
    pub username_prefix: Option<String>,
    pub groups_claim: Option<String>,
    pub groups_prefix: String,
    pub ca_file: Option<std::path::PathBuf>,
    /// `claim=value`.
    pub required_claims: Vec<String>,
}

fn ca(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn check_url(url: &str, at: &str) -> Result<(), String> {
    if !url.starts_with("https://") {
        return Err(format!("{at}: {url:?} must be an https URL"));
    }
    Ok(())
}

/// The issuer the flags describe (None without --oidc-issuer-url).
pub fn from_flags(f: &OidcFlags) -> Result<Option<Issuer>, String> {
    let Some(url) = &f.issuer_url else {
        return Ok(None);
    };
    check_url(url, "--oidc-issuer-url")?;
    let client = f
        .client_id
        .clone()
        .ok_or("--oidc-client-id is required with --oidc-issuer-url")?;
    let prefix = match f.username_prefix.as_deref() {
        Some("-") => String::new(),
        Some(p) => p.to_string(),
        None if f.username_claim == "email" => String::new(),
        None => format!("{url}#"),
    };
    let mut required = Vec::new();
    for r in &f.required_claims {
        let (k, v) = r
            .split_once('=')
            .ok_or_else(|| format!("--oidc-required-claim {r:?} is not claim=value"))?;
        required.push((k.to_string(), v.to_string()));
    }
    Ok(Some(Issuer {
        url: url.clone(),
        audiences: vec![client],
        ca_pem: f.ca_file.as_deref().map(ca).transpose()?,
        username: Mapping {
            claim: Some(f.username_claim.clone()),
            prefix,
            expression: None,
        },
        groups: Mapping {
            claim: f.groups_claim.clone(),
            prefix: f.groups_prefix.clone(),
            expression: None,
        },
        required_claims: required,
        ..Default::default()
    }))
}

fn mapping(v: &Value, at: &str, required: bool) -> Result<Mapping, String> {
    let claim = v["claim"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let expression = v["expression"]
        .as_str()
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    match (&claim, &expression) {
        (Some(_), Some(_)) => {
            return Err(format!("{at}: claim and expression are mutually exclusive"));
        }
        (None, None) if required => return Err(format!("{at}: claim or expression is required")),
        _ => {}
    }
    if claim.is_some() && required && v.get("prefix").is_none() {
        return Err(format!(
            "{at}.prefix: Required value: prefix is required when claim is set"
        ));
    }
    if let Some(e) = &expression {
        minik_registry::cel_program(e).map_err(|err| format!("{at}.expression: {err}"))?;
    }
    Ok(Mapping {
        claim,
        prefix: v["prefix"].as_str().unwrap_or("").to_string(),
        expression,
    })
}

/// (claim or expression, required value or message) pairs.
type Rules = Vec<(String, String)>;

/// Validation rules: (required claim values, CEL expressions).
fn rules(list: &Value, at: &str) -> Result<(Rules, Rules), String> {
    let mut required = Vec::new();
    let mut exprs = Vec::new();
    for (i, r) in list.as_array().into_iter().flatten().enumerate() {
        let message = r["message"].as_str().unwrap_or("").to_string();
        match (r["claim"].as_str(), r["expression"].as_str()) {
            (Some(c), None) => required.push((
                c.to_string(),
                r["requiredValue"].as_str().unwrap_or("").to_string(),
            )),
            (None, Some(e)) => {
                minik_registry::cel_program(e)
                    .map_err(|err| format!("{at}[{i}].expression: {err}"))?;
                let message = if message.is_empty() {
                    format!("{e} failed")
                } else {
                    message
                };
                exprs.push((e.to_string(), message));
            }
            _ => return Err(format!("{at}[{i}]: one of claim or expression is required")),
        }
    }
    Ok((required, exprs))
}

/// The issuers of an AuthenticationConfiguration file.
pub fn from_file(path: &Path) -> Result<Vec<Issuer>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {shown}: {e}"))?;
    let doc: Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("{shown} is not valid YAML: {e}"))?;
    let bad = |e: String| format!("{shown}: {e}");
    if doc["kind"] != "AuthenticationConfiguration" {
        return Err(bad("kind must be AuthenticationConfiguration".into()));
    }
    let mut out = Vec::new();
    for (i, jwt) in doc["jwt"].as_array().into_iter().flatten().enumerate() {
        let at = format!("jwt[{i}]");
        let issuer = &jwt["issuer"];
        let url = issuer["url"].as_str().unwrap_or("").to_string();
        check_url(&url, &format!("{at}.issuer.url")).map_err(bad)?;
        if out.iter().any(|o: &Issuer| o.url == url) {
            return Err(bad(format!("{at}.issuer.url: Duplicate value: {url:?}")));
        }
        let audiences: Vec<String> = issuer["audiences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if audiences.is_empty() {
            return Err(bad(format!(
                "{at}.issuer.audiences: Required value: at least one audience"
            )));
        }
        let cm = &jwt["claimMappings"];
        let (required_claims, claim_rules) = rules(
            &jwt["claimValidationRules"],
            &format!("{at}.claimValidationRules"),
        )
        .map_err(bad)?;
        let (_, user_rules) = rules(
            &jwt["userValidationRules"],
            &format!("{at}.userValidationRules"),
        )
        .map_err(bad)?;
        out.push(Issuer {
            url,
            discovery_url: issuer["discoveryURL"].as_str().map(str::to_string),
            audiences,
            ca_pem: issuer["certificateAuthority"]
                .as_str()
                .map(|p| p.as_bytes().to_vec()),
            username: mapping(
                &cm["username"],
                &format!("{at}.claimMappings.username"),
                true,
            )
            .map_err(bad)?,
            groups: mapping(&cm["groups"], &format!("{at}.claimMappings.groups"), false)
                .map_err(bad)?,
            uid: mapping(&cm["uid"], &format!("{at}.claimMappings.uid"), false).map_err(bad)?,
            required_claims,
            claim_rules,
            user_rules,
        });
    }
    Ok(out)
}
