//! The image records (`images.json`) and leases (`leases/<holder>.json`) of a store.
//!
//! Every change happens under an exclusive flock on `<root>/lock`, so the `minik image` CLI
//! and a running server can share a store: read, change, write a temporary file, fsync,
//! rename. Readers need no lock: a rename is atomic, they see the old or the new file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::content::temp_name;
use super::snapshots::sync_dir;
use crate::types::{Error, Image, Result};

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The (compressed) blob's digest.
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// The uncompressed tar's digest: the unpacked layer's name under snapshots/.
    pub diff_id: String,
}

/// An image the store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// "sha256:<config digest>".
    pub id: String,
    /// The image manifest's digest (synthesized for docker-archive imports).
    pub manifest: String,
    /// The index (manifest list) a pull resolved the tag to, also kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    pub config: String,
    pub layers: Vec<LayerRecord>,
    #[serde(default)]
    pub repo_tags: Vec<String>,
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Never removed by the kubelet's image garbage collection (containerd's
    /// io.cri-containerd.pinned label; k3s pins the air-gap images it imports).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

impl ImageRecord {
    pub fn image(&self) -> Image {
        Image {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            size: self.layers.iter().map(|l| l.size).sum(),
        }
    }

    /// Every blob the image needs.
    pub fn blobs(&self) -> Vec<String> {
        let mut b = vec![self.manifest.clone(), self.config.clone()];
        b.extend(self.index.clone());
        b.extend(self.layers.iter().map(|l| l.digest.clone()));
        b
    }

    /// Every unpacked layer (diff id) the image needs.
    pub fn snapshots(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}

/// All records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// By image id.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
}

/// Content someone (a container) still uses although its image may be gone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lease {
    pub image: String,
    pub blobs: Vec<String>,
    pub snapshots: Vec<String>,
}

/// Where the records live.
#[derive(Debug, Clone)]
pub struct MetaStore {
    root: PathBuf,
    file: PathBuf,
    leases: PathBuf,
}

/// Held while the store is being changed.
pub struct Locked {
    _lock: Flock<File>,
    pub meta: Meta,
}

impl MetaStore {
    pub fn open(root: &Path) -> Result<MetaStore> {
        let leases = root.join("leases");
        fs::create_dir_all(&leases).map_err(Error::io(format!("creating {}", leases.display())))?;
        Ok(MetaStore {
            root: root.to_path_buf(),
            file: root.join("images.json"),
            leases,
        })
    }

    /// The records as last written (no lock).
    pub fn load(&self) -> Result<Meta> {
        match fs::read(&self.file) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Failed(format!("{} is damaged: {e}", self.file.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(Error::io(format!("reading {}", self.file.display()))(e)),
        }
    }

    /// Take the store's lock (waiting for other processes) and read the records.
    pub fn lock(&self) -> Result<Locked> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            Error::io(format!("locking {}", path.display()))(io::Error::from(errno))
        })?;
        let meta = self.load()?;
        Ok(Locked { _lock: lock, meta })
    }

    /// Write the records (the lock held): temp file, fsync, rename, fsync the directory.
    pub fn save(&self, locked: &Locked) -> Result<()> {
        let tmp = self.root.join(format!(".{}", temp_name("images.json")));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut f, &locked.meta)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &self.file)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", self.file.display()))(e));
        }
        sync_dir(&self.root)
    }

    fn lease_path(&self, holder: &str) -> Result<PathBuf> {
        let ok = !holder.is_empty()
            && holder.len() <= 200
            && holder
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !holder.starts_with('.');
        if !ok {
            return Err(Error::Invalid(format!(
                "lease holder {holder:?}: use letters, digits, '-', '_' and '.'"
            )));
        }
        Ok(self.leases.join(format!("{holder}.json")))
    }

    /// Record a lease (the lock held).
    pub fn put_lease(&self, _locked: &Locked, holder: &str, lease: &Lease) -> Result<()> {
        let path = self.lease_path(holder)?;
        let tmp = self.leases.join(format!(".{}", temp_name("lease")));
        let data = serde_json::to_vec(lease).map_err(|e| Error::Failed(e.to_string()))?;
        fs::write(&tmp, data)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(Error::io(format!("writing {}", path.display())))
    }

    /// Drop a lease (the lock held), returning it when there was one.
    pub fn take_lease(&self, _locked: &Locked, holder: &str) -> Result<Option<Lease>> {
        let path = self.lease_path(holder)?;
        let lease = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
        };
        fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
        Ok(lease)
    }

    /// The images leases were taken on (no lock: a lease file is written whole).
    pub fn leased_images(&self) -> Result<BTreeSet<String>> {
        let rd = fs::read_dir(&self.leases).map_err(Error::io("listing leases"))?;
        Ok(rd
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Lease>(&b).ok())
            .map(|l| l.image)
            .collect())
    }

    /// Blobs and unpacked layers that images or leases still use (the lock held).
    pub fn in_use(&self, locked: &Locked) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
        let mut blobs = BTreeSet::new();
        let mut snaps = BTreeSet::new();
        for r in locked.meta.images.values() {
            blobs.extend(r.blobs());
            snaps.extend(r.snapshots());
        }
        let rd = fs::read_dir(&self.leases).map_err(Error::io("listing leases"))?;
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let lease: Lease = match fs::read(e.path()).map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(l)) => l,
                _ => continue,
            };
            blobs.extend(lease.blobs);
            snaps.extend(lease.snapshots);
        }
        Ok((blobs, snaps))
    }
}
