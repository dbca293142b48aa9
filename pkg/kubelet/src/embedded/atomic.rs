//! Files of configMap, secret, downwardAPI and projected volumes, written as kubelet's
//! AtomicWriter writes them: the payload goes into a fresh `..<timestamp>` directory, the
//! `..data` symlink is swapped to it by a rename, and each top-level name is a symlink
//! through `..data`, so a reader sees the old set of files or the new one, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    /// Permission bits (0o644 ...).
    pub mode: u32,
    /// The file's owner, when not root (projected service account tokens).
    pub owner: Option<u32>,
}

/// Relative path -> file.
pub type Payload = BTreeMap<String, File>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A payload path must be relative, without "..", and not start with "..".
fn validate(path: &str) -> io::Result<()> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || path.starts_with("..") {
        return Err(invalid(format!("invalid path {path:?}")));
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(invalid(format!(
            "invalid path {path:?}: must not contain '..' or '.'"
        )));
    }
    Ok(())
}

/// Every regular file under `dir`, relative, with its contents and mode.
fn read_tree(dir: &Path) -> io::Result<BTreeMap<String, (Vec<u8>, u32)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                let data = fs::read(dir.join(&path))?;
                out.insert(
                    path.to_string_lossy().into_owned(),
                    (data, meta.permissions().mode() & 0o7777),
                );
            }
        }
    }
    Ok(out)
}

fn top(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// A new, unique `..<timestamp>` directory in `dir`.
fn timestamped(dir: &Path) -> io::Result<PathBuf> {
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%9f")
        .to_string();
    for n in 0..100 {
        let candidate = dir.join(format!("{stamp}{n}"));
        match fs::create_dir(&candidate) {
            Ok(()) => {
                fs::set_permissions(&candidate, fs::Permissions::from_mode(0o755))?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free timestamped directory in {}",
        dir.display()
    )))
}

/// Write `payload` into `dir` (which must exist); `set_perms` runs on the new data
/// directory before it is published (fsGroup ownership). Returns whether anything changed.
pub fn write(
    dir: &Path,
    payload: &Payload,
    set_perms: &dyn Fn(&Path) -> io::Result<()>,
) -> io::Result<bool> {
    for path in payload.keys() {
        validate(path)?;
    }
    let old = fs::read_link(dir.join(DATA)).ok().map(|t| dir.join(t));
    let old_tree = match &old {
        Some(old) if old.is_dir() => Some(read_tree(old)?),
        _ => None,
    };
    let wanted: BTreeMap<String, (Vec<u8>, u32)> = payload
        .iter()
        .map(|(p, f)| (p.clone(), (f.data.clone(), f.mode & 0o7777)))
        .collect();
    if old_tree.as_ref() == Some(&wanted) {
        return Ok(false);
    }
    let fresh = timestamped(dir)?;
    for (path, file) in payload {
        let target = fresh.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&target, &file.data)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode & 0o7777))?;
        if let Some(uid) = file.owner {
            std::os::unix::fs::lchown(&target, Some(uid), None)?;
        }
    }
    set_perms(&fresh)?;
    let name = fresh
        .file_name()
        .ok_or_else(|| io::Error::other("timestamped directory without a name"))?;
    let tmp = dir.join(DATA_TMP);
    let _ = fs::remove_file(&tmp);
    symlink(name, &tmp)?;
    fs::rename(&tmp, dir.join(DATA))?;
    let visible: BTreeSet<&str> = payload.keys().map(|p| top(p)).collect();
    for name in &visible {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    if let Some(old_tree) = &old_tree {
        let gone: BTreeSet<&str> = old_tree
            .keys()
            .map(|p| top(p))
            .filter(|t| !visible.contains(t))
            .collect();
        for name in gone {
            let _ = fs::remove_file(dir.join(name));
        }
    }
    if let Some(old) = old.filter(|o| *o != fresh) {
        let _ = fs::remove_dir_all(&old);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> File {
        File {
            data: data.as_bytes().to_vec(),
            mode,
            owner: None,
        }
    }

    #[test]
    fn payloads_are_swapped_in_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut payload = Payload::new();
        payload.insert("a".into(), file("one", 0o644));
        payload.insert("sub/b".into(), file("two", 0o400));
        assert!(write(d, &payload, &|_| Ok(())).unwrap());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "one");
        assert_eq!(fs::read_to_string(d.join("sub/b")).unwrap(), "two");
        assert_eq!(fs::read_link(d.join("a")).unwrap(), Path::new("..data/a"));
        let data = fs::read_link(d.join("..data")).unwrap();
        assert!(data.to_string_lossy().starts_with(".."));
        let mode = fs::metadata(d.join("sub/b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        // The same payload changes nothing.
        assert!(!write(d, &payload, &|_| Ok(())).unwrap());
        assert_eq!(fs::read_link(d.join("..data")).unwrap(), data);
        // A new one replaces the old directory, and names no longer there go.
        payload.remove("sub/b");
        payload.insert("a".into(), file("uno", 0o644));
        assert!(write(d, &payload, &|_| Ok(())).unwrap());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "uno");
        assert!(fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(&data).exists());
        let entries: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries.len(), 3, "{entries:?}");
    }

    #[test]
    fn paths_may_not_escape() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../b", "..data", "./a"] {
            let mut payload = Payload::new();
            payload.insert(bad.into(), file("x", 0o644));
            assert!(write(dir.path(), &payload, &|_| Ok(())).is_err(), "{bad}");
        }
    }
}
