//! Encryption at rest (an EncryptionConfiguration, apiserver.config.k8s.io/v1): values of
//! the named resources (secrets, as k3s's `--secrets-encryption` does) are written sealed
//! with the first provider's first key, AES-256-GCM, as
//! `k8s:enc:aesgcm:v1:<key name>:<nonce><ciphertext>`; any key the configuration lists
//! opens them, and unsealed values still read (the identity provider).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use base64::Engine;
use minik_api::ResourceInfo;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

use crate::{ApiError, Result};

const PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";

/// Every key any configuration of this process has listed, by name, for reading.
static KEYRING: LazyLock<RwLock<HashMap<String, Arc<LessSafeKey>>>> =
    LazyLock::new(Default::default);

/// A parsed EncryptionConfiguration.
#[derive(Clone)]
pub struct Encryption {
    /// The resources it covers: `secrets`, `deployments.apps`.
    resources: Vec<String>,
    /// The key new values are sealed with (None: the identity provider comes first).
    write: Option<(String, Arc<LessSafeKey>)>,
    /// Key names in the order the configuration lists them.
    pub key_names: Vec<String>,
}

fn key(secret_b64: &str, name: &str) -> std::result::Result<LessSafeKey, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret_b64)
        .map_err(|e| format!("key {name:?} is not base64: {e}"))?;
    let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
        .map_err(|_| format!("key {name:?} must be 32 bytes (AES-256)"))?;
    Ok(LessSafeKey::new(unbound))
}

impl Encryption {
    /// From an EncryptionConfiguration document.
    pub fn from_config(doc: &Value) -> std::result::Result<Encryption, String> {
        if doc["kind"] != "EncryptionConfiguration" {
            return Err("kind must be EncryptionConfiguration".into());
        }
        let mut resources = Vec::new();
        let mut write = None;
        let mut key_names = Vec::new();
        for (i, entry) in doc["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for r in entry["resources"].as_array().into_iter().flatten() {
                resources.push(r.as_str().unwrap_or("").to_string());
            }
            for (j, provider) in entry["providers"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let first = i == 0 && j == 0;
                if let Some(keys) = provider["aesgcm"]["keys"].as_array() {
                    for (k, entry) in keys.iter().enumerate() {
                        let name = entry["name"].as_str().unwrap_or("").to_string();
                        if name.is_empty() || name.contains(':') {
                            return Err(format!(
                                "key name {name:?} must be non-empty, without ':'"
                            ));
                        }
                        let sealed = Arc::new(key(entry["secret"].as_str().unwrap_or(""), &name)?);
                        KEYRING
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(name.clone(), sealed.clone());
                        if first && k == 0 {
                            write = Some((name.clone(), sealed));
                        }
                        key_names.push(name);
                    }
                } else if provider.get("identity").is_none() {
                    let kind = provider.as_object().and_then(|m| m.keys().next().cloned());
                    return Err(format!(
                        "provider {:?} is not supported (aesgcm and identity are)",
                        kind.unwrap_or_default()
                    ));
                }
            }
        }
        Ok(Encryption {
            resources,
            write,
            key_names,
        })
    }

    /// A configuration for `resources` with one new random key, then identity.
    pub fn new_config(resources: &[&str], keys: &[(String, String)]) -> Value {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(name, secret)| json!({"name": name, "secret": secret}))
            .collect();
        json!({"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1",
            "resources": [{"resources": resources,
                "providers": [{"aesgcm": {"keys": keys}}, {"identity": {}}]}]})
    }

    /// A new key: (name, base64 secret).
    pub fn generate_key() -> (String, String) {
        let mut bytes = [0u8; 32];
        let mut tag = [0u8; 4];
        let rng = SystemRandom::new();
        let _ = rng.fill(&mut bytes);
        let _ = rng.fill(&mut tag);
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%S");
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        (
            format!("aesgcm-{now}-{tag}"),
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )
    }

    /// Whether values of `info` are sealed.
    pub fn covers(&self, info: &ResourceInfo) -> bool {
        let name = if info.group.is_empty() {
            info.plural.to_string()
        } else {
            format!("{}.{}", info.plural, info.group)
        };
        self.resources.iter().any(|r| *r == name || r == "*.*")
    }

    /// The name of the key new values are sealed with.
    pub fn write_key(&self) -> Option<&str> {
        self.write.as_ref().map(|(n, _)| n.as_str())
    }

    /// `plain` sealed with the write key (unchanged under identity).
    pub fn seal(&self, plain: Vec<u8>) -> Result<Vec<u8>> {
        let Some((name, key)) = &self.write else {
            return Ok(plain);
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ApiError::Internal("no randomness for a nonce".into()))?;
        let mut data = plain;
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .map_err(|_| ApiError::Internal("sealing failed".into()))?;
        let mut out = Vec::with_capacity(PREFIX.len() + name.len() + 1 + NONCE_LEN + data.len());
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }
}

/// The key name a stored value is sealed with (None: not sealed).
pub fn sealed_with(stored: &[u8]) -> Option<&str> {
    let rest = stored.strip_prefix(PREFIX)?;
    let end = rest.iter().position(|b| *b == b':')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// A stored value opened (unsealed values as they are).
pub fn open(stored: &[u8]) -> std::result::Result<std::borrow::Cow<'_, [u8]>, String> {
    let Some(name) = sealed_with(stored) else {
        return Ok(std::borrow::Cow::Borrowed(stored));
    };
    let key = KEYRING
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
        .ok_or_else(|| {
            format!("sealed with key {name:?}, which the encryption configuration does not list")
        })?;
    let body = &stored[PREFIX.len() + name.len() + 1..];
    if body.len() < NONCE_LEN {
        return Err("sealed value too short".into());
    }
    let (nonce, sealed) = body.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
    let mut data = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::empty(), &mut data)
        .map_err(|_| format!("cannot open a value sealed with key {name:?}"))?;
    let n = plain.len();
    data.truncate(n);
    Ok(std::borrow::Cow::Owned(data))
}

impl crate::Registry {
    /// How many stored objects of `info` are sealed with each key ("identity": not sealed).
    pub async fn sealed_counts(&self, info: &ResourceInfo) -> Result<HashMap<String, usize>> {
        let list = self
            .store
            .list(&crate::resource_prefix(info), Default::default())
            .await?;
        let mut out = HashMap::new();
        for kv in &list.kvs {
            let key = sealed_with(&kv.value).unwrap_or("identity").to_string();
            *out.entry(key).or_insert(0) += 1;
        }
        Ok(out)
    }

    /// Seal every stored object of `info` with the write key; how many were rewritten.
    pub async fn reencrypt(&self, info: &ResourceInfo) -> Result<usize> {
        let list = self
            .store
            .list(&crate::resource_prefix(info), Default::default())
            .await?;
        let mut done = 0;
        for mut kv in list.kvs {
            loop {
                let want = self
                    .encryption()
                    .and_then(|e| e.write_key().map(str::to_string));
                if sealed_with(&kv.value).map(str::to_string) == want {
                    break;
                }
                let plain = open(&kv.value).map_err(ApiError::Internal)?;
                let obj: Value = serde_json::from_slice(&plain)
                    .map_err(|e| ApiError::Internal(format!("stored object {}: {e}", kv.key)))?;
                let bytes = self.encode(info, &obj)?;
                match self.store.update(&kv.key, bytes, kv.mod_revision).await {
                    Ok(_) => {
                        done += 1;
                        break;
                    }
                    Err(minik_store::Error::Conflict { .. }) => {
                        match self.store.get(&kv.key, None).await?.1 {
                            Some(now) => kv = now,
                            None => break,
                        }
                    }
                    Err(minik_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let (name, secret) = Encryption::generate_key();
        let config = Encryption::new_config(&["secrets"], &[(name.clone(), secret)]);
        let e = Encryption::from_config(&config).unwrap();
        let sealed = e.seal(b"{\"a\":1}".to_vec()).unwrap();
        assert_eq!(sealed_with(&sealed), Some(name.as_str()));
        assert!(!sealed.windows(7).any(|w| w == b"{\"a\":1}"));
        assert_eq!(&*open(&sealed).unwrap(), b"{\"a\":1}");
        assert_eq!(&*open(b"{}").unwrap(), b"{}");
        assert!(open(b"k8s:enc:aesgcm:v1:unknown:xxxxxxxxxxxxxxxx").is_err());
    }
}
