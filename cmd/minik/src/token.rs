//! `minik token create|list|delete`: bootstrap tokens, kept as Secrets of type
//! bootstrap.kubernetes.io/token in kube-system, through the running server as its admin.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::cli::TokenCommand;

const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random(n: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

fn unb64(s: &str) -> String {
    String::from_utf8_lossy(&STANDARD.decode(s).unwrap_or_default()).into_owned()
}

pub fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let admin = match &command {
        TokenCommand::Create { admin, .. }
        | TokenCommand::List { admin }
        | TokenCommand::Delete { admin, .. } => admin,
    };
    let client =
        minik_server::ApiClient::from_kubeconfig(&admin.kubeconfig).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let call = |method: &str, path: String, body: Option<Value>| {
        runtime
            .block_on(client.request(method, &path, body.as_ref()))
            .map_err(|e| anyhow::anyhow!("asking the server: {e}"))
    };
    match command {
        TokenCommand::Create {
            ttl,
            description,
            groups,
            ..
        } => {
            let ttl = minik_api::quantity::parse_go_duration(&ttl)
                .with_context(|| format!("--ttl {ttl:?} is not a duration like 24h or 30m"))?;
            if let Some(g) = groups
                .iter()
                .find(|g| !g.starts_with("system:bootstrappers:"))
            {
                anyhow::bail!("group {g:?} must start with system:bootstrappers:");
            }
            let (id, secret) = (random(6)?, random(16)?);
            let mut data = json!({"token-id": b64(&id), "token-secret": b64(&secret),
                "usage-bootstrap-authentication": b64("true"), "usage-bootstrap-signing": b64("true")});
            if !description.is_empty() {
                data["description"] = json!(b64(&description));
            }
            if !groups.is_empty() {
                data["auth-extra-groups"] = json!(b64(&groups.join(",")));
            }
            if !ttl.is_zero() {
                let at = std::time::SystemTime::now() + ttl;
                data["expiration"] = json!(b64(&minik_server::rfc3339(at)));
            }
            let body = json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
                "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"}, "data": data});
            call("POST", SECRETS.into(), Some(body))?;
            println!("{id}.{secret}");
        }
        TokenCommand::List { .. } => {
            let list = call("GET", SECRETS.into(), None)?;
            println!(
                "{:<8} {:<22} {:<36} {:<30} DESCRIPTION",
                "TOKEN", "EXPIRES", "USAGES", "EXTRA GROUPS"
            );
            for s in list["items"].as_array().into_iter().flatten() {
                if s["type"] != "bootstrap.kubernetes.io/token" {
                    continue;
                }
                let get = |k: &str| s["data"][k].as_str().map(unb64).unwrap_or_default();
                let usages: Vec<&str> = ["authentication", "signing"]
                    .into_iter()
                    .filter(|u| get(&format!("usage-bootstrap-{u}")) == "true")
                    .collect();
                let expires = get("expiration");
                println!(
                    "{:<8} {:<22} {:<36} {:<30} {}",
                    get("token-id"),
                    if expires.is_empty() {
                        "<forever>".into()
                    } else {
                        expires
                    },
                    usages.join(","),
                    get("auth-extra-groups"),
                    get("description")
                );
            }
        }
        TokenCommand::Delete { tokens, .. } => {
            for t in tokens {
                let id = t.split('.').next().unwrap_or("");
                call("DELETE", format!("{SECRETS}/bootstrap-token-{id}"), None)?;
                println!("bootstrap token {id:?} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
