//! Recording an image whose blobs are in the content store: unpack its layers (outside the
//! lock), then under the lock check that nothing it needs was removed meanwhile, move tags
//! from images that had them, merge with an image of the same id, and drop what no image
//! uses any more.

use std::collections::BTreeSet;

use super::ImageStore;
use super::meta::{ImageRecord, LayerRecord, Locked};
use super::reference::Reference;
use crate::types::{Image, Result};

/// An image ready to be recorded.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub manifest: String,
    pub index: Option<String>,
    pub config: String,
    pub layers: Vec<LayerRecord>,
    /// Normalized "name:tag" references.
    pub repo_tags: Vec<String>,
    /// "name@sha256:..." references.
    pub repo_digests: Vec<String>,
}

impl NewImage {
    fn record(&self) -> ImageRecord {
        ImageRecord {
            id: self.config.clone(),
            manifest: self.manifest.clone(),
            index: self.index.clone(),
            config: self.config.clone(),
            layers: self.layers.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            pinned: false,
        }
    }
}

/// What `commit` found.
pub enum Committed {
    Done(Image),
    /// Content the image needs vanished (another process removed a shared image
    /// meanwhile): fetch it again and retry.
    ContentGone(String),
}

impl ImageStore {
    /// Unpack and record `new`; see the module doc.
    pub(crate) fn commit(&self, new: &NewImage) -> Result<Committed> {
        for layer in &new.layers {
            self.progress_unpacking(&layer.digest);
            self.snapshots
                .ensure(&self.content, &layer.digest, &layer.diff_id)?;
        }
        self.content.sync()?;
        self.snapshots.sync_dir()?;

        let mut locked = self.meta.lock()?;
        let record = new.record();
        if let Some(missing) = self.missing(&record) {
            return Ok(Committed::ContentGone(missing));
        }
        let id = record.id.clone();
        // Tags and digests move to this image; an image left without any is dropped.
        let mut dropped = Vec::new();
        for (other_id, other) in locked.meta.images.iter_mut() {
            if *other_id == id {
                continue;
            }
            let had_names = !other.repo_tags.is_empty() || !other.repo_digests.is_empty();
            other.repo_tags.retain(|t| !record.repo_tags.contains(t));
            other
                .repo_digests
                .retain(|d| !record.repo_digests.contains(d));
            if had_names && other.repo_tags.is_empty() && other.repo_digests.is_empty() {
                dropped.push(other_id.clone());
            }
        }
        // Images that never had a name (an untagged import) stay until removed by id.
        let dropped: Vec<ImageRecord> = dropped
            .into_iter()
            .filter_map(|d| locked.meta.images.remove(&d))
            .collect();
        let merged = match locked.meta.images.get(&id) {
            Some(existing) if self.missing(existing).is_none() => {
                let mut m = existing.clone();
                for t in &record.repo_tags {
                    if !m.repo_tags.contains(t) {
                        m.repo_tags.push(t.clone());
                    }
                }
                for d in &record.repo_digests {
                    if !m.repo_digests.contains(d) {
                        m.repo_digests.push(d.clone());
                    }
                }
                m
            }
            _ => record.clone(),
        };
        let image = merged.image();
        locked.meta.images.insert(id.clone(), merged);
        self.meta.save(&locked)?;
        // The new content no image kept (an image of this id already had its own) and the
        // content of dropped images goes.
        let mut blobs: BTreeSet<String> = record.blobs().into_iter().collect();
        let mut snaps: BTreeSet<String> = record.snapshots().into_iter().collect();
        for d in &dropped {
            tracing::info!(image = %d.id, "image lost its last name to a newer one; removed");
            blobs.extend(d.blobs());
            snaps.extend(d.snapshots());
        }
        self.collect(&locked, blobs, snaps)?;
        Ok(Committed::Done(image))
    }

    /// The first blob or unpacked layer of `record` that is not there.
    fn missing(&self, record: &ImageRecord) -> Option<String> {
        if let Some(b) = record.blobs().into_iter().find(|b| !self.content.exists(b)) {
            return Some(format!("blob {b}"));
        }
        record
            .snapshots()
            .into_iter()
            .find(|s| !self.snapshots.exists(s))
            .map(|s| format!("unpacked layer {s}"))
    }

    /// Delete those of `blobs` and `snaps` that no image or lease uses (the lock held).
    pub(crate) fn collect(
        &self,
        locked: &Locked,
        blobs: BTreeSet<String>,
        snaps: BTreeSet<String>,
    ) -> Result<()> {
        let (used_blobs, used_snaps) = self.meta.in_use(locked)?;
        for b in blobs.difference(&used_blobs) {
            tracing::debug!(blob = %b, "removing an unused blob");
            self.content.delete(b)?;
        }
        for s in snaps.difference(&used_snaps) {
            tracing::debug!(layer = %s, "removing an unused unpacked layer");
            self.snapshots.remove(s)?;
        }
        Ok(())
    }
}

/// The references an import or pull gives an image: tags for names with a tag, and
/// "name@digest" for each name when the manifest digest is meaningful.
pub fn names(refs: &[Reference], digest: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for r in refs {
        if let Some(tag) = &r.tag {
            let t = format!("{}:{tag}", r.name());
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        if let Some(d) = r.digest.as_deref().or(digest) {
            let d = r.with_digest(d);
            if !digests.contains(&d) {
                digests.push(d);
            }
        }
    }
    (tags, digests)
}
