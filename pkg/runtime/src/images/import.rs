//! Importing image tarballs, as `ctr images import` and k3s's agent/images do:
//! - an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`): every entry of
//!   index.json, nested indexes resolved to this host's platform, named by its
//!   `io.containerd.image.name` annotation, or by `org.opencontainers.image.ref.name` when
//!   that is a whole reference (a bare tag names nothing);
//! - a docker archive (`docker save`): `manifest.json` entries with Config, RepoTags and
//!   Layers (plain or gzip tars); a manifest is made for each image. A docker archive that is
//!   also an OCI layout (docker 25+) is read as the layout, with RepoTags added.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::ImageStore;
use super::commit::{Committed, NewImage, names};
use super::meta::LayerRecord;
use super::oci::{self, ConfigFile, Descriptor, Document, Index, Manifest};
use super::reference::Reference;
use super::stage::{Staged, stage};
use crate::types::{Error, Image, Result};

/// Media types of docker-archive layers and configs.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Attempts when another process removes shared content while importing.
const ATTEMPTS: usize = 10;

/// An image found in a tarball.
struct Found {
    manifest_digest: String,
    manifest: Manifest,
    /// Whether the manifest digest is a real one (OCI) or made up here (docker archive).
    real_digest: bool,
    names: Vec<Reference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

impl ImageStore {
    pub(crate) fn import_tarball(&self, tarball: &Path) -> Result<Vec<Image>> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let staged = stage(&self.content, tarball)?;
            let found = find_images(&staged)?;
            let mut images = Vec::new();
            let mut gone = None;
            for f in &found {
                match self.import_one(&staged, f)? {
                    Committed::Done(image) => images.push(image),
                    Committed::ContentGone(what) => gone = Some(what),
                }
            }
            match gone {
                None => return Ok(images),
                Some(what) => {
                    tracing::info!(tarball = %tarball.display(), %what, "content removed concurrently; importing again");
                    last = what;
                }
            }
        }
        Err(Error::Failed(format!(
            "importing {}: {last} kept being removed by another process",
            tarball.display()
        )))
    }

    fn import_one(&self, staged: &Staged, f: &Found) -> Result<Committed> {
        let shown = staged.tarball.display();
        let config_bytes = staged.read_blob_or_file(&f.manifest.config.digest)?;
        let config = ConfigFile::parse(&config_bytes)?;
        if !config.architecture.is_empty()
            && !oci::platform_matches(&oci::Platform {
                architecture: config.architecture.clone(),
                os: config.os.clone(),
                variant: None,
            })
        {
            return Err(Error::Invalid(format!(
                "{shown}: the image is for {}/{}, this node runs {}",
                config.os,
                config.architecture,
                oci::host_platform_name()
            )));
        }
        if config.rootfs.diff_ids.len() != f.manifest.layers.len() {
            return Err(Error::Invalid(format!(
                "{shown}: the manifest has {} layers, the config {} diff ids",
                f.manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (l, diff_id) in f.manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if let Some(gone) = staged.commit_digest(&self.content, &l.digest)? {
                return Ok(Committed::ContentGone(gone));
            }
            layers.push(LayerRecord {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
                diff_id: diff_id.clone(),
            });
        }
        if let Some(gone) = staged.commit_digest(&self.content, &f.manifest.config.digest)? {
            return Ok(Committed::ContentGone(gone));
        }
        if f.real_digest {
            if let Some(gone) = staged.commit_digest(&self.content, &f.manifest_digest)? {
                return Ok(Committed::ContentGone(gone));
            }
        } else {
            let bytes =
                serde_json::to_vec(&f.manifest).map_err(|e| Error::Failed(e.to_string()))?;
            self.content.write(&bytes, Some(&f.manifest_digest))?;
        }
        let digest = f.real_digest.then_some(f.manifest_digest.as_str());
        let (repo_tags, repo_digests) = names(&f.names, digest);
        let new = NewImage {
            manifest: f.manifest_digest.clone(),
            index: None,
            config: f.manifest.config.digest.clone(),
            layers,
            repo_tags,
            repo_digests,
        };
        let result = self.commit(&new)?;
        if let Committed::Done(image) = &result {
            tracing::info!(tarball = %shown, image = %image.id, tags = ?image.repo_tags, "imported an image");
        }
        Ok(result)
    }
}

impl Staged {
    /// A blob by digest: under blobs/ (OCI) or any file with that content (docker archive).
    fn find(&self, digest: &str) -> Result<&super::stage::StagedFile> {
        self.blob(digest)
            .or_else(|e| self.by_digest(digest).ok_or(e))
    }

    fn read_blob_or_file(&self, digest: &str) -> Result<Vec<u8>> {
        let f = self.find(digest)?;
        std::fs::read(&f.path).map_err(Error::io(format!("reading staged blob {digest}")))
    }

    /// Put a blob into the store; `Some(what)` when it vanished (see `Staged::commit`).
    fn commit_digest(
        &self,
        content: &super::content::Content,
        digest: &str,
    ) -> Result<Option<String>> {
        let f = self.find(digest)?.clone();
        Ok((!self.commit(content, &f)?).then(|| format!("blob {digest}")))
    }
}

/// Every image of the tarball, for this host's platform.
fn find_images(staged: &Staged) -> Result<Vec<Found>> {
    let shown = staged.tarball.display();
    let mut found: Vec<Found> = Vec::new();
    if staged.has("index.json") {
        let index: Index = serde_json::from_slice(&staged.read("index.json")?)
            .map_err(|e| Error::Invalid(format!("{shown}: bad index.json: {e}")))?;
        for d in &index.manifests {
            walk(staged, d, name_of(d), &mut found, 0)?;
        }
    }
    if staged.has("manifest.json") {
        let entries: Vec<DockerEntry> = serde_json::from_slice(&staged.read("manifest.json")?)
            .map_err(|e| Error::Invalid(format!("{shown}: bad manifest.json: {e}")))?;
        for e in entries {
            docker_entry(staged, e, &mut found)?;
        }
    }
    if found.is_empty() {
        return Err(Error::Invalid(
            if staged.has("index.json") || staged.has("manifest.json") {
                format!("{shown} has no image for {}", oci::host_platform_name())
            } else {
                format!(
                    "{shown} is neither an OCI image layout (index.json) nor a docker archive (manifest.json)"
                )
            },
        ));
    }
    Ok(found)
}

/// An image's name from its index entry's annotations.
fn name_of(d: &Descriptor) -> Option<Reference> {
    if let Some(n) = d.annotations.get(oci::ANNOTATION_IMAGE_NAME) {
        return Reference::parse(n).ok();
    }
    let r = d.annotations.get(oci::ANNOTATION_REF_NAME)?;
    // The OCI annotation is usually only a tag, which does not say which repository.
    if r.contains('/') || r.contains(':') || r.contains('@') {
        return Reference::parse(r).ok();
    }
    tracing::debug!(ref_name = %r, "an OCI ref.name that is only a tag names no image");
    None
}

fn walk(
    staged: &Staged,
    d: &Descriptor,
    name: Option<Reference>,
    found: &mut Vec<Found>,
    depth: usize,
) -> Result<()> {
    if depth > 8 {
        return Err(Error::Invalid(format!(
            "{}: image indexes nested too deep",
            staged.tarball.display()
        )));
    }
    if d.platform
        .as_ref()
        .is_some_and(|p| !oci::platform_matches(p))
    {
        return Ok(());
    }
    let bytes = staged.read_blob(&d.digest)?;
    match oci::parse_document(&bytes)? {
        Document::Index(index) => match oci::choose_platform(&index) {
            Some(child) => {
                let name = name.or_else(|| name_of(child));
                walk(staged, child, name, found, depth + 1)
            }
            None => {
                tracing::info!(index = %d.digest, "no manifest for this platform in an index");
                Ok(())
            }
        },
        Document::Manifest(manifest) => {
            match found.iter_mut().find(|f| f.manifest_digest == d.digest) {
                Some(f) => f.names.extend(name),
                None => found.push(Found {
                    manifest_digest: d.digest.clone(),
                    manifest,
                    real_digest: true,
                    names: name.into_iter().collect(),
                }),
            }
            Ok(())
        }
    }
}

fn docker_entry(staged: &Staged, e: DockerEntry, found: &mut Vec<Found>) -> Result<()> {
    let shown = staged.tarball.display();
    let config = staged.file(&e.config)?;
    let names: Vec<Reference> = e
        .repo_tags
        .unwrap_or_default()
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<_>>()
        .map_err(|err| Error::Invalid(format!("{shown}: manifest.json RepoTags: {err}")))?;
    // Docker 25+ archives are OCI layouts too: name the image found there.
    if let Some(f) = found
        .iter_mut()
        .find(|f| f.manifest.config.digest == config.digest)
    {
        f.names.extend(names);
        return Ok(());
    }
    let mut layers = Vec::new();
    for l in &e.layers {
        let f = staged.file(l)?;
        let gzip = staged.head(f)?.starts_with(&[0x1f, 0x8b]);
        layers.push(Descriptor {
            media_type: if gzip {
                DOCKER_LAYER_GZIP
            } else {
                DOCKER_LAYER
            }
            .into(),
            digest: f.digest.clone(),
            size: f.size,
            platform: None,
            annotations: BTreeMap::new(),
        });
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::DOCKER_MANIFEST.into()),
        config: Descriptor {
            media_type: DOCKER_CONFIG.into(),
            digest: config.digest.clone(),
            size: config.size,
            platform: None,
            annotations: BTreeMap::new(),
        },
        layers,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Failed(e.to_string()))?;
    found.push(Found {
        manifest_digest: super::content::sha256(&bytes),
        manifest,
        real_digest: false,
        names,
    });
    Ok(())
}
