//! `minik secrets-encrypt status|rotate`: asks the running server, as its admin.

use std::process::ExitCode;

use serde_json::Value;

use crate::cli::SecretsEncryptCommand;

fn show(report: &Value) {
    let enabled = report["enabled"] == true;
    println!(
        "Encryption Status: {}",
        if enabled { "Enabled" } else { "Disabled" }
    );
    if let Some(k) = report["activeKey"].as_str() {
        println!("Active Key: {k}");
    }
    let keys: Vec<&str> = report["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "Keys: {}",
        if keys.is_empty() {
            "none".into()
        } else {
            keys.join(", ")
        }
    );
    for (key, n) in report["secrets"].as_object().into_iter().flatten() {
        let by = if key == "identity" {
            "not encrypted".to_string()
        } else {
            format!("encrypted with {key}")
        };
        println!("Secrets {by}: {n}");
    }
    if let Some(n) = report["resealed"].as_u64() {
        println!("Secrets re-encrypted: {n}");
    }
}

pub fn run(command: SecretsEncryptCommand) -> anyhow::Result<ExitCode> {
    let (admin, method, path) = match &command {
        SecretsEncryptCommand::Status { admin } => {
            (admin, "GET", "/v1-minik/secrets-encrypt/status")
        }
        SecretsEncryptCommand::Rotate { admin } => {
            (admin, "POST", "/v1-minik/secrets-encrypt/rotate")
        }
    };
    let client =
        minik_server::ApiClient::from_kubeconfig(&admin.kubeconfig).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if method == "POST" {
        eprintln!("rotating the key and re-encrypting every secret...");
    }
    let report = runtime
        .block_on(client.request(method, path, None))
        .map_err(|e| anyhow::anyhow!("asking the server: {e}"))?;
    show(&report);
    Ok(ExitCode::SUCCESS)
}
