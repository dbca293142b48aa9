//! Pods of `minik server`'s real node (run as root) whose images come from a registry:
//! Debian's docker-registry on 127.0.0.1 holding the test httpd image (pushed with skopeo).
//! A pod with imagePullPolicy Always pulls it and runs, with a Pulled event and the image in
//! the node's status; a registries.yaml given with `--private-registry` mirrors a registry
//! that does not answer to ours; a tag the registry lacks gives ErrImagePull, then
//! ImagePullBackOff.

use minik_tests::node::{container, create, events};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use minik_tests::node::{build_images, image_tarball};
use minik_tests::registry::Registry;
use minik_tests::server::Server;
use serde_json::{Value, json};

/// The registry with the test httpd image pushed as minik/httpd:latest.
fn registry_with_httpd(dir: &std::path::Path) -> Registry {
    let tarball = image_tarball(&build_images(dir), "httpd.oci.tar");
    let tarball = tarball.to_str().expect("a UTF-8 path");
    let registry = Registry::start();
    registry.push(tarball, "minik/httpd:latest");
    registry
}

fn pod(name: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"pull": name}},
        "spec": {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Always"}]}})
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && container(pod)["state"]["running"].is_object()
}

/// Every name of every image in the node's status.
fn node_image_names(s: &Server) -> Vec<String> {
    s.json_opt(&["get", "nodes"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .flat_map(|n| {
            n["status"]["images"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|i| i["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

#[test]
fn pods_pull_their_images_from_a_local_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = registry_with_httpd(&tmp.path().join("images"));
    let host = registry.host();
    // A registry that does not answer (127.0.0.1:1), mirrored by ours.
    let yaml = tmp.path().join("registries.yaml");
    std::fs::write(
        &yaml,
        format!("mirrors:\n  \"127.0.0.1:1\":\n    endpoint:\n      - \"http://{host}\"\n"),
    )
    .unwrap();
    let s = Server::start_node(&["--private-registry", yaml.to_str().unwrap()]);

    let image = format!("{host}/minik/httpd:latest");
    create(&s, &pod("web", &image));
    let web = s
        .until(&["get", "pod", "web"], "web to be Running", |p| {
            p.as_ref().is_some_and(running)
        })
        .unwrap();
    assert_eq!(container(&web)["image"], image.as_str(), "{web}");
    let image_id = container(&web)["imageID"].as_str().unwrap_or_default();
    assert!(
        image_id.starts_with(&format!("{host}/minik/httpd@sha256:")),
        "{web}"
    );
    let evs = events(&s, "web");
    assert!(
        evs.iter()
            .any(|(r, m)| r == "Pulling" && m == &format!("Pulling image {image:?}")),
        "{evs:?}"
    );
    assert!(
        evs.iter()
            .any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image")),
        "{evs:?}"
    );
    // The node's status lists the pulled image under its tag and its digest.
    s.eventually("the pulled image in the node's status", || {
        let names = node_image_names(&s);
        (names.contains(&image) && names.iter().any(|n| n == image_id)).then_some(())
    });

    // Through the mirror of --private-registry's file.
    create(&s, &pod("mirrored", "127.0.0.1:1/minik/httpd:latest"));
    let mirrored = s
        .until(&["get", "pod", "mirrored"], "mirrored to be Running", |p| {
            p.as_ref().is_some_and(running)
        })
        .unwrap();
    assert_eq!(
        container(&mirrored)["image"],
        "127.0.0.1:1/minik/httpd:latest"
    );
    assert!(
        events(&s, "mirrored").iter().any(|(r, _)| r == "Pulled"),
        "{:?}",
        events(&s, "mirrored")
    );
}

/// Watch the first container's waiting reason of the pods labelled pull=`name`, until
/// `last` is seen (at most 90 s); the reasons seen, in order, repeats collapsed.
fn watch_reasons(s: &Server, name: &str, last: &str) -> Vec<String> {
    let mut child = s
        .kubectl_cmd(&[
            "get",
            "pods",
            "-l",
            &format!("pull={name}"),
            "--watch",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get --watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen: Vec<String> = Vec::new();
    while !seen.iter().any(|r| r == last) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim().to_string();
                if !line.is_empty() && seen.last() != Some(&line) {
                    seen.push(line);
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[test]
fn a_missing_tag_is_err_image_pull_then_image_pull_back_off() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = registry_with_httpd(&tmp.path().join("images"));
    let none = tmp.path().join("no-registries.yaml");
    let s = Server::start_node(&["--private-registry", none.to_str().unwrap()]);
    let image = format!("{}/minik/httpd:nope", registry.host());

    // The watch starts before the pod exists, to see every status it goes through.
    let reasons = std::thread::scope(|scope| {
        let watching = scope.spawn(|| watch_reasons(&s, "missing", "ImagePullBackOff"));
        std::thread::sleep(Duration::from_millis(500));
        create(&s, &pod("missing", &image));
        watching.join().expect("watch")
    });
    let backoff = reasons.iter().position(|r| r == "ImagePullBackOff");
    let err = reasons.iter().position(|r| r == "ErrImagePull");
    assert!(
        matches!((err, backoff), (Some(e), Some(b)) if e < b),
        "ErrImagePull, then ImagePullBackOff: {reasons:?}; log:\n{}",
        s.log()
    );

    let p = s.json_opt(&["get", "pod", "missing"]).expect("pod");
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    let waiting = &container(&p)["state"]["waiting"];
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{image:?}")) || message.contains(&image),
        "{p}"
    );
    let evs = events(&s, "missing");
    for (reason, message) in [
        ("Failed", "Error: ErrImagePull"),
        ("Failed", "Error: ImagePullBackOff"),
    ] {
        assert!(
            evs.iter().any(|(r, m)| r == reason && m == message),
            "{reason} {message:?} in {evs:?}"
        );
    }
    assert!(
        evs.iter().any(
            |(r, m)| r == "Failed" && m.starts_with(&format!("Failed to pull image {image:?}"))
        ),
        "{evs:?}"
    );
    assert!(
        evs.iter()
            .any(|(r, m)| r == "BackOff" && m == &format!("Back-off pulling image {image:?}")),
        "{evs:?}"
    );
}
