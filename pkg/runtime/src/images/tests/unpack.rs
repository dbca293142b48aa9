//! Unpacking layers: whiteouts, opaque directories, ownership, links, devices, compression,
//! and paths that try to leave the layer; checked on disk and through a real overlay mount.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::super::content::Content;
use super::super::snapshots::Snapshots;
use super::super::unpack::{decompress, unpack};
use super::{LayerTar, gzip, zstd};
use crate::types::Error;

fn unpack_bytes(data: &[u8], dir: &Path) -> Result<(), Error> {
    unpack(data, dir)
}

/// An overlay mount, unmounted when dropped (also when a test fails).
struct Overlay(std::path::PathBuf);

impl Overlay {
    fn mount(lowers: &[&Path], at: &Path) -> Overlay {
        // overlayfs lists the top layer first.
        let lowerdir: Vec<String> = lowers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        nix::mount::mount(
            Some("overlay"),
            at,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(format!("lowerdir={}", lowerdir.join(":")).as_str()),
        )
        .expect("mount overlay (tests run as root)");
        Overlay(at.to_path_buf())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_files_in_an_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper, merged) = (
        tmp.path().join("l"),
        tmp.path().join("u"),
        tmp.path().join("m"),
    );
    for d in [&lower, &upper, &merged] {
        fs::create_dir(d).unwrap();
    }
    let base = LayerTar::new()
        .dir("etc", 0o755)
        .file("etc/gone", b"x")
        .file("etc/kept", b"k")
        .dir("opaque", 0o755)
        .file("opaque/old", b"o")
        .finish();
    unpack_bytes(&base, &lower).unwrap();
    let top = LayerTar::new()
        .dir("etc", 0o755)
        .file("etc/.wh.gone", b"")
        .dir("opaque", 0o755)
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/new", b"n")
        // A whiteout whose directory the tar never listed.
        .file("var/.wh.nothing", b"")
        .finish();
    unpack_bytes(&top, &upper).unwrap();

    let wh = fs::symlink_metadata(upper.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(upper.join("opaque"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!upper.join("opaque/.wh..wh..opq").exists());
    assert!(
        fs::symlink_metadata(upper.join("var/nothing"))
            .unwrap()
            .file_type()
            .is_char_device()
    );

    let _m = Overlay::mount(&[&lower, &upper], &merged);
    assert!(!merged.join("etc/gone").exists());
    assert_eq!(fs::read(merged.join("etc/kept")).unwrap(), b"k");
    assert!(!merged.join("opaque/old").exists());
    assert_eq!(fs::read(merged.join("opaque/new")).unwrap(), b"n");
}

#[test]
fn keeps_ownership_modes_links_devices_and_xattrs() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = LayerTar::new()
        .dir("bin", 0o755)
        .file_owned("bin/tool", b"#!/bin/sh\n", 0o4755, 1000, 2000)
        .file_xattr("bin/ping", b"p", "user.minik", b"v1")
        .symlink("bin/sh", "tool")
        .hardlink("bin/tool2", "bin/tool")
        .dir("dev", 0o755)
        .device("dev/null", tar::EntryType::Char, 1, 3)
        .device("dev/loop0", tar::EntryType::Block, 7, 0)
        .device("dev/fifo", tar::EntryType::Fifo, 0, 0)
        .dir("tmp", 0o1777)
        // A later entry replaces an earlier one; a file replaces a directory.
        .file("replaced", b"1")
        .file("replaced", b"2")
        .dir("was-dir", 0o755)
        .file("was-dir/x", b"x")
        .file("was-dir", b"now a file")
        .finish();
    unpack_bytes(&layer, tmp.path()).unwrap();
    let r = tmp.path();
    let tool = fs::metadata(r.join("bin/tool")).unwrap();
    assert_eq!((tool.uid(), tool.gid()), (1000, 2000));
    assert_eq!(
        tool.permissions().mode() & 0o7777,
        0o4755,
        "set-uid survives chown"
    );
    assert_eq!(tool.mtime(), 1_000_000);
    assert_eq!(fs::read_link(r.join("bin/sh")).unwrap(), Path::new("tool"));
    assert_eq!(fs::metadata(r.join("bin/tool2")).unwrap().ino(), tool.ino());
    assert_eq!(
        xattr::get(r.join("bin/ping"), "user.minik")
            .unwrap()
            .as_deref(),
        Some(&b"v1"[..])
    );
    let null = fs::symlink_metadata(r.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(
        fs::symlink_metadata(r.join("dev/loop0"))
            .unwrap()
            .file_type()
            .is_block_device()
    );
    assert!(
        fs::symlink_metadata(r.join("dev/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        fs::metadata(r.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert_eq!(fs::metadata(r.join("tmp")).unwrap().mtime(), 1_000_000);
    assert_eq!(fs::read(r.join("replaced")).unwrap(), b"2");
    assert_eq!(fs::read(r.join("was-dir")).unwrap(), b"now a file");
}

#[test]
fn paths_stay_inside_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let layer = LayerTar::new()
        // An absolute symlink to a host directory, then a file through it.
        .symlink("escape", outside.to_str().unwrap())
        .file("escape/planted", b"x")
        .symlink("up", "../../..")
        .file("up/through-dotdot", b"y")
        .finish();
    unpack_bytes(&layer, &root).unwrap();
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    // Resolved inside the layer: /<outside path>/planted under root.
    let inside = root
        .join(outside.strip_prefix("/").unwrap())
        .join("planted");
    assert_eq!(fs::read(inside).unwrap(), b"x");
    assert_eq!(fs::read(root.join("through-dotdot")).unwrap(), b"y");

    // "../" in an entry's own path is cleaned at the root.
    let layer = LayerTar::new().finish();
    unpack_bytes(&layer, &root).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    // Builder refuses "..", so write the name into the header by hand.
    h.as_old_mut().name[..13].copy_from_slice(b"../../evil.tx");
    h.set_cksum();
    b.append(&h, &b"e"[..]).unwrap();
    unpack_bytes(&b.into_inner().unwrap(), &root).unwrap();
    assert!(root.join("evil.tx").exists());
    assert!(!tmp.path().join("evil.tx").exists());
}

#[test]
fn gzip_zstd_and_plain_layers_unpack_and_are_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let content = Content::open(&store).unwrap();
    let snaps = Snapshots::open(&store).unwrap();
    let layer = LayerTar::new()
        .dir("d", 0o755)
        .file("d/f", &vec![7u8; 100_000])
        .finish();
    let diff_id = super::super::content::sha256(&layer);
    for (i, data) in [gzip(&layer), zstd(&layer), layer.clone()]
        .into_iter()
        .enumerate()
    {
        let digest = content.write(&data, None).unwrap();
        let r = decompress(fs::File::open(content.path(&digest).unwrap()).unwrap()).unwrap();
        let mut out = Vec::new();
        std::io::copy(&mut { r }, &mut out).unwrap();
        assert_eq!(out, layer, "variant {i}");
        let dir = snaps.ensure(&content, &digest, &diff_id).unwrap();
        assert_eq!(fs::read(dir.join("d/f")).unwrap().len(), 100_000);
    }
    // Multi-frame zstd.
    let mut two = zstd(&layer[..512]);
    two.extend(zstd(&layer[512..]));
    let mut out = Vec::new();
    let d = content.write(&two, None).unwrap();
    std::io::copy(
        &mut decompress(fs::File::open(content.path(&d).unwrap()).unwrap()).unwrap(),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, layer);

    // A layer whose content is not its diff id is refused and leaves no snapshot.
    let other = LayerTar::new().file("x", b"x").finish();
    let digest = content.write(&gzip(&other), None).unwrap();
    let wrong = super::super::content::sha256(b"not it");
    let err = snaps
        .ensure(&content, &digest, &wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unpacks to content"), "{err}");
    assert!(!snaps.exists(&wrong));
    let leftovers: Vec<_> = fs::read_dir(store.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary dirs removed: {leftovers:?}"
    );
}
