//! The image store, laid out like containerd's under one root (`<data-dir>/agent/store`):
//!
//! ```text
//! lock                  flock held while records change (CLI and server share the store)
//! images.json           the image records (meta.rs)
//! blobs/sha256/<hex>    manifests, configs, compressed layers, verified (content.rs)
//! snapshots/<hex>/      each layer unpacked once, by diff id, shared (snapshots.rs, unpack.rs)
//! leases/<holder>.json  content still used by containers after their image went
//! ingest/               temporary files, renamed into place when whole
//! ```
//!
//! Images come from tarballs (import.rs: OCI layout, docker archive) or registries (pull.rs,
//! registries.rs). An image's id is "sha256:<config digest>", references are normalized like
//! containerd's (reference.rs), and removing an image's last reference removes the blobs and
//! layers no other image shares.

mod commit;
mod content;
mod import;
mod meta;
mod oci;
mod pull;
mod reference;
mod registries;
mod snapshots;
mod stage;
mod table;
#[cfg(test)]
mod tests;
mod unpack;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use reference::{Reference, normalize};
pub use registries::{AuthConfig, Endpoint, Mirror, Registries, RegistryConfig, TlsConfig};
pub use table::{human_size, image_table};

use crate::types::{Auth, Error, Image, ImageConfig, Result};
use meta::{ImageRecord, Lease, Meta, MetaStore};

/// The image store of a node with data directory `data_dir` (the server, the agent and
/// `minik image` all use this one).
pub fn store_root(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("store")
}

/// What a long import or pull is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A blob is being downloaded: its digest and size in bytes.
    Fetching { digest: String, size: u64 },
    /// More bytes of the current downloads arrived.
    Fetched { bytes: u64 },
    /// A layer is being unpacked (unless it already is).
    Unpacking { digest: String },
}

/// Receives progress events (from any thread).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// A content-addressed image store under one directory.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    content: content::Content,
    snapshots: snapshots::Snapshots,
    meta: MetaStore,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.root)
            .finish()
    }
}

impl ImageStore {
    /// Open (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<ImageStore> {
        std::fs::create_dir_all(root).map_err(Error::io(format!("creating {}", root.display())))?;
        Ok(ImageStore {
            root: root.into(),
            content: content::Content::open(root)?,
            snapshots: snapshots::Snapshots::open(root)?,
            meta: MetaStore::open(root)?,
            progress: None,
        })
    }

    /// The same store, reporting progress of imports and pulls to `f`.
    pub fn with_progress(mut self, f: ProgressFn) -> ImageStore {
        self.progress = Some(f);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Import every image of an OCI-layout or docker-archive tarball (plain, gzip or zstd)
    /// for this host's platform.
    pub fn import(&self, tarball: &Path) -> Result<Vec<Image>> {
        self.import_tarball(tarball)
    }

    /// Pull one image (mirrors and credentials from `registries`; `auth`, from an
    /// imagePullSecret, wins over configured credentials). Errors are `Error::Pull`.
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<&Auth>,
        registries: &Registries,
    ) -> Result<Image> {
        self.pull_image(reference, auth, registries).await
    }

    /// Every image, by first tag.
    pub fn list(&self) -> Result<Vec<Image>> {
        let mut images: Vec<Image> = self
            .meta
            .load()?
            .images
            .values()
            .map(|r| r.image())
            .collect();
        images.sort_by(|a, b| (a.repo_tags.first(), &a.id).cmp(&(b.repo_tags.first(), &b.id)));
        Ok(images)
    }

    /// An image by reference (normalized: "busybox" finds docker.io/library/busybox:latest),
    /// "name@sha256:..." digest, id ("sha256:<hex>" or the bare hex), or an unambiguous
    /// prefix of the id.
    pub fn get(&self, reference_or_id: &str) -> Option<Image> {
        match self.meta.load() {
            Ok(meta) => resolve(&meta, reference_or_id).map(|r| r.image()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the image records");
                None
            }
        }
    }

    /// What the image's config says about running it (by id or reference).
    pub fn config(&self, id: &str) -> Result<ImageConfig> {
        let record = self.record(id)?;
        let bytes = self.content.read(&record.config)?;
        Ok(oci::ConfigFile::parse(&bytes)?.image_config())
    }

    /// The image's unpacked layers, lowest first: the lowerdirs of an overlay (which lists
    /// them highest first).
    pub fn layers(&self, id: &str) -> Result<Vec<PathBuf>> {
        let record = self.record(id)?;
        let mut out = Vec::with_capacity(record.layers.len());
        for l in &record.layers {
            let p = self.snapshots.path(&l.diff_id)?;
            if !p.is_dir() {
                return Err(Error::Failed(format!(
                    "image {}: layer {} is not unpacked (import or pull the image again)",
                    record.id, l.diff_id
                )));
            }
            out.push(p);
        }
        Ok(out)
    }

    /// Remove a reference. A tag goes alone while the image keeps another tag; with the
    /// last tag (or given the id) the image goes with all its references, and then its blobs
    /// and unpacked layers that no other image (or lease) uses.
    pub fn remove(&self, reference_or_id: &str) -> Result<()> {
        let mut locked = self.meta.lock()?;
        let record = resolve(&locked.meta, reference_or_id)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(reference_or_id.into()))?;
        let normalized = normalize(reference_or_id);
        let is_tag = record.repo_tags.contains(&normalized);
        let is_digest = record.repo_digests.contains(&normalized);
        let entry = locked
            .meta
            .images
            .get_mut(&record.id)
            .ok_or_else(|| Error::ImageNotFound(reference_or_id.into()))?;
        entry.repo_tags.retain(|t| *t != normalized);
        entry.repo_digests.retain(|d| *d != normalized);
        let keep = (is_tag || is_digest) && !entry.repo_tags.is_empty();
        if keep {
            self.meta.save(&locked)?;
            tracing::info!(image = %record.id, reference = %normalized, "untagged an image");
            return Ok(());
        }
        locked.meta.images.remove(&record.id);
        self.meta.save(&locked)?;
        tracing::info!(image = %record.id, tags = ?record.repo_tags, "removed an image");
        let blobs: BTreeSet<String> = record.blobs().into_iter().collect();
        let snaps: BTreeSet<String> = record.snapshots().into_iter().collect();
        self.collect(&locked, blobs, snaps)
    }

    /// Pin an image (by reference or id): the kubelet's image garbage collection never
    /// removes it (`remove` still does), as containerd's io.cri-containerd.pinned label.
    pub fn pin(&self, reference_or_id: &str) -> Result<()> {
        let mut locked = self.meta.lock()?;
        let id = resolve(&locked.meta, reference_or_id)
            .map(|r| r.id.clone())
            .ok_or_else(|| Error::ImageNotFound(reference_or_id.into()))?;
        match locked.meta.images.get_mut(&id) {
            Some(r) if !r.pinned => r.pinned = true,
            _ => return Ok(()),
        }
        self.meta.save(&locked)
    }

    /// The ids of the pinned images.
    pub fn pinned(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .meta
            .load()?
            .images
            .values()
            .filter(|r| r.pinned)
            .map(|r| r.id.clone())
            .collect())
    }

    /// The ids of the images whose content a lease (a container) holds.
    pub fn leased(&self) -> Result<BTreeSet<String>> {
        self.meta.leased_images()
    }

    /// Keep an image's content (blobs and unpacked layers) for `holder` (e.g. a container
    /// id) even if the image is removed, until `release(holder)`.
    pub fn lease(&self, holder: &str, reference_or_id: &str) -> Result<()> {
        let locked = self.meta.lock()?;
        let record = resolve(&locked.meta, reference_or_id)
            .ok_or_else(|| Error::ImageNotFound(reference_or_id.into()))?;
        let lease = Lease {
            image: record.id.clone(),
            blobs: record.blobs(),
            snapshots: record.snapshots(),
        };
        self.meta.put_lease(&locked, holder, &lease)
    }

    /// Drop `holder`'s lease, removing content it alone kept. No lease is fine.
    pub fn release(&self, holder: &str) -> Result<()> {
        let locked = self.meta.lock()?;
        if let Some(lease) = self.meta.take_lease(&locked, holder)? {
            self.collect(
                &locked,
                lease.blobs.into_iter().collect(),
                lease.snapshots.into_iter().collect(),
            )?;
        }
        Ok(())
    }

    fn record(&self, reference_or_id: &str) -> Result<ImageRecord> {
        let meta = self.meta.load()?;
        resolve(&meta, reference_or_id)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(reference_or_id.into()))
    }

    fn progress_unpacking(&self, digest: &str) {
        if let Some(p) = &self.progress {
            p(Progress::Unpacking {
                digest: digest.into(),
            });
        }
    }
}

/// See `ImageStore::get`.
fn resolve<'a>(meta: &'a Meta, s: &str) -> Option<&'a ImageRecord> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(r) = meta.images.get(s) {
        return Some(r);
    }
    let is_hex =
        |h: &str| !h.is_empty() && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if s.len() == 64
        && is_hex(s)
        && let Some(r) = meta.images.get(&format!("sha256:{s}"))
    {
        return Some(r);
    }
    if let Ok(r) = Reference::parse(s) {
        let n = r.to_string();
        let by_digest = r.digest.as_deref().map(|d| r.with_digest(d));
        if let Some(found) = meta.images.values().find(|i| {
            i.repo_tags.contains(&n)
                || i.repo_digests.contains(&n)
                || by_digest
                    .as_ref()
                    .is_some_and(|d| i.repo_digests.contains(d))
        }) {
            return Some(found);
        }
    }
    let prefix = s.strip_prefix("sha256:").unwrap_or(s);
    if prefix.len() >= 4 && is_hex(prefix) {
        let mut matches = meta
            .images
            .values()
            .filter(|i| i.id.trim_start_matches("sha256:").starts_with(prefix));
        if let (Some(one), None) = (matches.next(), matches.next()) {
            return Some(one);
        }
    }
    None
}
