//! Pinned images (never garbage collected) and the images leases hold.

use super::super::ImageStore;
use super::super::oci;
use super::{LayerTar, Layout, annotated, gzip};

fn tarball(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let mut layout = Layout::default();
    let layer = LayerTar::new().file("hello", b"hi").finish();
    let made = layout.image(&[layer], &["sh"], gzip);
    layout.manifests = vec![annotated(
        &made.manifest,
        &[(oci::ANNOTATION_IMAGE_NAME, "docker.io/library/pinme:1")],
    )];
    let path = dir.join("pinme.tar");
    std::fs::write(&path, layout.tarball()).unwrap();
    (path, made.config_digest)
}

#[test]
fn pinned_images_stay_pinned_across_imports_and_leases_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let (path, id) = tarball(tmp.path());
    store.import(&path).unwrap();
    assert!(store.pinned().unwrap().is_empty());
    store.pin("pinme:1").unwrap();
    store.pin(&id).unwrap();
    assert_eq!(
        store.pinned().unwrap(),
        std::collections::BTreeSet::from([id.clone()])
    );
    // Imported again (the next start): still pinned.
    store.import(&path).unwrap();
    assert!(store.pinned().unwrap().contains(&id));
    assert!(store.pin("missing:1").is_err());

    assert!(store.leased().unwrap().is_empty());
    store.lease("c1", &id).unwrap();
    assert_eq!(
        store.leased().unwrap(),
        std::collections::BTreeSet::from([id.clone()])
    );
    store.release("c1").unwrap();
    assert!(store.leased().unwrap().is_empty());
    // Removing by hand still works on a pinned image.
    store.remove(&id).unwrap();
    assert!(store.pinned().unwrap().is_empty());
}
