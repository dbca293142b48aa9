//! The content store: blobs (manifests, configs, compressed layers) under
//! `blobs/sha256/<hex>`, each written to `ingest/` first, its sha256 checked against the digest
//! it claims, fsync'd and renamed into place, so a blob that exists is whole and correct.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ring::digest::{Context, SHA256};

use crate::types::{Error, Result};

/// Check that `digest` is "sha256:<64 lowercase hex>", the only algorithm the store keeps.
pub fn check_digest(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::Invalid(format!("digest {digest:?} is not sha256:<hex>")))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::Invalid(format!(
            "digest {digest:?} is not sha256 with 64 hex digits"
        )));
    }
    Ok(hex)
}

/// A running sha256.
#[derive(Clone)]
pub struct Hasher(Context);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(Context::new(&SHA256))
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data)
    }
    /// "sha256:<hex>".
    pub fn digest(self) -> String {
        let d = self.0.finish();
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in d.as_ref() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// "sha256:<hex>" of some bytes.
pub fn sha256(data: &[u8]) -> String {
    let mut h = Hasher::new();
    h.update(data);
    h.digest()
}

/// A reader that hashes (and counts) what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
            count: 0,
        }
    }
    /// Read the rest, then give the digest and byte count of everything read.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.digest(), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Remove what dead processes left in `dir`: entries named by `temp_name` (optionally after
/// a dot) whose process is gone (a crash mid-import or mid-unpack).
pub fn remove_stale(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .trim_start_matches('.')
            .split('-')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = e.path();
        tracing::info!(path = %path.display(), "removing what a dead process left");
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

/// The blobs of a store.
#[derive(Debug, Clone)]
pub struct Content {
    blobs: PathBuf,
    ingest: PathBuf,
}

/// A unique name for temporary files of this process.
pub fn temp_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Content {
    pub fn open(root: &Path) -> Result<Content> {
        let c = Content {
            blobs: root.join("blobs").join("sha256"),
            ingest: root.join("ingest"),
        };
        for d in [&c.blobs, &c.ingest] {
            fs::create_dir_all(d).map_err(Error::io(format!("creating {}", d.display())))?;
        }
        remove_stale(&c.ingest);
        Ok(c)
    }

    /// Where a blob lives (whether or not it is there).
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs.join(check_digest(digest)?))
    }

    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// The blob's size, when it is there.
    #[cfg(test)]
    pub fn size(&self, digest: &str) -> Option<u64> {
        fs::metadata(self.path(digest).ok()?).ok().map(|m| m.len())
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.path(digest)?;
        fs::read(&p).map_err(Error::io(format!("reading blob {digest}")))
    }

    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let p = self.path(digest)?;
        File::open(&p).map_err(Error::io(format!("opening blob {digest}")))
    }

    /// Store bytes whose digest must be `expected` (when given); returns the digest.
    pub fn write(&self, data: &[u8], expected: Option<&str>) -> Result<String> {
        let mut w = self.writer()?;
        w.write_all(data).map_err(Error::io("writing a blob"))?;
        w.commit(expected).map(|(d, _)| d)
    }

    /// A writer for a new blob, in ingest/ until committed.
    pub fn writer(&self) -> Result<BlobWriter> {
        let path = self.ingest.join(temp_name("blob"));
        let file =
            File::create(&path).map_err(Error::io(format!("creating {}", path.display())))?;
        Ok(BlobWriter {
            content: self.clone(),
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher: Hasher::new(),
            size: 0,
        })
    }

    /// Delete a blob (gone already is fine).
    pub fn delete(&self, digest: &str) -> Result<()> {
        let p = self.path(digest)?;
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing blob {digest}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Move a file already hashed (its digest `digest`) and synced into the store.
    pub fn adopt(&self, file: &Path, digest: &str) -> Result<()> {
        let dest = self.path(digest)?;
        if dest.is_file() {
            return Ok(());
        }
        fs::rename(file, &dest).map_err(Error::io(format!("moving blob {digest} into place")))
    }

    /// Make the blobs written so far durable (their directory entries).
    pub fn sync(&self) -> Result<()> {
        super::snapshots::sync_dir(&self.blobs)
    }

    /// A fresh directory in ingest/ for staging, removed when the guard drops.
    pub fn staging_dir(&self, prefix: &str) -> Result<TempDir> {
        let path = self.ingest.join(temp_name(prefix));
        fs::create_dir(&path).map_err(Error::io(format!("creating {}", path.display())))?;
        Ok(TempDir(path))
    }
}

/// A blob being written: hashed as it goes, verified and renamed into place by `commit`,
/// removed if dropped uncommitted.
pub struct BlobWriter {
    content: Content,
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Hasher,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter {
    /// Check the digest (against `expected` when given), fsync, and move the blob into
    /// place. Returns its digest and size.
    pub fn commit(mut self, expected: Option<&str>) -> Result<(String, u64)> {
        let digest = std::mem::replace(&mut self.hasher, Hasher::new()).digest();
        if let Some(want) = expected
            && want != digest
        {
            return Err(Error::Invalid(format!(
                "content does not match its digest: expected {want}, got {digest}"
            )));
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::Failed("blob committed twice".into()))?;
        let file = file
            .into_inner()
            .map_err(|e| Error::io("flushing a blob")(e.into_error()))?;
        file.sync_all().map_err(Error::io("syncing a blob"))?;
        drop(file);
        let dest = self.content.path(&digest)?;
        if dest.is_file() {
            // Content-addressed: the blob already there is the same bytes.
            let _ = fs::remove_file(&self.path);
        } else {
            fs::rename(&self.path, &dest)
                .map_err(Error::io(format!("moving blob {digest} into place")))?;
        }
        Ok((digest, self.size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A directory removed (with its contents) when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let c = Content::open(dir.path()).unwrap();
        let d = c.write(b"hello", None).unwrap();
        assert_eq!(
            d,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(c.read(&d).unwrap(), b"hello");
        assert_eq!(c.size(&d), Some(5));
        // Again: same digest, still there.
        assert_eq!(c.write(b"hello", Some(&d)).unwrap(), d);
        // Wrong content for a digest is refused and leaves nothing behind.
        let err = c.write(b"other", Some(&d)).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        c.delete(&d).unwrap();
        assert!(!c.exists(&d));
        c.delete(&d).unwrap();
    }

    #[test]
    fn digests_are_checked() {
        assert!(check_digest("sha256:abc").is_err());
        assert!(check_digest("sha512:00").is_err());
        assert!(check_digest(&sha256(b"")).is_ok());
        let upper = sha256(b"").to_uppercase().replace("SHA256", "sha256");
        assert!(check_digest(&upper).is_err());
    }
}
