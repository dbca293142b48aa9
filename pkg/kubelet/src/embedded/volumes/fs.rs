//! File system work for volumes: tmpfs mounts (emptyDir medium Memory, secret and projected
//! volumes), finding and undoing every mount under a pod's directory, hostPath type
//! checks, and fsGroup ownership (kubelet's SetVolumeOwnership).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Mount points at or under `dir`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether another file system (a tmpfs, say) is mounted at `dir`: its device differs from
/// its parent's. A stat of two paths, where reading mountinfo costs time in the number of
/// mounts on the host (every container adds some).
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(here), Some(Ok(parent))) = (fs::metadata(dir), dir.parent().map(fs::metadata)) else {
        return false;
    };
    here.dev() != parent.dev()
}

/// A tmpfs at `dir` (made if missing), `size` bytes at most; nothing if one is there.
pub fn mount_tmpfs(dir: &Path, size: Option<u64>) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let options = size.map(|s| format!("size={s}"));
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        options.as_deref(),
    )
    .map_err(io::Error::from)
}

/// Unmount everything under `dir` (deepest first, lazily if busy).
pub fn unmount_all(dir: &Path) -> io::Result<()> {
    for m in mounts_under(dir) {
        if let Err(e) = nix::mount::umount2(&m, MntFlags::empty()) {
            tracing::debug!(mount = %m.display(), error = %e, "unmounting lazily");
            nix::mount::umount2(&m, MntFlags::MNT_DETACH).map_err(io::Error::from)?;
        }
    }
    Ok(())
}

/// Check (and for the *OrCreate types, make) what a hostPath volume names; the error is
/// the kubelet's message.
pub fn host_path(path: &Path, kind: Option<&str>) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {shown} is not a {what}"
        ))
    };
    match kind.unwrap_or_default() {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("directory"),
            Err(_) => {
                fs::create_dir_all(path).map_err(|e| format!("creating {shown}: {e}"))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())
            }
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("directory"),
            Err(_) => Err(format!(
                "hostPath type check failed: {shown} is not a directory"
            )),
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("file"),
            Err(_) => {
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("creating {shown}: {e}"))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o644))
                    .map_err(|e| e.to_string())
            }
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("block device"),
        },
        other => Err(format!("invalid hostPath type {other:?}")),
    }
}

const RW: u32 = 0o660;
const RO: u32 = 0o440;
const EXEC: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Whether the volume root already has the group and bits fsGroup gives it.
fn root_matches(dir: &Path, gid: u32, read_only: bool) -> bool {
    let Ok(m) = fs::metadata(dir) else {
        return false;
    };
    let want = if read_only { RO } else { RW } | EXEC | SETGID;
    m.gid() == gid && m.mode() & want == want
}

/// Give `dir` and everything in it group `gid`: group read (and write unless `read_only`)
/// on files, plus setgid and search on directories; symlinks only change group.
/// `on_root_mismatch` skips the walk when the root already matches.
pub fn set_ownership(
    dir: &Path,
    gid: u32,
    read_only: bool,
    on_root_mismatch: bool,
) -> io::Result<()> {
    if on_root_mismatch && root_matches(dir, gid, read_only) {
        return Ok(());
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        std::os::unix::fs::lchown(&path, None, Some(gid))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mask = if read_only { RO } else { RW };
        if meta.is_dir() {
            mask |= SETGID | EXEC;
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
        fs::set_permissions(
            &path,
            fs::Permissions::from_mode((meta.mode() & 0o7777) | mask),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sub = d.join("made");
        assert!(host_path(&sub, Some("Directory")).is_err());
        host_path(&sub, Some("DirectoryOrCreate")).unwrap();
        assert!(sub.is_dir());
        host_path(&sub, Some("Directory")).unwrap();
        let file = d.join("f");
        assert_eq!(
            host_path(&file, Some("File")).unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a file",
                file.display()
            )
        );
        host_path(&file, Some("FileOrCreate")).unwrap();
        assert!(file.is_file());
        assert!(host_path(&sub, Some("File")).is_err());
        assert!(host_path(&file, Some("Socket")).is_err());
        assert!(host_path(&d.join("nowhere/x"), Some("FileOrCreate")).is_err());
        host_path(&d.join("anything"), None).unwrap();
    }

    #[test]
    fn fs_group_owns_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/f"), "x").unwrap();
        fs::set_permissions(d.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        set_ownership(d, 4321, false, false).unwrap();
        let f = fs::metadata(d.join("sub/f")).unwrap();
        assert_eq!((f.gid(), f.mode() & 0o7777), (4321, 0o660));
        let s = fs::metadata(d.join("sub")).unwrap();
        assert_eq!(s.gid(), 4321);
        assert_eq!(s.mode() & SETGID, SETGID);
        assert!(root_matches(d, 4321, false));
        assert!(!root_matches(d, 1, false));
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
