//! `minik image` (the real binary) on a node's image store: importing the test images
//! (scripts/images.sh) as OCI layouts and docker archives, listing, the unpacked layers the
//! runtime mounts, removing; and pulling from a local registry (Debian's docker-registry on
//! 127.0.0.1, the image pushed with skopeo), directly and through a registries.yaml mirror.

use std::path::{Path, PathBuf};

use minik_runtime::ImageStore;
use minik_runtime::images::store_root;
use minik_tests::minik;
use minik_tests::node::build_images;
use minik_tests::registry::Registry;

fn ok(args: &[&str]) -> String {
    let out = minik(args);
    assert!(
        out.status.success(),
        "minik {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image<'a>(images: &'a [PathBuf], name: &str) -> &'a str {
    images
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .and_then(|p| p.to_str())
        .unwrap_or_else(|| panic!("scripts/images.sh made no {name}: {images:?}"))
}

/// The ls rows as (image, tag) pairs.
fn rows(ls: &str) -> Vec<(String, String)> {
    ls.lines()
        .skip(1)
        .map(|l| {
            let mut cols = l.split_whitespace();
            (
                cols.next().unwrap_or_default().to_string(),
                cols.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn row(image: &str, tag: &str) -> (String, String) {
    (image.to_string(), tag.to_string())
}

#[test]
fn import_list_layers_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let images = build_images(&tmp.path().join("images"));
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();

    let out = ok(&[
        "image",
        "import",
        "--data-dir",
        d,
        image(&images, "busybox.oci.tar"),
        image(&images, "httpd.docker.tar"),
    ]);
    assert!(out.contains("docker.io/library/busybox:latest"), "{out}");
    assert!(out.contains("docker.io/minik/httpd:latest"), "{out}");
    // The same busybox as a docker archive is the same image (same config, same id).
    ok(&[
        "image",
        "import",
        "--data-dir",
        d,
        image(&images, "busybox.docker.tar"),
    ]);

    let ls = ok(&["image", "ls", "--data-dir", d]);
    assert!(ls.starts_with("IMAGE"), "{ls}");
    assert!(
        ls.lines().next().unwrap().contains("IMAGE ID") && ls.contains("SIZE"),
        "{ls}"
    );
    assert_eq!(
        rows(&ls),
        [
            row("docker.io/library/busybox", "latest"),
            row("docker.io/minik/httpd", "latest")
        ],
        "{ls}"
    );
    let ids = ok(&["image", "ls", "-q", "--data-dir", d]);
    assert_eq!(ids.lines().count(), 2, "{ids}");

    // What the runtime mounts: the layers' union is the image's root filesystem, and the
    // busybox layer is unpacked once for both images.
    let store = ImageStore::open(&store_root(&data)).unwrap();
    let httpd = store.get("minik/httpd").expect("httpd imported");
    let busybox = store.get("busybox").expect("busybox imported");
    let hl = store.layers(&httpd.id).unwrap();
    let bl = store.layers(&busybox.id).unwrap();
    assert_eq!(hl.len(), 2);
    assert_eq!(bl, hl[..1]);
    let has =
        |layers: &[PathBuf], p: &str| layers.iter().any(|l| l.join(p).symlink_metadata().is_ok());
    assert!(has(&hl, "bin/busybox") && has(&hl, "www/index.html") && has(&hl, "etc/passwd"));
    assert_eq!(
        std::fs::read_link(bl[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let index = hl
        .iter()
        .map(|l| l.join("www/index.html"))
        .find(|p| p.exists())
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(index).unwrap(),
        "hello from minik httpd\n"
    );
    assert_eq!(
        store.config(&httpd.id).unwrap().cmd,
        ["httpd", "-f", "-p", "8080", "-h", "/www"]
    );
    assert_eq!(store.config(&busybox.id).unwrap().cmd, ["sh"]);
    assert!(
        store
            .config(&busybox.id)
            .unwrap()
            .env
            .iter()
            .any(|e| e.starts_with("PATH="))
    );

    // rm: busybox goes, httpd keeps the shared layer.
    let out = ok(&["image", "rm", "--data-dir", d, "busybox"]);
    assert!(out.contains("docker.io/library/busybox:latest"), "{out}");
    assert_eq!(
        rows(&ok(&["image", "ls", "--data-dir", d])),
        [row("docker.io/minik/httpd", "latest")]
    );
    assert!(store.layers(&httpd.id).unwrap().iter().all(|l| l.is_dir()));

    // Unknown images and files are clear errors.
    let out = minik(&["image", "rm", "--data-dir", d, "nope:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope:1 is not present"),
        "{out:?}"
    );
    let elsewhere = tmp.path().join("untouched");
    let out = minik(&[
        "image",
        "import",
        "--data-dir",
        elsewhere.to_str().unwrap(),
        "/nonexistent.tar",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent.tar: no such file"),
        "{out:?}"
    );
    assert!(!elsewhere.exists(), "a refused import touches nothing");

    // By id prefix (as ls shows it): the last image and all its content go.
    ok(&[
        "image",
        "rm",
        "--data-dir",
        d,
        &httpd.id.trim_start_matches("sha256:")[..13],
    ]);
    assert_eq!(
        rows(&ok(&["image", "ls", "--data-dir", d])),
        Vec::<(String, String)>::new()
    );
    for sub in ["snapshots", "blobs/sha256"] {
        let left = std::fs::read_dir(store_root(&data).join(sub))
            .unwrap()
            .count();
        assert_eq!(left, 0, "{sub} is empty after the last image went");
    }
}

#[test]
fn pull_from_a_local_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let images = build_images(&tmp.path().join("images"));
    let registry = Registry::start();
    registry.push(image(&images, "httpd.oci.tar"), "minik/httpd:latest");
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let none = tmp.path().join("no-registries.yaml");
    let reference = format!("127.0.0.1:{}/minik/httpd:latest", registry.port);

    // No registries.yaml: HTTPS fails on this plain-HTTP registry, plain HTTP works.
    let out = ok(&[
        "image",
        "pull",
        "--data-dir",
        d,
        "--registries",
        none.to_str().unwrap(),
        &reference,
    ]);
    assert!(out.contains(&reference), "{out}");
    let ls = ok(&["image", "ls", "--data-dir", d]);
    assert_eq!(
        rows(&ls),
        [row(
            &format!("127.0.0.1:{}/minik/httpd", registry.port),
            "latest"
        )],
        "{ls}"
    );
    let store = ImageStore::open(&store_root(&data)).unwrap();
    let pulled = store.get(&reference).unwrap();
    assert_eq!(
        store.config(&pulled.id).unwrap().cmd,
        ["httpd", "-f", "-p", "8080", "-h", "/www"]
    );
    let layers = store.layers(&pulled.id).unwrap();
    assert!(layers.iter().any(|l| l.join("www/index.html").is_file()));
    assert!(layers.iter().any(|l| l.join("bin/busybox").is_file()));
    let digest_ref = pulled.repo_digests.first().expect("a repo digest").clone();
    assert!(
        digest_ref.starts_with(&format!("127.0.0.1:{}/minik/httpd@sha256:", registry.port)),
        "{digest_ref}"
    );

    // By digest, again: the same image.
    ok(&[
        "image",
        "pull",
        "--data-dir",
        d,
        "--registries",
        none.to_str().unwrap(),
        &digest_ref,
    ]);
    assert_eq!(store.get(&digest_ref).unwrap().id, pulled.id);

    // Through a mirror: a registry that does not answer (127.0.0.1:1) mirrored by ours.
    let yaml = tmp.path().join("registries.yaml");
    std::fs::write(
        &yaml,
        format!(
            "mirrors:\n  \"127.0.0.1:1\":\n    endpoint:\n      - \"http://127.0.0.1:{}\"\n",
            registry.port
        ),
    )
    .unwrap();
    ok(&[
        "image",
        "pull",
        "--data-dir",
        d,
        "--registries",
        yaml.to_str().unwrap(),
        "127.0.0.1:1/minik/httpd",
    ]);
    assert_eq!(
        store.get("127.0.0.1:1/minik/httpd:latest").unwrap().id,
        pulled.id
    );

    // A missing tag: a clear error naming the image and what each endpoint said.
    let missing = format!("127.0.0.1:{}/minik/httpd:nope", registry.port);
    let out = minik(&[
        "image",
        "pull",
        "--data-dir",
        d,
        "--registries",
        none.to_str().unwrap(),
        &missing,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pulling {missing}")), "{err}");
    assert!(
        err.contains(&format!("http://127.0.0.1:{}", registry.port)),
        "{err}"
    );
    let out = minik(&[
        "image",
        "pull",
        "--data-dir",
        d,
        "--creds",
        "nocolon",
        &reference,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("USER:PASSWORD"));
}
