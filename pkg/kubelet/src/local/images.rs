//! The air-gap images: at start, every tarball in `<data-dir>/agent/images/` (OCI layout
//! or docker-archive, as `docker save` and `ctr export` write them) is imported into the
//! node's image store, as k3s imports its agent/images directory, so pods can run images
//! that were never pulled. They are pinned, as k3s pins them: image garbage collection
//! never removes them.

use std::path::{Path, PathBuf};

/// The tarballs of `dir` to import, in name order: `.tar`, and compressed `.tar.gz`,
/// `.tgz`, `.tar.zst`, `.tzst` (the store says which compressions it reads).
pub fn tarballs(dir: &Path) -> Vec<PathBuf> {
    const EXTENSIONS: [&str; 5] = [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst"];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| EXTENSIONS.iter().any(|e| n.ends_with(e)))
        })
        .collect();
    out.sort();
    out
}

/// Import every tarball of `dir` into `store`; how many images were imported. A tarball
/// that cannot be imported is logged and skipped.
pub fn import_dir(store: &minik_runtime::ImageStore, dir: &Path) -> usize {
    let mut count = 0;
    for tarball in tarballs(dir) {
        match store.import(&tarball) {
            Ok(images) => {
                for i in &images {
                    tracing::info!(tarball = %tarball.display(), image = ?i.repo_tags, id = i.id, "imported image");
                    // k3s pins the air-gap images: image garbage collection keeps them.
                    if let Err(e) = store.pin(&i.id) {
                        tracing::warn!(image = i.id, error = %e, "pinning an air-gap image");
                    }
                }
                count += images.len();
            }
            Err(e) => {
                tracing::warn!(tarball = %tarball.display(), error = %e, "importing an image tarball")
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tarballs_are_taken_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.tar", "a.tar.gz", "c.txt", "d.tar.zst", "e.tgz"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("f.tar")).unwrap();
        let names: Vec<String> = tarballs(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.tar.gz", "b.tar", "d.tar.zst", "e.tgz"]);
        assert!(tarballs(&dir.path().join("missing")).is_empty());
    }
}
