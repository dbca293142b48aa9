//! A container's root filesystem: an overlayfs mount of the image's unpacked layers (read
//! only) under the container's own writable layer (`upper/`, `work/`) at `rootfs/`.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::container::state::ContainerDir;
use crate::types::{Error, Result};

/// The overlayfs options for `layers` (lowest first; overlayfs lists the uppermost first).
pub(crate) fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    if layers.is_empty() {
        return Err(Error::Invalid(
            "a container needs at least one image layer".into(),
        ));
    }
    let mut lower = Vec::with_capacity(layers.len());
    for layer in layers.iter().rev() {
        let text = layer.to_string_lossy();
        // ':' separates lower directories and ',' options; overlayfs has no escaping here.
        if text.contains([':', ',']) || !layer.is_absolute() {
            return Err(Error::Invalid(format!(
                "unusable layer path {}",
                layer.display()
            )));
        }
        lower.push(text.into_owned());
    }
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    ))
}

/// Mount the overlay at `rootfs/` (creating the writable layer's directories).
pub(crate) fn mount_rootfs(dir: &ContainerDir, layers: &[PathBuf]) -> Result<()> {
    for layer in layers {
        if !layer.is_dir() {
            return Err(Error::Invalid(format!(
                "layer {} is not a directory",
                layer.display()
            )));
        }
    }
    let options = overlay_options(layers, &dir.upper(), &dir.work())?;
    for d in [dir.rootfs(), dir.upper(), dir.work()] {
        fs::create_dir_all(&d).map_err(Error::io(format!("creating {}", d.display())))?;
    }
    // The kernel takes at most a page of mount options.
    if options.len() >= 4096 {
        return Err(Error::Invalid(format!(
            "{} layers make overlay options too long ({} bytes)",
            layers.len(),
            options.len()
        )));
    }
    mount(
        Some("overlay"),
        &dir.rootfs(),
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| Error::Failed(format!("mounting the overlay root filesystem: {e}")))
}

/// Unmount `rootfs/` if mounted.
pub(crate) fn unmount_rootfs(dir: &ContainerDir) -> Result<()> {
    match umount2(&dir.rootfs(), MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::Failed(format!(
            "unmounting {}: {e}",
            dir.rootfs().display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_uppermost_layer_first() {
        let layers = [PathBuf::from("/l/base"), PathBuf::from("/l/top")];
        let options =
            overlay_options(&layers, Path::new("/c/upper"), Path::new("/c/work")).unwrap();
        assert_eq!(
            options,
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn rejects_no_layers_and_odd_paths() {
        let (u, w) = (Path::new("/u"), Path::new("/w"));
        assert!(overlay_options(&[], u, w).is_err());
        assert!(overlay_options(&[PathBuf::from("/a:b")], u, w).is_err());
        assert!(overlay_options(&[PathBuf::from("rel")], u, w).is_err());
    }
}
