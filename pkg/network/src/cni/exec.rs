//! Running one CNI plugin: find its executable in the plugin directories, set the CNI_*
//! environment, write its config on stdin, and read its result (ADD) or its error
//! ({code, msg, details} on stdout with a non-zero exit) from stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::process;
use crate::pod::NetworkError;

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Del,
    Check,
}

impl Op {
    /// The CNI_COMMAND value.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
        }
    }
}

/// What every plugin of one call gets in its environment.
#[derive(Debug, Clone)]
pub struct Runtime<'a> {
    /// CNI_CONTAINERID.
    pub container_id: &'a str,
    /// CNI_NETNS; unset when the namespace is gone (DEL only).
    pub netns: Option<&'a Path>,
    /// CNI_IFNAME.
    pub if_name: &'a str,
    /// CNI_ARGS.
    pub args: String,
    /// Searched for plugins, and CNI_PATH.
    pub bin_dirs: &'a [PathBuf],
    /// How long a plugin may run before it is killed.
    pub timeout: Duration,
}

/// Finds a plugin's executable: the first of the plugin directories that has it.
fn find_plugin(bin_dirs: &[PathBuf], plugin: &str) -> Result<PathBuf, NetworkError> {
    use std::os::unix::fs::PermissionsExt;
    let valid_name = !plugin.is_empty() && !plugin.contains('/') && plugin != "." && plugin != "..";
    if valid_name {
        for dir in bin_dirs {
            let path = dir.join(plugin);
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
                && meta.permissions().mode() & 0o111 != 0
            {
                return Ok(path);
            }
        }
    }
    let dirs: Vec<String> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
    Err(NetworkError::Failed(format!(
        "failed to find plugin {plugin:?} in path [{}]",
        dirs.join(" ")
    )))
}

/// Runs `plugin` for `op` with `config` on stdin. Returns the result it printed (ADD) or
/// None (DEL, CHECK).
pub fn invoke(
    rt: &Runtime<'_>,
    op: Op,
    plugin: &str,
    network: &str,
    config: &Value,
) -> Result<Option<Value>, NetworkError> {
    let path = find_plugin(rt.bin_dirs, plugin)?;
    let cni_path = std::env::join_paths(rt.bin_dirs)
        .map_err(|e| NetworkError::Failed(format!("invalid plugin directory: {e}")))?;
    let mut cmd = Command::new(&path);
    cmd.env("CNI_COMMAND", op.as_str())
        .env("CNI_CONTAINERID", rt.container_id)
        .env("CNI_IFNAME", rt.if_name)
        .env("CNI_ARGS", &rt.args)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match rt.netns {
        Some(netns) => cmd.env("CNI_NETNS", netns),
        None => cmd.env_remove("CNI_NETNS"),
    };
    let stdin_bytes = serde_json::to_vec(config)
        .map_err(|e| NetworkError::Failed(format!("encoding the config of {plugin}: {e}")))?;
    tracing::debug!(
        plugin,
        network,
        op = op.as_str(),
        container = rt.container_id,
        "running CNI plugin"
    );
    let failed = |msg: String| {
        NetworkError::Failed(format!(
            "plugin type={plugin:?} name={network:?} failed ({}): {msg}",
            op.as_str().to_lowercase()
        ))
    };
    let Some(out) = process::run(&mut cmd, &stdin_bytes, rt.timeout)
        .map_err(NetworkError::io(format!("running {}", path.display())))?
    else {
        return Err(failed(format!("timed out after {:?}", rt.timeout)));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        tracing::debug!(plugin, stderr = %stderr.trim(), "CNI plugin stderr");
    }
    if !out.status.success() {
        return Err(failed(error_message(&out.stdout, &stderr, out.status)));
    }
    if op != Op::Add {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(result @ Value::Object(_)) => Ok(Some(result)),
        Ok(_) | Err(_) => Err(failed(format!(
            "the plugin printed no result: {:?}",
            String::from_utf8_lossy(&out.stdout).trim()
        ))),
    }
}

/// The message of a failed plugin: its error's msg (and details), else what it printed.
fn error_message(stdout: &[u8], stderr: &str, status: std::process::ExitStatus) -> String {
    if let Ok(Value::Object(err)) = serde_json::from_slice::<Value>(stdout) {
        let msg = err.get("msg").and_then(Value::as_str).unwrap_or_default();
        let details = err
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parts: Vec<&str> = [msg, details]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
        if let Some(code) = err.get("code").and_then(Value::as_u64) {
            return format!("error code {code}");
        }
    }
    let printed = String::from_utf8_lossy(stdout);
    let text = [printed.trim(), stderr.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        format!("{status}")
    } else {
        format!("{status}: {text}")
    }
}
