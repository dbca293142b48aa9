//! What the kubelet's synchronous reads answer from: the runtime's sandboxes, containers,
//! stats and images as last listed, keyed by the runtime's ids, with the kubelet's ids
//! (pod uid, container id) inside.
//!
//! A relist lists everything, then replaces the cache, except what a call changed while
//! the relist was listing: every change bumps a generation and stamps the entry (or leaves
//! a tombstone for a removal), and a relist keeps entries stamped after it began, so a
//! container just started never vanishes and one just removed never comes back.

use std::collections::{BTreeMap, HashMap};

use minik_cri::proto::PodSandboxConfig;
use minik_runtime::{Container, Image, Sandbox, Stats};

/// A sandbox of ours.
#[derive(Debug, Clone)]
pub(super) struct SandboxEntry {
    pub sandbox: Sandbox,
    /// What it was (or would have been) created with: given again to CreateContainer.
    pub config: PodSandboxConfig,
    /// SANDBOX_READY (not stopped).
    pub ready: bool,
    pub touched: u64,
}

impl SandboxEntry {
    pub(super) fn attempt(&self) -> u32 {
        self.config.metadata.as_ref().map_or(0, |m| m.attempt)
    }
}

/// A container of ours.
#[derive(Debug, Clone)]
pub(super) struct ContainerEntry {
    pub container: Container,
    /// The CRI state last seen (a relist asks the status again when it changes).
    pub cri_state: i32,
    pub touched: u64,
}

/// An image the runtime has.
#[derive(Debug, Clone)]
pub(super) struct ImageEntry {
    pub image: Image,
    pub pinned: bool,
    pub touched: u64,
}

/// The cache (see the module's doc).
#[derive(Debug, Default)]
pub(super) struct Cache {
    generation: u64,
    pub sandboxes: BTreeMap<String, SandboxEntry>,
    pub containers: BTreeMap<String, ContainerEntry>,
    /// Image id -> image.
    pub images: BTreeMap<String, ImageEntry>,
    /// Kubelet container id -> its last stats.
    pub stats: HashMap<String, Stats>,
    /// Runtime ids (sandboxes, containers, images) removed, with the generation.
    gone: HashMap<String, u64>,
}

/// A relist's findings.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub sandboxes: BTreeMap<String, SandboxEntry>,
    pub containers: BTreeMap<String, ContainerEntry>,
    pub images: BTreeMap<String, ImageEntry>,
    pub stats: HashMap<String, Stats>,
}

/// `fresh` with every entry changed since `since` taken from `old` instead, and nothing
/// removed since `since`.
fn merge<E: Clone>(
    old: &BTreeMap<String, E>,
    mut fresh: BTreeMap<String, E>,
    touched: impl Fn(&E) -> u64,
    gone: &HashMap<String, u64>,
    since: u64,
) -> BTreeMap<String, E> {
    fresh.retain(|id, _| gone.get(id).is_none_or(|g| *g <= since));
    for (id, e) in old {
        if touched(e) > since {
            fresh.insert(id.clone(), e.clone());
        }
    }
    fresh
}

impl Cache {
    /// The generation now (a relist notes it before listing).
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Start a change: the generation its entries are stamped with.
    fn bump(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Replace the cache with a relist begun at generation `since`.
    pub(super) fn apply(&mut self, listing: Listing, since: u64) {
        let gone = &self.gone;
        self.sandboxes = merge(
            &self.sandboxes,
            listing.sandboxes,
            |e| e.touched,
            gone,
            since,
        );
        self.containers = merge(
            &self.containers,
            listing.containers,
            |e| e.touched,
            gone,
            since,
        );
        self.images = merge(&self.images, listing.images, |e| e.touched, gone, since);
        self.stats = listing.stats;
        self.gone.retain(|_, g| *g > since);
    }

    pub(super) fn put_sandbox(&mut self, cri_id: &str, mut entry: SandboxEntry) {
        entry.touched = self.bump();
        self.gone.remove(cri_id);
        self.sandboxes.insert(cri_id.to_string(), entry);
    }

    /// Forget a removed sandbox and the containers the runtime removed with it.
    pub(super) fn remove_sandbox(&mut self, cri_id: &str, uid: &str) {
        let generation = self.bump();
        self.sandboxes.remove(cri_id);
        self.gone.insert(cri_id.to_string(), generation);
        let removed: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| c.container.config.sandbox_id == uid)
            .map(|(id, _)| id.clone())
            .collect();
        for id in removed {
            if let Some(c) = self.containers.remove(&id) {
                self.stats.remove(&c.container.config.id);
            }
            self.gone.insert(id, generation);
        }
    }

    pub(super) fn put_container(&mut self, cri_id: &str, mut entry: ContainerEntry) {
        entry.touched = self.bump();
        self.gone.remove(cri_id);
        self.containers.insert(cri_id.to_string(), entry);
    }

    pub(super) fn remove_container(&mut self, cri_id: &str) {
        let generation = self.bump();
        if let Some(c) = self.containers.remove(cri_id) {
            self.stats.remove(&c.container.config.id);
        }
        self.gone.insert(cri_id.to_string(), generation);
    }

    pub(super) fn put_image(&mut self, image: Image, pinned: bool) {
        let touched = self.bump();
        self.gone.remove(&image.id);
        let id = image.id.clone();
        let entry = ImageEntry {
            image,
            pinned,
            touched,
        };
        self.images.insert(id, entry);
    }

    pub(super) fn remove_image(&mut self, id: &str) {
        let generation = self.bump();
        self.images.remove(id);
        self.gone.insert(id.to_string(), generation);
    }

    /// The runtime's id and entry of pod `uid`'s sandbox: a ready one, else the newest.
    pub(super) fn sandbox(&self, uid: &str) -> Option<(&String, &SandboxEntry)> {
        self.sandboxes
            .iter()
            .filter(|(_, e)| e.sandbox.config.id == uid)
            .max_by_key(|(_, e)| (e.ready, e.sandbox.created, e.attempt()))
    }

    /// The runtime's ids of every sandbox of pod `uid`.
    pub(super) fn sandbox_ids(&self, uid: &str) -> Vec<String> {
        self.sandboxes
            .iter()
            .filter(|(_, e)| e.sandbox.config.id == uid)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The runtime's id and entry of the container the kubelet calls `id`.
    pub(super) fn container(&self, id: &str) -> Option<(&String, &ContainerEntry)> {
        self.containers
            .iter()
            .find(|(_, e)| e.container.config.id == id)
    }

    /// The images, as the kubelet knows them.
    pub(super) fn image_list(&self) -> Vec<Image> {
        self.images.values().map(|e| e.image.clone()).collect()
    }
}
