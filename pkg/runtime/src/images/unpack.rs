//! Unpacking one layer (a tar, plain, gzip or zstd) into its own directory, ready to be an
//! overlayfs lower layer, as containerd's overlayfs snapshotter does: OCI whiteouts
//! `.wh.<name>` become overlayfs whiteouts (a 0:0 character device), `.wh..wh..opq` becomes
//! the `trusted.overlay.opaque=y` xattr on its directory; ownership, modes, xattrs, mtimes,
//! symlinks, hard links and device nodes are kept. Paths (and symlinks met on the way to a
//! parent directory) resolve inside the layer directory: nothing is written outside it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use crate::types::{Error, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// Symlinks followed while resolving one path, as Linux allows (MAXSYMLINKS is 40).
const MAX_SYMLINKS: usize = 40;

/// A reader of a layer blob that undoes its compression (gzip, zstd, or none), told by the
/// magic bytes rather than by the media type, which registries sometimes get wrong.
pub fn decompress(file: File) -> io::Result<Box<dyn Read + Send>> {
    let mut r = BufReader::with_capacity(1 << 20, file);
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ZstdReader::Between(r))
    } else {
        Box::new(r)
    })
}

/// zstd with any number of frames (ruzstd decodes one frame at a time).
enum ZstdReader<R: BufRead> {
    Between(R),
    Frame(Box<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>),
    Done,
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match std::mem::replace(self, ZstdReader::Done) {
                ZstdReader::Done => return Ok(0),
                ZstdReader::Between(mut src) => {
                    if src.fill_buf()?.is_empty() {
                        return Ok(0);
                    }
                    let d = ruzstd::decoding::StreamingDecoder::new(src)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                    *self = ZstdReader::Frame(Box::new(d));
                }
                ZstdReader::Frame(mut d) => {
                    let n = d.read(buf)?;
                    if n > 0 || buf.is_empty() {
                        *self = ZstdReader::Frame(d);
                        return Ok(n);
                    }
                    *self = ZstdReader::Between(d.into_inner());
                }
            }
        }
    }
}

/// Unpack a layer's (uncompressed) tar stream into `root`, an existing directory.
pub fn unpack(tar_stream: impl Read, root: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(Error::io("reading the layer tar"))?;
    for entry in entries {
        let mut entry = entry.map_err(Error::io("reading the layer tar"))?;
        let name = entry.path_bytes().into_owned();
        apply_entry(root, &mut entry, &mut dirs).map_err(|e| {
            Error::Failed(format!(
                "unpacking {:?}: {e}",
                String::from_utf8_lossy(&name).as_ref()
            ))
        })?;
    }
    // Directory times last: writing their children changed them.
    for (dir, mtime) in dirs.iter().rev() {
        set_mtime(dir, *mtime).map_err(Error::io(format!("setting mtime of {}", dir.display())))?;
    }
    Ok(())
}

fn apply_entry<R: Read>(
    root: &Path,
    entry: &mut tar::Entry<R>,
    dirs: &mut Vec<(PathBuf, u64)>,
) -> io::Result<()> {
    let kind = entry.header().entry_type();
    if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
        return Ok(());
    }
    let rel = clean(&entry.path()?);
    let header = entry.header();
    let (uid, gid) = (header.uid()? as u32, header.gid()? as u32);
    let mode = header.mode()? & 0o7777;
    let mtime = header.mtime().unwrap_or(0);
    let Some(file_name) = rel.file_name().map(|n| n.to_os_string()) else {
        // "./": the layer's root directory itself.
        if kind.is_dir() {
            set_owner_mode(root, uid, gid, mode)?;
            dirs.push((root.to_path_buf(), mtime));
        }
        return Ok(());
    };
    let parent = resolve(root, rel.parent().unwrap_or(Path::new("")), true)?;
    let name = file_name.to_string_lossy();

    if name == WHITEOUT_OPAQUE {
        return xattr::set(&parent, "trusted.overlay.opaque", b"y");
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        // aufs bookkeeping (.wh..wh.plnk and such): nothing overlayfs needs.
        return Ok(());
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        let target = parent.join(hidden);
        remove_existing(&target, false)?;
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))?;
        std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
        return Ok(());
    }

    let target = parent.join(&file_name);
    remove_existing(&target, kind.is_dir())?;
    match kind {
        EntryType::Directory => {
            if !target.is_dir() {
                fs::DirBuilder::new().mode(0o755).create(&target)?;
            }
            set_owner_mode(&target, uid, gid, mode)?;
            set_xattrs(entry, &target)?;
            dirs.push((target, mtime));
            return Ok(());
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            let mut f = File::create_new(&target)?;
            io::copy(entry, &mut f)?;
        }
        EntryType::Symlink => {
            let link = entry
                .link_name()?
                .ok_or_else(|| io::Error::other("symlink without a target"))?;
            std::os::unix::fs::symlink(&link, &target)?;
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
            set_xattrs(entry, &target)?;
            return set_mtime(&target, mtime);
        }
        EntryType::Link => {
            let link = entry
                .link_name()?
                .ok_or_else(|| io::Error::other("hard link without a target"))?;
            let link = clean(&link);
            let source_dir = resolve(root, link.parent().unwrap_or(Path::new("")), false)?;
            let source = match link.file_name() {
                Some(n) => source_dir.join(n),
                None => return Err(io::Error::other("hard link to the layer root")),
            };
            // The link shares the source's inode, owner, mode and times.
            return fs::hard_link(&source, &target);
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let flag = match kind {
                EntryType::Char => SFlag::S_IFCHR,
                EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            let major = entry.header().device_major()?.unwrap_or(0);
            let minor = entry.header().device_minor()?.unwrap_or(0);
            mknod(
                &target,
                flag,
                Mode::from_bits_truncate(mode),
                makedev(major.into(), minor.into()),
            )?;
        }
        other => {
            tracing::warn!(path = %target.display(), kind = ?other, "skipping a tar entry of an unknown kind");
            return Ok(());
        }
    }
    set_owner_mode(&target, uid, gid, mode)?;
    set_xattrs(entry, &target)?;
    set_mtime(&target, mtime)
}

/// Owner first (chown clears set-id bits and file capabilities), then the mode.
fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// PAX `SCHILY.xattr.*` records (file capabilities, ACLs, ...).
fn set_xattrs<R: Read>(entry: &mut tar::Entry<R>, path: &Path) -> io::Result<()> {
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(());
    };
    for ext in exts {
        let ext = ext?;
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if let Err(e) = xattr::set(path, &name, ext.value_bytes()) {
            tracing::warn!(path = %path.display(), xattr = %name, error = %e, "cannot set an xattr from a layer");
        }
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Make room for a new entry: a directory stays for a directory entry, anything else there
/// goes (a directory replaced by a non-directory goes with its contents).
fn remove_existing(path: &Path, keep_dir: bool) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if keep_dir {
                Ok(())
            } else {
                fs::remove_dir_all(path)
            }
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A tar path made relative and clean: "/a/./b/../c" -> "a/c" ("..", clamped at the root,
/// never leaves it).
pub fn clean(path: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts.iter().collect()
}

/// The real directory for `rel` inside `root`: symlinks on the way are followed as if `root`
/// were "/" (absolute targets and ".." stay inside it). Missing directories are created
/// (mode 0755) when `create` is set.
pub fn resolve(root: &Path, rel: &Path, create: bool) -> io::Result<PathBuf> {
    let mut todo: VecDeque<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    let mut stack: Vec<OsString> = Vec::new();
    let mut followed = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            stack.pop();
            continue;
        }
        let mut here: PathBuf = root.to_path_buf();
        here.extend(&stack);
        here.push(&part);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.is_dir() => stack.push(part),
            Ok(m) if m.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many symlinks resolving {}",
                        rel.display()
                    )));
                }
                let target = fs::read_link(&here)?;
                if target.is_absolute() {
                    stack.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(p) => todo.push_front(p.to_os_string()),
                        Component::ParentDir => todo.push_front(OsString::from("..")),
                        _ => {}
                    }
                }
            }
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    here.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new().mode(0o755).create(&here)?;
                stack.push(part);
            }
            Err(e) => return Err(e),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&stack);
    Ok(out)
}
