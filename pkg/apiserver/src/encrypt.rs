//! Secrets encryption at rest, operated through the API server (what `minik secrets-encrypt`
//! calls): `GET /v1-minik/secrets-encrypt/status` reports the keys and how many secrets each
//! seals; `POST /v1-minik/secrets-encrypt/rotate` adds a new key in front, re-seals every
//! secret with it and drops the old keys. The configuration file is written before a key is
//! used, so a crash never leaves a secret sealed with a key that is not on disk.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minik_registry::encryption::Encryption;
use serde_json::{Value, json};

use crate::AppState;
use crate::status::json_response;

fn secrets() -> &'static minik_api::ResourceInfo {
    minik_api::builtin("", "v1", "secrets")
}

/// Write a configuration file atomically (mode 0600).
pub fn write_config(path: &Path, config: &Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(config).unwrap_or_default();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("replacing {}: {e}", path.display()))
}

/// The configuration at `path`: loaded if it exists, made with a new key if `enable`.
pub fn load(path: &Path, enable: bool) -> Result<Option<Encryption>, String> {
    let shown = path.display();
    let doc: Value = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{shown} is not JSON: {e}"))?,
        Err(_) if !enable => return Ok(None),
        Err(_) => {
            let config = Encryption::new_config(&["secrets"], &[Encryption::generate_key()]);
            write_config(path, &config)?;
            tracing::info!(path = %shown, "created the secrets encryption key");
            config
        }
    };
    Encryption::from_config(&doc)
        .map(Some)
        .map_err(|e| format!("{shown}: {e}"))
}

fn failure(code: StatusCode, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "code": code.as_u16()});
    json_response(code, &body, &[]).into_response()
}

async fn report(state: &AppState) -> Result<Value, String> {
    let counts = state
        .registry
        .sealed_counts(secrets())
        .await
        .map_err(|e| e.to_string())?;
    let e = state.registry.encryption();
    Ok(json!({
        "enabled": e.as_ref().and_then(|e| e.write_key()).is_some(),
        "activeKey": e.as_ref().and_then(|e| e.write_key()),
        "keys": e.map(|e| e.key_names).unwrap_or_default(),
        "secrets": counts,
    }))
}

/// GET: the keys and what they seal.
pub async fn status(State(state): State<AppState>) -> Response {
    match report(&state).await {
        Ok(r) => json_response(StatusCode::OK, &r, &[]).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The configuration file (None: the server was not started with one).
fn config_path(state: &AppState) -> Option<PathBuf> {
    state.encryption_config.as_deref().cloned()
}

/// POST: a new key, every secret sealed with it, the old keys dropped.
pub async fn rotate(State(state): State<AppState>) -> Response {
    let Some(path) = config_path(&state) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "secrets encryption is not set up".into(),
        );
    };
    let _one_at_a_time = state.encryption_lock.lock().await;
    let old_keys: Vec<(String, String)> = match std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    {
        Some(doc) => doc["resources"][0]["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["aesgcm"]["keys"].as_array())
            .flatten()
            .map(|k| {
                (
                    k["name"].as_str().unwrap_or("").to_string(),
                    k["secret"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    let new_key = Encryption::generate_key();
    let mut keys = vec![new_key.clone()];
    keys.extend(old_keys);
    // 1. On disk first, then in force.
    let step = async {
        let config = Encryption::new_config(&["secrets"], &keys);
        write_config(&path, &config)?;
        let e = Encryption::from_config(&config)?;
        state.registry.set_encryption(Some(e));
        // 2. Every secret sealed with the new key.
        let n = state
            .registry
            .reencrypt(secrets())
            .await
            .map_err(|e| e.to_string())?;
        // 3. The old keys are no longer needed.
        let config = Encryption::new_config(&["secrets"], std::slice::from_ref(&new_key));
        write_config(&path, &config)?;
        state
            .registry
            .set_encryption(Some(Encryption::from_config(&config)?));
        tracing::info!(key = %new_key.0, resealed = n, "rotated the secrets encryption key");
        report(&state).await.map(|mut r| {
            r["resealed"] = json!(n);
            r
        })
    };
    match step.await {
        Ok(r) => json_response(StatusCode::OK, &r, &[]).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
