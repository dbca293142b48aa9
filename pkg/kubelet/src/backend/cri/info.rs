//! The verbose `info` a CRI runtime adds to PodSandboxStatus and ImageStatus: containerd
//! puts one JSON document under the key "info". From a sandbox's: its network namespace
//! path (runtimeSpec.linux.namespaces) and the hostname of its config; from a container's:
//! its init's pid; from an image's: the OCI image config (imageSpec.config). The runtime's
//! own verbose Status has its CRI config as JSON under "config" (containerd: sandboxImage).

use std::collections::HashMap;
use std::path::PathBuf;

use minik_runtime::ImageConfig;
use serde::Deserialize;

/// What the kubelet reads of a sandbox's verbose info.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SandboxInfo {
    /// The sandbox's network namespace file (None with the node's network).
    pub netns: Option<PathBuf>,
    /// The hostname the sandbox was created with.
    pub hostname: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSandbox {
    #[serde(rename = "runtimeSpec")]
    runtime_spec: Option<RuntimeSpec>,
    config: Option<RawSandboxConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSandboxConfig {
    hostname: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RuntimeSpec {
    linux: Option<Linux>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Linux {
    namespaces: Vec<Namespace>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Namespace {
    #[serde(rename = "type")]
    kind: String,
    path: String,
}

/// The JSON under "info", parsed; None when absent or not what was expected.
fn parse<T: serde::de::DeserializeOwned>(info: &HashMap<String, String>, what: &str) -> Option<T> {
    let raw = info.get("info")?;
    match serde_json::from_str(raw) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(error = %e, what, "unreadable verbose info from the runtime");
            None
        }
    }
}

/// A sandbox's network namespace and hostname from its verbose status info.
pub(super) fn sandbox(info: &HashMap<String, String>) -> SandboxInfo {
    let Some(raw) = parse::<RawSandbox>(info, "sandbox") else {
        return SandboxInfo::default();
    };
    let netns = raw
        .runtime_spec
        .and_then(|s| s.linux)
        .and_then(|l| {
            l.namespaces
                .into_iter()
                .find(|n| n.kind == "network" && !n.path.is_empty())
        })
        .map(|n| PathBuf::from(n.path));
    SandboxInfo {
        netns,
        hostname: raw.config.and_then(|c| c.hostname),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawContainer {
    pid: Option<i32>,
}

/// A running container's init pid from its verbose status info.
pub(super) fn container_pid(info: &HashMap<String, String>) -> Option<i32> {
    parse::<RawContainer>(info, "container")?
        .pid
        .filter(|p| *p > 0)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawImage {
    #[serde(rename = "imageSpec")]
    image_spec: Option<OciImage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OciImage {
    config: Option<OciConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct OciConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

/// An image's config from its verbose status info (empty when the runtime gave none).
pub(super) fn image_config(info: &HashMap<String, String>) -> ImageConfig {
    let config = parse::<RawImage>(info, "image")
        .and_then(|r| r.image_spec)
        .and_then(|s| s.config)
        .unwrap_or_default();
    ImageConfig {
        entrypoint: config.entrypoint.unwrap_or_default(),
        cmd: config.cmd.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
        working_dir: config.working_dir.filter(|w| !w.is_empty()),
        user: config.user.filter(|u| !u.is_empty()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RuntimeConfig {
    #[serde(rename = "sandboxImage")]
    sandbox_image: Option<String>,
}

/// The image the runtime runs pod sandboxes with, from its verbose Status info.
pub(super) fn sandbox_image(info: &HashMap<String, String>) -> Option<String> {
    let raw = info.get("config")?;
    let config: RuntimeConfig = serde_json::from_str(raw)
        .inspect_err(|e| tracing::debug!(error = %e, "unreadable runtime config"))
        .ok()?;
    config.sandbox_image.filter(|i| !i.is_empty())
}
