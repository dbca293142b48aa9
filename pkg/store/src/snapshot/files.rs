//! The files a snapshot carries: collected from a directory, written back under another one
//! (through temporary files renamed into place), and the temporary-file helper both use.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// A file carried by a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Relative to the directory it was collected from, `/`-separated, without `..`.
    pub path: String,
    /// Permission bits (e.g. 0o600).
    pub mode: u32,
    pub content: Vec<u8>,
}

/// The regular files under `base` named by `roots` (files, or directories walked whole), in
/// path order; missing roots are skipped.
pub fn collect_files(base: &Path, roots: &[&str]) -> Result<Vec<SnapshotFile>> {
    let mut out = Vec::new();
    for root in roots {
        check_relative(root)?;
        collect(base, &base.join(root), &mut out)?;
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

/// Write `files` under `base`, each through a temporary file renamed into place, with its
/// mode; missing directories are made 0700.
pub fn write_files(base: &Path, files: &[SnapshotFile]) -> Result<()> {
    for f in files {
        check_relative(&f.path)?;
        let path = base.join(&f.path);
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("creating directory {}", dir.display()), e))?;
        }
        let temp = TempFile::new(sibling(&path, true, ".restore")?);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp.0)
            .map_err(|e| Error::io(format!("creating {}", temp.0.display()), e))?;
        file.write_all(&f.content)
            .map_err(|e| Error::io(format!("writing {}", temp.0.display()), e))?;
        fs::set_permissions(&temp.0, fs::Permissions::from_mode(f.mode & 0o7777))
            .map_err(|e| Error::io(format!("setting the mode of {}", temp.0.display()), e))?;
        temp.persist(&path)?;
    }
    Ok(())
}

fn collect(base: &Path, path: &Path, out: &mut Vec<SnapshotFile>) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    if meta.is_dir() {
        let entries = fs::read_dir(path)
            .map_err(|e| Error::io(format!("reading directory {}", path.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("reading directory {}", path.display()), e))?;
            collect(base, &entry.path(), out)?;
        }
    } else if meta.is_file() {
        let rel = path
            .strip_prefix(base)
            .ok()
            .and_then(Path::to_str)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{}: not a UTF-8 path", path.display()))
            })?;
        let mut content = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut content))
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        out.push(SnapshotFile {
            path: rel.to_string(),
            mode: meta.permissions().mode() & 0o7777,
            content,
        });
    }
    Ok(())
}

/// A path of a snapshot file must stay inside the directory it is written to.
pub(super) fn check_relative(path: &str) -> Result<()> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "snapshot file path {path:?} is not a plain relative path"
        )))
    }
}

/// `path` with `suffix` added to its file name, and a dot before it when `hidden`.
pub(super) fn sibling(path: &Path, hidden: bool, suffix: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::InvalidArgument(format!("{}: not a file name", path.display())))?;
    let dot = if hidden { "." } else { "" };
    Ok(path.with_file_name(format!("{dot}{name}{suffix}")))
}

pub(super) fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let copy = || -> std::io::Result<()> {
        let mut src = File::open(from)?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.sync_all()
    };
    copy().map_err(|e| Error::io(format!("copying {} to {}", from.display(), to.display()), e))
}

/// A temporary file removed unless persisted (renamed over its target, durably).
pub(super) struct TempFile(pub(super) PathBuf);

impl TempFile {
    /// Claim `path`, removing what a crashed run may have left there.
    pub(super) fn new(path: PathBuf) -> Self {
        let _ = fs::remove_file(&path);
        TempFile(path)
    }

    pub(super) fn persist(self, to: &Path) -> Result<()> {
        let sync = |p: &Path| File::open(p).and_then(|f| f.sync_all());
        sync(&self.0).map_err(|e| Error::io(format!("syncing {}", self.0.display()), e))?;
        fs::rename(&self.0, to).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", self.0.display(), to.display()),
                e,
            )
        })?;
        if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync(dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
