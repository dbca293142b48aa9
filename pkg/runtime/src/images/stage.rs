//! Reading an image tarball once: every regular file goes to a staging directory in
//! `ingest/`, hashed on the way, so an OCI layout or docker archive can then be walked in any
//! order and its blobs moved into the content store without a second copy.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::content::{Content, Hasher, TempDir, check_digest};
use super::unpack::{clean, decompress};
use crate::types::{Error, Result};

/// One staged file.
#[derive(Debug, Clone)]
pub struct StagedFile {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
}

/// The files of a tarball, by their clean path inside it ("index.json", "blobs/sha256/..").
pub struct Staged {
    pub tarball: PathBuf,
    _dir: TempDir,
    files: HashMap<String, StagedFile>,
}

/// Read `tarball` (plain, gzip or zstd) into staging.
pub fn stage(content: &Content, tarball: &Path) -> Result<Staged> {
    let shown = tarball.display().to_string();
    let file = File::open(tarball).map_err(Error::io(format!("opening {shown}")))?;
    let reader = decompress(file).map_err(Error::io(format!("reading {shown}")))?;
    let dir = content.staging_dir("import")?;
    let mut files = HashMap::new();
    let mut archive = tar::Archive::new(reader);
    let bad = |e: io::Error| Error::Invalid(format!("{shown} is not a readable tar archive: {e}"));
    for (n, entry) in archive.entries().map_err(bad)?.enumerate() {
        let mut entry = entry.map_err(bad)?;
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let name = clean(&entry.path().map_err(bad)?)
            .to_string_lossy()
            .into_owned();
        let path = dir.path().join(n.to_string());
        let (digest, size) = copy_hashed(&mut entry, &path)
            .map_err(Error::io(format!("reading {name} of {shown}")))?;
        files.insert(name, StagedFile { path, digest, size });
    }
    if files.is_empty() {
        return Err(Error::Invalid(format!("{shown} holds no files")));
    }
    Ok(Staged {
        tarball: tarball.to_path_buf(),
        _dir: dir,
        files,
    })
}

fn copy_hashed(from: &mut impl Read, to: &Path) -> io::Result<(String, u64)> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(to)?);
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    let f = out.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok((hasher.digest(), size))
}

impl Staged {
    pub fn has(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// A file by its path in the tarball.
    pub fn file(&self, name: &str) -> Result<&StagedFile> {
        let clean_name = clean(Path::new(name)).to_string_lossy().into_owned();
        self.files
            .get(&clean_name)
            .ok_or_else(|| Error::Invalid(format!("{} has no file {name}", self.tarball.display())))
    }

    /// Any file with this content.
    pub fn by_digest(&self, digest: &str) -> Option<&StagedFile> {
        self.files.values().find(|f| f.digest == digest)
    }

    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let f = self.file(name)?;
        std::fs::read(&f.path).map_err(Error::io(format!("reading staged {name}")))
    }

    /// An OCI layout blob by digest, checked against it.
    pub fn blob(&self, digest: &str) -> Result<&StagedFile> {
        let hex = check_digest(digest)?;
        let f = self.file(&format!("blobs/sha256/{hex}"))?;
        if f.digest != digest {
            return Err(Error::Invalid(format!(
                "{}: blob {digest} is corrupt (its content is {})",
                self.tarball.display(),
                f.digest
            )));
        }
        Ok(f)
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let f = self.blob(digest)?;
        std::fs::read(&f.path).map_err(Error::io(format!("reading staged blob {digest}")))
    }

    /// Put a staged file into the content store (unless it is there already). `false`
    /// when it was moved into the store earlier (another image of the tarball shares it) and
    /// removed since by another process: the caller stages the tarball again.
    pub fn commit(&self, content: &Content, f: &StagedFile) -> Result<bool> {
        if content.exists(&f.digest) {
            return Ok(true);
        }
        if f.path.exists() {
            content.adopt(&f.path, &f.digest)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The first bytes of a staged file (to tell gzip from plain tar).
    pub fn head(&self, f: &StagedFile) -> Result<Vec<u8>> {
        let mut buf = [0u8; 4];
        let mut file = File::open(&f.path).map_err(Error::io("reading a staged file"))?;
        let n = file
            .read(&mut buf)
            .map_err(Error::io("reading a staged file"))?;
        Ok(buf[..n].to_vec())
    }
}
