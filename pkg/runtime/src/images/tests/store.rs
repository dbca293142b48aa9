//! The store end to end on hand-made tarballs: import (OCI layout with nested indexes and
//! name annotations, docker archive), lookups, layers shared between images, removal and
//! leases.

use std::fs;
use std::path::Path;

use super::super::content::sha256;
use super::super::oci;
use super::super::{ImageStore, store_root};
use super::{LayerTar, Layout, annotated, gzip};
use crate::types::Error;

fn base_layer() -> Vec<u8> {
    LayerTar::new()
        .dir("bin", 0o755)
        .file_owned("bin/busybox", b"ELF", 0o755, 0, 0)
        .finish()
}

fn app_layer() -> Vec<u8> {
    LayerTar::new()
        .dir("www", 0o755)
        .file("www/index.html", b"hello")
        .finish()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

#[test]
fn store_root_is_under_agent() {
    assert_eq!(
        store_root(Path::new("/var/lib/minik")),
        Path::new("/var/lib/minik/agent/store")
    );
}

#[test]
fn imports_oci_layouts_shares_layers_and_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let mut layout = Layout::default();
    let base = layout.image(&[base_layer()], &["sh"], gzip);
    let app = layout.image(&[base_layer(), app_layer()], &["httpd", "-f"], gzip);
    // A foreign-platform image in a nested index, named on the index entry.
    let foreign = layout.image(&[app_layer()], &["no"], gzip);
    let mut foreign_desc = foreign.manifest.clone();
    foreign_desc["platform"] = serde_json::json!({"architecture": "s390x", "os": "linux"});
    let mut app_desc = app.manifest.clone();
    app_desc["platform"] = serde_json::to_value(oci::host_platform()).unwrap();
    let nested = serde_json::json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX,
        "manifests": [foreign_desc, app_desc]});
    let (nd, nn) = layout.blob(serde_json::to_vec(&nested).unwrap());
    layout.manifests = vec![
        annotated(
            &base.manifest,
            &[
                (
                    oci::ANNOTATION_IMAGE_NAME,
                    "docker.io/library/busybox:latest",
                ),
                (oci::ANNOTATION_REF_NAME, "latest"),
            ],
        ),
        // The whole reference in ref.name (as some tools write it).
        annotated(
            &base.manifest,
            &[(oci::ANNOTATION_REF_NAME, "busybox:1.36")],
        ),
        annotated(
            &serde_json::json!({"mediaType": oci::OCI_INDEX, "digest": nd, "size": nn}),
            &[(oci::ANNOTATION_REF_NAME, "127.0.0.1:5000/minik/httpd:v1")],
        ),
    ];
    let tarball = write(tmp.path(), "images.tar", &layout.tarball());
    let mut images = store.import(&tarball).unwrap();
    images.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(images.len(), 2, "{images:?}");

    let busybox = store.get("busybox").unwrap();
    assert_eq!(busybox.id, base.config_digest);
    assert_eq!(
        busybox.repo_tags,
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox:1.36"
        ]
    );
    assert_eq!(
        busybox.repo_digests,
        [format!(
            "docker.io/library/busybox@{}",
            base.manifest_digest
        )]
    );
    assert_eq!(busybox.size, gzip(&base_layer()).len() as u64);
    let httpd = store.get("127.0.0.1:5000/minik/httpd:v1").unwrap();
    assert_eq!(httpd.id, app.config_digest);
    assert_eq!(store.list().unwrap().len(), 2);

    // Lookups: id, bare hex, prefix, digest reference.
    let hex = busybox.id.trim_start_matches("sha256:");
    assert_eq!(store.get(&busybox.id).unwrap(), busybox);
    assert_eq!(store.get(hex).unwrap(), busybox);
    assert_eq!(store.get(&hex[..12]).unwrap(), busybox);
    assert_eq!(
        store
            .get(&format!("busybox@{}", base.manifest_digest))
            .unwrap(),
        busybox
    );
    assert!(store.get("busybox:2").is_none());
    assert!(store.get("").is_none());

    let config = store.config(&httpd.id).unwrap();
    assert_eq!(config.cmd, ["httpd", "-f"]);
    assert_eq!(config.env, ["PATH=/bin"]);
    assert_eq!(config.working_dir.as_deref(), Some("/w"));
    assert_eq!(config.user.as_deref(), Some("1000"));

    // The base layer is unpacked once and shared.
    let bl = store.layers(&busybox.id).unwrap();
    let hl = store.layers("127.0.0.1:5000/minik/httpd:v1").unwrap();
    assert_eq!(bl.len(), 1);
    assert_eq!(hl.len(), 2);
    assert_eq!(bl[0], hl[0]);
    assert_eq!(fs::read(hl[0].join("bin/busybox")).unwrap(), b"ELF");
    assert_eq!(fs::read(hl[1].join("www/index.html")).unwrap(), b"hello");
    let root = store.root().to_path_buf();
    assert_eq!(count(&root.join("snapshots")), 2);
    assert_eq!(count(&root.join("ingest")), 0, "staging cleaned up");

    // Importing again changes nothing.
    store.import(&tarball).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);

    // One tag goes, the image stays; the last tag takes the image, not the shared layer.
    store.remove("busybox:1.36").unwrap();
    assert_eq!(
        store.get("busybox").unwrap().repo_tags,
        ["docker.io/library/busybox:latest"]
    );
    store.remove("docker.io/library/busybox:latest").unwrap();
    assert!(store.get(&busybox.id).is_none());
    assert!(hl[0].is_dir(), "the shared layer stays for httpd");
    assert!(store.layers(&httpd.id).is_ok());
    assert!(matches!(
        store.remove("busybox"),
        Err(Error::ImageNotFound(_))
    ));

    // By id: everything goes.
    store.remove(&httpd.id[..20]).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count(&root.join("snapshots")), 0);
    assert_eq!(count(&root.join("blobs/sha256")), 0);
}

#[test]
fn imports_docker_archives_and_moves_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let docker_archive = |layers: &[Vec<u8>], cmd: &str, tag: &str| {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        let config = serde_json::to_vec(
            &serde_json::json!({"architecture": oci::host_platform().architecture, "os": "linux",
            "config": {"Cmd": [cmd]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}),
        )
        .unwrap();
        let config_name = format!("{}.json", sha256(&config).trim_start_matches("sha256:"));
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, data).unwrap();
        };
        add(&config_name, &config);
        let mut paths = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            // One plain layer, one gzipped, as docker save and others write them.
            let (p, data) = if i % 2 == 0 {
                (format!("{i}/layer.tar"), l.clone())
            } else {
                (format!("{i}/layer.tar.gz"), gzip(l))
            };
            add(&p, &data);
            paths.push(p);
        }
        let manifest =
            serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": paths}]);
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        (b.into_inner().unwrap(), sha256(&config))
    };
    let (tar1, id1) = docker_archive(&[base_layer(), app_layer()], "one", "minik/app:latest");
    let images = store.import(&write(tmp.path(), "a.tar", &tar1)).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, id1);
    assert_eq!(images[0].repo_tags, ["docker.io/minik/app:latest"]);
    assert!(images[0].repo_digests.is_empty());
    assert_eq!(store.config("minik/app").unwrap().cmd, ["one"]);
    let layers = store.layers(&id1).unwrap();
    assert_eq!(
        fs::read(layers[1].join("www/index.html")).unwrap(),
        b"hello"
    );

    // A gzipped tarball of a new image with the same tag: the tag moves, the old image
    // (no name left) goes, the shared base layer stays.
    let (tar2, id2) = docker_archive(&[base_layer()], "two", "minik/app:latest");
    store
        .import(&write(tmp.path(), "b.tar.gz", &gzip(&tar2)))
        .unwrap();
    assert_eq!(store.get("minik/app").unwrap().id, id2);
    assert!(store.get(&id1).is_none());
    assert!(layers[0].is_dir());
    assert!(!layers[1].exists());
}

#[test]
fn leases_keep_content_of_removed_images() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let mut layout = Layout::default();
    let img = layout.image(&[base_layer()], &["sh"], gzip);
    layout.manifests = vec![annotated(
        &img.manifest,
        &[(oci::ANNOTATION_IMAGE_NAME, "busybox")],
    )];
    store
        .import(&write(tmp.path(), "i.tar", &layout.tarball()))
        .unwrap();
    let layers = store.layers("busybox").unwrap();
    store.lease("container-1", "busybox").unwrap();
    assert!(store.lease("../x", "busybox").is_err());
    store.remove("busybox").unwrap();
    assert!(store.get("busybox").is_none());
    assert!(
        layers[0].join("bin/busybox").exists(),
        "a running container keeps its layers"
    );
    store.release("container-1").unwrap();
    assert!(!layers[0].exists());
    store.release("container-1").unwrap();
}

#[test]
fn bad_tarballs_say_what_is_wrong_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("s")).unwrap();
    let err = |data: &[u8]| {
        store
            .import(&write(tmp.path(), "bad.tar", data))
            .unwrap_err()
            .to_string()
    };

    assert!(
        err(b"not a tar at all").contains("not a readable tar")
            || err(b"not a tar at all").contains("holds no files")
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    b.append_data(&mut h, "hello.txt", &b"hi"[..]).unwrap();
    assert!(err(&b.into_inner().unwrap()).contains("neither an OCI image layout"));

    // A layer blob whose bytes are not its digest.
    let mut layout = Layout::default();
    let img = layout.image(&[base_layer()], &["sh"], gzip);
    layout.manifests = vec![annotated(
        &img.manifest,
        &[(oci::ANNOTATION_IMAGE_NAME, "x")],
    )];
    let layer_digest = layout
        .blobs
        .keys()
        .find(|d| layout.blobs[*d].starts_with(&[0x1f, 0x8b]))
        .unwrap()
        .clone();
    layout.blobs.insert(layer_digest, gzip(b"tampered"));
    assert!(err(&layout.tarball()).contains("corrupt"));

    // Only a foreign platform.
    let mut layout = Layout::default();
    let img = layout.image(&[base_layer()], &["sh"], gzip);
    let mut d = annotated(&img.manifest, &[(oci::ANNOTATION_IMAGE_NAME, "x")]);
    d["platform"] = serde_json::json!({"architecture": "s390x", "os": "linux"});
    layout.manifests = vec![d];
    assert!(err(&layout.tarball()).contains("no image for linux/"));

    assert!(store.list().unwrap().is_empty());
    assert_eq!(count(&store.root().join("snapshots")), 0);
    assert_eq!(count(&store.root().join("ingest")), 0);
}

#[test]
fn concurrent_imports_and_removals_stay_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let mut layout = Layout::default();
    let a = layout.image(&[base_layer()], &["sh"], gzip);
    let b = layout.image(&[base_layer(), app_layer()], &["app"], gzip);
    layout.manifests = vec![
        annotated(&a.manifest, &[(oci::ANNOTATION_IMAGE_NAME, "a")]),
        annotated(&b.manifest, &[(oci::ANNOTATION_IMAGE_NAME, "b")]),
    ];
    let tarball = write(tmp.path(), "ab.tar", &layout.tarball());
    // Each thread opens its own store (its own lock file descriptor), as processes do.
    std::thread::scope(|s| {
        for i in 0..4 {
            let (root, tarball) = (root.clone(), tarball.clone());
            s.spawn(move || {
                let store = ImageStore::open(&root).unwrap();
                for _ in 0..3 {
                    store.import(&tarball).unwrap();
                    if i % 2 == 0 {
                        // May race with another thread's removal: both outcomes are fine.
                        let _ = store.remove("a");
                    }
                }
            });
        }
    });
    let store = ImageStore::open(&root).unwrap();
    store.import(&tarball).unwrap();
    for name in ["a", "b"] {
        let layers = store.layers(name).unwrap();
        assert!(layers[0].join("bin/busybox").is_file(), "{name}");
    }
    store.remove("a").unwrap();
    store.remove("b").unwrap();
    assert_eq!(count(&root.join("snapshots")), 0);
    assert_eq!(count(&root.join("blobs/sha256")), 0);
    assert_eq!(fs::read_dir(root.join("ingest")).unwrap().count(), 0);
}

#[test]
fn leftovers_of_dead_processes_are_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ImageStore::open(root).unwrap();
    // pid 0 is never a process of ours; a live pid (ours) is left alone.
    let dead = root.join("ingest/import-0-1-2");
    fs::create_dir_all(dead.join("x")).unwrap();
    fs::write(root.join("ingest/blob-0-1-2"), b"partial").unwrap();
    fs::create_dir(root.join("snapshots/.unpack-0-1-2")).unwrap();
    let live = root.join(format!("ingest/blob-{}-1-2", std::process::id()));
    fs::write(&live, b"mine").unwrap();
    ImageStore::open(root).unwrap();
    assert!(!dead.exists());
    assert!(!root.join("ingest/blob-0-1-2").exists());
    assert!(!root.join("snapshots/.unpack-0-1-2").exists());
    assert!(live.exists());
}

#[test]
fn pull_futures_can_be_spawned() {
    fn send<T: Send + 'static>(_: &T) {}
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let fut = async move {
        let r = super::super::Registries::default();
        store.pull("busybox", None, &r).await
    };
    send(&fut);
}
