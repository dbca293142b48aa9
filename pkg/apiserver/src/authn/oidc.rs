//! JWT authenticators for external OIDC issuers: the `--oidc-*` flags or the `jwt` entries of
//! an AuthenticationConfiguration (`--authentication-config`). The issuer's discovery
//! document gives its JWKS (RS256 and ES256 keys, fetched again when a token names an
//! unknown key); a token must come from the issuer, for one of the audiences, unexpired, and
//! pass the claim validation rules; the user comes from the claim mappings (a claim with a
//! prefix, or a CEL expression over `claims`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature;
use serde_json::{Value, json};

use super::{Unauthenticated, UserInfo};
use crate::webhook::WebhookClient;

/// How one claim (or expression) becomes part of the user.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub claim: Option<String>,
    pub prefix: String,
    pub expression: Option<String>,
}

/// One issuer's settings.
#[derive(Debug, Clone, Default)]
pub struct Issuer {
    pub url: String,
    /// Where the discovery document is (default: the issuer's well-known URL).
    pub discovery_url: Option<String>,
    pub audiences: Vec<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub username: Mapping,
    pub groups: Mapping,
    pub uid: Mapping,
    /// (claim, required value) pairs.
    pub required_claims: Vec<(String, String)>,
    /// (CEL expression over `claims`, message).
    pub claim_rules: Vec<(String, String)>,
    /// (CEL expression over `user`, message).
    pub user_rules: Vec<(String, String)>,
}

pub struct JwtAuthenticator {
    issuer: Issuer,
    keys: Mutex<(Option<Instant>, Vec<Value>)>,
}

fn eval(source: &str, name: &str, value: &Value) -> Result<cel::Value, String> {
    let program = minik_registry::cel_program(source)?;
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value(name, cel::to_value(value).map_err(|e| e.to_string())?);
    program.execute(&ctx).map_err(|e| e.to_string())
}

fn cel_string(v: cel::Value) -> Option<String> {
    match v {
        cel::Value::String(s) => Some(s.to_string()),
        _ => None,
    }
}

fn cel_strings(v: cel::Value) -> Vec<String> {
    match v {
        cel::Value::String(s) => vec![s.to_string()],
        cel::Value::List(l) => l.iter().filter_map(|x| cel_string(x.clone())).collect(),
        _ => Vec::new(),
    }
}

/// The values a mapping gives from the claims.
fn map(m: &Mapping, claims: &Value) -> Result<Vec<String>, String> {
    if let Some(e) = &m.expression {
        return Ok(cel_strings(eval(e, "claims", claims)?));
    }
    let Some(claim) = &m.claim else {
        return Ok(Vec::new());
    };
    let raw: Vec<String> = match &claims[claim.as_str()] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    Ok(raw
        .into_iter()
        .map(|v| format!("{}{v}", m.prefix))
        .collect())
}

/// Verify `input` signed as `sig` by the JWK `key` with algorithm `alg`.
fn verify(alg: &str, key: &Value, input: &[u8], sig: &[u8]) -> bool {
    let part = |k: &str| key[k].as_str().and_then(|v| B64.decode(v).ok());
    match alg {
        "RS256" => match (part("n"), part("e")) {
            (Some(n), Some(e)) => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
                .is_ok(),
            _ => false,
        },
        "ES256" => match (part("x"), part("y")) {
            (Some(x), Some(y)) => {
                let point = [&[4u8][..], &x, &y].concat();
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(input, sig)
                    .is_ok()
            }
            _ => false,
        },
        _ => false,
    }
}

impl JwtAuthenticator {
    pub fn new(issuer: Issuer) -> Self {
        JwtAuthenticator {
            issuer,
            keys: Mutex::new((None, Vec::new())),
        }
    }

    /// The `iss` claim of a token, unverified (to pick the authenticator).
    pub fn issuer_of(token: &str) -> Option<String> {
        let payload = token.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        claims["iss"].as_str().map(str::to_string)
    }

    pub fn issuer_url(&self) -> &str {
        &self.issuer.url
    }

    /// Fetch the issuer's keys (at most every 10 s).
    async fn refresh(&self) -> Result<(), String> {
        {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            if keys
                .0
                .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
            {
                return Ok(());
            }
        }
        let i = &self.issuer;
        let discovery = i.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                i.url.trim_end_matches('/')
            )
        });
        let doc = WebhookClient::for_url(&discovery, i.ca_pem.clone())?
            .get()
            .await?;
        if i.discovery_url.is_none() && doc["issuer"] != i.url.as_str() {
            return Err(format!(
                "the discovery document names issuer {}, not {}",
                doc["issuer"], i.url
            ));
        }
        let jwks_uri = doc["jwks_uri"]
            .as_str()
            .ok_or("the discovery document has no jwks_uri")?;
        let jwks = WebhookClient::for_url(jwks_uri, i.ca_pem.clone())?
            .get()
            .await?;
        let found = jwks["keys"].as_array().cloned().unwrap_or_default();
        *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = (Some(Instant::now()), found);
        Ok(())
    }

    fn signed_by_known_key(&self, alg: &str, kid: Option<&str>, input: &[u8], sig: &[u8]) -> bool {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.1
            .iter()
            .filter(|k| kid.is_none_or(|kid| k["kid"] == kid))
            .any(|k| verify(alg, k, input, sig))
    }

    /// The user of a token from this issuer.
    pub async fn authenticate(&self, token: &str) -> Result<UserInfo, Unauthenticated> {
        let bad = Unauthenticated("the OIDC token does not verify");
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad);
        };
        let header: Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Unauthenticated("the OIDC token does not verify"))?;
        let claims: Value = B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Unauthenticated("the OIDC token does not verify"))?;
        let sig = B64
            .decode(s)
            .map_err(|_| Unauthenticated("the OIDC token does not verify"))?;
        let alg = header["alg"].as_str().unwrap_or("");
        let kid = header["kid"].as_str();
        let input = format!("{h}.{p}");
        if !self.signed_by_known_key(alg, kid, input.as_bytes(), &sig) {
            if let Err(e) = self.refresh().await {
                tracing::warn!(issuer = %self.issuer.url, error = %e, "fetching the OIDC issuer's keys");
            }
            if !self.signed_by_known_key(alg, kid, input.as_bytes(), &sig) {
                return Err(bad);
            }
        }
        self.user(&claims).map_err(|why| {
            tracing::debug!(issuer = %self.issuer.url, %why, "OIDC token refused");
            Unauthenticated("the OIDC token's claims are not accepted")
        })
    }

    /// Check the claims and map them to a user.
    fn user(&self, claims: &Value) -> Result<UserInfo, String> {
        let i = &self.issuer;
        if claims["iss"] != i.url.as_str() {
            return Err("wrong issuer".into());
        }
        let auds: Vec<&str> = match &claims["aud"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !i.audiences.iter().any(|a| auds.contains(&a.as_str())) {
            return Err("no accepted audience".into());
        }
        let now = chrono::Utc::now().timestamp();
        match claims["exp"].as_i64() {
            Some(exp) if exp > now => {}
            _ => return Err("expired or no exp".into()),
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now + 60) {
            return Err("not yet valid".into());
        }
        for (claim, want) in &i.required_claims {
            if claims[claim.as_str()] != want.as_str() {
                return Err(format!("claim {claim} is not {want}"));
            }
        }
        for (rule, message) in &i.claim_rules {
            if !matches!(eval(rule, "claims", claims)?, cel::Value::Bool(true)) {
                return Err(message.clone());
            }
        }
        if i.username.claim.as_deref() == Some("email") && claims["email_verified"] == false {
            return Err("email_verified is false".into());
        }
        let name = map(&i.username, claims)?
            .into_iter()
            .next()
            .filter(|n| !n.is_empty())
            .ok_or("no username claim")?;
        let user = UserInfo {
            name,
            uid: map(&i.uid, claims)?.into_iter().next().unwrap_or_default(),
            groups: map(&i.groups, claims)?,
        };
        let shown = json!({"username": user.name, "uid": user.uid, "groups": user.groups});
        for (rule, message) in &i.user_rules {
            if !matches!(eval(rule, "user", &shown)?, cel::Value::Bool(true)) {
                return Err(message.clone());
            }
        }
        Ok(user.authenticated())
    }
}
