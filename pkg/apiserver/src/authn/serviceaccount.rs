//! Service-account tokens: ES256 JWTs signed with the server's key, issued by the
//! serviceaccounts/token subresource (TokenRequest) with an audience, an expiry and
//! optionally a bound pod or secret, and accepted only while the service account (and the
//! bound object) still exist with the same uid. The issuer's OIDC discovery document and
//! JWKS are served for other verifiers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::UserInfo;

/// The issuer of service-account tokens (kube-apiserver's default).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The issuer of legacy tokens kept in secrets of type kubernetes.io/service-account-token.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// Signs and verifies tokens.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish()
    }
}

impl TokenSigner {
    /// From a PKCS#8 PEM P-256 key.
    pub fn from_pem(pem: &str) -> Result<TokenSigner, String> {
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .map_err(|e| e.to_string())?
            .ok_or("no key in the service-account key file")?;
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_der(),
            &rng,
        )
        .map_err(|e| format!("the service-account key is not an ECDSA P-256 key: {e}"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let kid = B64.encode(&digest.as_ref()[..16]);
        Ok(TokenSigner { key, kid })
    }

    /// A signed JWT of `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = self
            .key
            .sign(&rng, input.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }

    /// The claims of a token this signer signed, if it did and it has not expired.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let (input, sig) = token.rsplit_once('.')?;
        let (_, payload) = input.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        )
        .verify(input.as_bytes(), &sig)
        .ok()?;
        let claims: Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        let now = chrono::Utc::now().timestamp();
        let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
        let live = match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) => now < exp,
            // Only legacy tokens never expire.
            None => claims["iss"] == LEGACY_ISSUER,
        };
        (live && now >= nbf - 60).then_some(claims)
    }

    /// The JWKS document of the signing key.
    pub fn jwks(&self) -> Value {
        // An uncompressed point: 0x04 || x || y.
        let point = self.key.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
            "kid": self.kid, "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}]})
    }
}

/// The user a verified token names, and what must still exist for it to stand:
/// (namespace, service account name, its uid, bound (kind, name, uid)).
pub struct TokenSubject {
    pub user: UserInfo,
    pub namespace: String,
    pub service_account: (String, String),
    pub bound: Option<(String, String, String)>,
    /// A legacy secret token: valid only while its secret holds it.
    pub legacy: bool,
}

/// The claims of a legacy token for `secret` of service account `sa` (`sa_uid`) in `ns`.
pub fn legacy_claims(ns: &str, sa: &str, sa_uid: &str, secret: &str) -> Value {
    json!({"iss": LEGACY_ISSUER, "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": sa_uid})
}

fn user(ns: &str, sa: &str, uid: &str) -> UserInfo {
    UserInfo {
        name: format!("system:serviceaccount:{ns}:{sa}"),
        uid: uid.to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    }
}

fn legacy_subject(claims: &Value) -> Option<TokenSubject> {
    let get = |k: &str| claims[format!("kubernetes.io/serviceaccount/{k}")].as_str();
    let ns = get("namespace")?.to_string();
    let sa = get("service-account.name")?.to_string();
    let uid = get("service-account.uid").unwrap_or("").to_string();
    let secret = get("secret.name")?.to_string();
    Some(TokenSubject {
        user: user(&ns, &sa, &uid),
        namespace: ns,
        service_account: (sa, uid),
        bound: Some(("secret".into(), secret, String::new())),
        legacy: true,
    })
}

/// Who a verified token's claims name; None when they are not a service account's or
/// do not include an accepted audience.
pub fn subject(claims: &Value) -> Option<TokenSubject> {
    if claims["iss"] == LEGACY_ISSUER {
        return legacy_subject(claims);
    }
    let audiences: Vec<&str> = match &claims["aud"] {
        Value::String(a) => vec![a.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if claims["iss"] != ISSUER || !audiences.contains(&ISSUER) {
        return None;
    }
    let k8s = &claims["kubernetes.io"];
    let ns = k8s["namespace"].as_str()?.to_string();
    let sa = k8s["serviceaccount"]["name"].as_str()?.to_string();
    let sa_uid = k8s["serviceaccount"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let bound = ["pod", "secret", "node"].iter().find_map(|kind| {
        let o = k8s.get(*kind)?;
        Some((
            kind.to_string(),
            o["name"].as_str()?.to_string(),
            o["uid"].as_str().unwrap_or("").to_string(),
        ))
    });
    Some(TokenSubject {
        user: user(&ns, &sa, &sa_uid),
        namespace: ns,
        service_account: (sa, sa_uid),
        bound,
        legacy: false,
    })
}

/// `/.well-known/openid-configuration` for `issuer`, with `jwks_uri` on `server`.
pub fn discovery(server: &str) -> Value {
    json!({"issuer": ISSUER, "jwks_uri": format!("{server}/openid/v1/jwks"),
        "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"]})
}
