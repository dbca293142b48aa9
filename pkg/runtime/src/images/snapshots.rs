//! Unpacked layers: `snapshots/<diff id hex>/` holds one layer's files with overlayfs
//! whiteouts, shared by every image that has the layer. A layer is unpacked into a temporary
//! directory, checked against its diff id (the sha256 of the uncompressed tar), synced and
//! renamed into place without replacing one another process put there first.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::content::{Content, HashingReader, TempDir, check_digest, temp_name};
use super::unpack;
use crate::types::{Error, Result};

#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots> {
        let dir = root.join("snapshots");
        fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        super::content::remove_stale(&dir);
        Ok(Snapshots { dir })
    }

    /// The directory of a layer by its diff id (whether or not it is unpacked).
    pub fn path(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(check_digest(diff_id)?))
    }

    pub fn exists(&self, diff_id: &str) -> bool {
        self.path(diff_id).map(|p| p.is_dir()).unwrap_or(false)
    }

    /// Unpack the layer blob `digest` (in `content`) unless `diff_id` is unpacked already.
    pub fn ensure(&self, content: &Content, digest: &str, diff_id: &str) -> Result<PathBuf> {
        let dest = self.path(diff_id)?;
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = TempDir(self.dir.join(format!(".{}", temp_name("unpack"))));
        fs::create_dir(tmp.path()).map_err(Error::io(format!("creating {}", tmp.0.display())))?;
        let file = content.open_blob(digest)?;
        let reader =
            unpack::decompress(file).map_err(Error::io(format!("reading layer {digest}")))?;
        let mut hashing = HashingReader::new(reader);
        unpack::unpack(&mut hashing, tmp.path())
            .map_err(|e| Error::Failed(format!("layer {digest}: {e}")))?;
        let (got, _) = hashing
            .finish()
            .map_err(Error::io(format!("reading layer {digest}")))?;
        if got != diff_id {
            return Err(Error::Invalid(format!(
                "layer {digest} unpacks to content {got}, but the image config says {diff_id}"
            )));
        }
        syncfs(tmp.path()).map_err(Error::io("syncing an unpacked layer"))?;
        match rename_noreplace(tmp.path(), &dest) {
            Ok(()) => {
                std::mem::forget(tmp);
                tracing::debug!(layer = %digest, %diff_id, "unpacked a layer");
            }
            // Another process (or task) unpacked the same layer meanwhile: keep theirs.
            Err(e) if dest.is_dir() => {
                tracing::debug!(layer = %digest, error = %e, "layer unpacked concurrently");
            }
            Err(e) => return Err(Error::io(format!("moving layer {diff_id} into place"))(e)),
        }
        Ok(dest)
    }

    /// Delete an unpacked layer (gone already is fine). It is renamed away first so a
    /// half-deleted layer is never mistaken for a whole one.
    pub fn remove(&self, diff_id: &str) -> Result<()> {
        let dest = self.path(diff_id)?;
        let doomed = self.dir.join(format!(".{}", temp_name("remove")));
        match fs::rename(&dest, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed)
                .map_err(Error::io(format!("removing layer {}", dest.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing layer {}", dest.display()))(e)),
        }
    }

    /// Make the renames and removals so far durable.
    pub fn sync_dir(&self) -> Result<()> {
        sync_dir(&self.dir)
    }
}

/// fsync a directory (its entries: creations, renames, removals).
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!("syncing {}", dir.display())))
}

/// Flush the filesystem holding `path` (one call instead of an fsync per unpacked file).
fn syncfs(path: &Path) -> io::Result<()> {
    let dir = fs::File::open(path)?;
    // SAFETY: syncfs only reads the descriptor, which stays open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// rename(2) that fails instead of replacing an existing (even empty) directory.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
