//! The OCI (and docker schema 2) documents the store reads: descriptors, image indexes and
//! manifest lists, image manifests, image configs; and choosing the host's platform from an
//! index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Error, ImageConfig, Result};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
#[cfg(test)]
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
#[cfg(test)]
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Media types accepted when fetching a manifest from a registry.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// The full name an image is given by containerd (`ctr export`, nerdctl, k3s).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI name annotation: a tag, or with some tools a whole reference.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index or docker manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// What a fetched manifest document turned out to be.
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

/// Parse a manifest document, telling an index from an image manifest by its mediaType
/// (or, without one, by which list it has).
pub fn parse_document(bytes: &[u8]) -> Result<Document> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid(format!("manifest is not JSON: {e}")))?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or("");
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_LIST
        || (media_type.is_empty() && value.get("manifests").is_some());
    if is_index {
        serde_json::from_value(value)
            .map(Document::Index)
            .map_err(|e| Error::Invalid(format!("bad image index: {e}")))
    } else {
        if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            return Err(Error::Invalid(
                "docker schema 1 manifests are not supported".into(),
            ));
        }
        serde_json::from_value(value)
            .map(Document::Manifest)
            .map_err(|e| Error::Invalid(format!("bad image manifest: {e}")))
    }
}

/// The image config document (only what the store uses).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    pub fn parse(bytes: &[u8]) -> Result<ConfigFile> {
        serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("bad image config: {e}")))
    }

    /// What the runtime needs to run the image.
    pub fn image_config(&self) -> ImageConfig {
        let c = self.config.clone().unwrap_or_default();
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
        }
    }
}

/// The host's platform in OCI terms (linux/amd64 on x86_64).
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Platform {
        architecture: architecture.into(),
        os: std::env::consts::OS.into(),
        variant: None,
    }
}

/// Whether an image for `p` runs here (os and architecture; any variant).
pub fn platform_matches(p: &Platform) -> bool {
    let host = host_platform();
    p.os == host.os && p.architecture == host.architecture
}

/// The entry of an index for this host: its platform matches, or, with no entry saying a
/// platform, the first image manifest.
pub fn choose_platform(index: &Index) -> Option<&Descriptor> {
    index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(platform_matches))
        .or_else(|| {
            if index.manifests.iter().any(|d| d.platform.is_some()) {
                None
            } else {
                index.manifests.first()
            }
        })
}

/// "linux/amd64" for messages.
pub fn host_platform_name() -> String {
    let p = host_platform();
    format!("{}/{}", p.os, p.architecture)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, digest_byte: char) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", digest_byte.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn picks_the_host_platform() {
        let host = host_platform().architecture;
        let index = Index {
            manifests: vec![desc("s390x", 'a'), desc(&host, 'b'), desc("riscv64", 'c')],
        };
        assert_eq!(
            choose_platform(&index).unwrap().digest,
            desc(&host, 'b').digest
        );
        let other = Index {
            manifests: vec![desc("s390x", 'a')],
        };
        assert!(choose_platform(&other).is_none());
    }

    #[test]
    fn parses_documents() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_document(index).unwrap(), Document::Index(_)));
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(matches!(parse_document(m).unwrap(), Document::Manifest(_)));
        assert!(parse_document(br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
        let c = ConfigFile::parse(
            br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["A=b"],
              "WorkingDir":""},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let ic = c.image_config();
        assert_eq!(ic.cmd, vec!["sh"]);
        assert_eq!(ic.env, vec!["A=b"]);
        assert_eq!(ic.working_dir, None);
    }
}
