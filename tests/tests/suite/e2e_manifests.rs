//! Auto-deployed manifests: the embedded local-path StorageClass, and files dropped into
//! `<data-dir>/server/manifests/` applied, updated and deleted as they change, across
//! restarts; a bad file reported without stopping the others; `--disable local-storage`.

use std::path::PathBuf;

use minik_tests::server::Server;

fn manifests(server: &Server) -> PathBuf {
    server
        .dir
        .path()
        .join("data")
        .join("server")
        .join("manifests")
}

/// Whether `kubectl get <args>` finds the object.
fn exists(server: &Server, args: &[&str]) -> bool {
    server
        .json_opt(&{
            let mut a = vec!["get"];
            a.extend_from_slice(args);
            a
        })
        .is_some()
}

fn wait_exists(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut get = vec!["get"];
    get.extend_from_slice(args);
    server
        .until(&get, &format!("{args:?} to exist"), |v| v.is_some())
        .unwrap_or_default()
}

fn wait_gone(server: &Server, args: &[&str]) {
    server.eventually(&format!("{args:?} to be deleted"), || {
        (!exists(server, args)).then_some(())
    });
}

const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dropped\ndata:\n  \
                         color: blue\n";
const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dropped-ns\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  \
                          namespace: dropped-ns\nspec:\n  replicas: 1\n  selector:\n    \
                          matchLabels: {app: web}\n  template:\n    metadata:\n      labels: \
                          {app: web}\n    spec:\n      containers:\n      - name: web\n        \
                          image: example.invalid/web:1\n";
const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: extra\n  namespace: \
                      dropped-ns\nstringData:\n  k: v\n";

fn docs(parts: &[&str]) -> String {
    parts.join("---\n")
}

#[test]
fn default_storage_class_is_deployed() {
    let server = Server::start();
    let class = wait_exists(&server, &["storageclass", "local-path"]);
    assert_eq!(class["provisioner"], "rancher.io/local-path");
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert!(manifests(&server).join("local-storage.yaml").exists());
}

#[test]
fn dropped_files_are_applied_updated_and_deleted() {
    let mut server = Server::start();
    let dir = manifests(&server);
    let app = dir.join("app.yaml");
    std::fs::write(&app, docs(&[CONFIGMAP, NAMESPACE, DEPLOYMENT, SECRET])).unwrap();
    // A namespaced object without a namespace goes to default.
    let cm = wait_exists(&server, &["configmap", "dropped", "-n", "default"]);
    assert_eq!(cm["data"]["color"], "blue");
    wait_exists(&server, &["deployment", "web", "-n", "dropped-ns"]);
    wait_exists(&server, &["secret", "extra", "-n", "dropped-ns"]);

    // A change of the file updates the object.
    let red = CONFIGMAP.replace("blue", "red");
    std::fs::write(&app, docs(&[&red, NAMESPACE, DEPLOYMENT, SECRET])).unwrap();
    server.until(
        &["get", "configmap", "dropped", "-n", "default"],
        "the ConfigMap updated",
        |v| v.as_ref().is_some_and(|v| v["data"]["color"] == "red"),
    );

    // A document removed from the file: its object is deleted, the others stay.
    std::fs::write(&app, docs(&[&red, NAMESPACE, DEPLOYMENT])).unwrap();
    wait_gone(&server, &["secret", "extra", "-n", "dropped-ns"]);
    assert!(exists(&server, &["deployment", "web", "-n", "dropped-ns"]));

    // Changes while the server is down count at its next start.
    server.stop();
    std::fs::write(&app, docs(&[&red, NAMESPACE])).unwrap();
    server.resume();
    wait_gone(&server, &["deployment", "web", "-n", "dropped-ns"]);
    assert!(exists(&server, &["configmap", "dropped", "-n", "default"]));

    // The file deleted: the rest of its objects go.
    std::fs::remove_file(&app).unwrap();
    wait_gone(&server, &["configmap", "dropped", "-n", "default"]);
    server.until(
        &["get", "namespace", "dropped-ns"],
        "the namespace deleted",
        |v| {
            v.as_ref()
                .is_none_or(|v| !v["metadata"]["deletionTimestamp"].is_null())
        },
    );
}

#[test]
fn a_bad_file_does_not_stop_the_others() {
    let server = Server::start();
    let dir = manifests(&server);
    std::fs::write(dir.join("a-bad.yaml"), "kind: [not yaml\n").unwrap();
    std::fs::write(
        dir.join("b-unknown.yaml"),
        "apiVersion: nothing.example.com/v1\nkind: Nope\nmetadata: {name: x}\n",
    )
    .unwrap();
    std::fs::write(dir.join(".hidden.yaml"), NAMESPACE).unwrap();
    std::fs::write(
        dir.join("d-skipped.yaml"),
        SECRET.replace("dropped-ns", "default"),
    )
    .unwrap();
    std::fs::write(dir.join("d-skipped.yaml.skip"), "").unwrap();
    std::fs::write(dir.join("c-good.yaml"), CONFIGMAP).unwrap();
    wait_exists(&server, &["configmap", "dropped", "-n", "default"]);
    // The failures are told as events.
    server.until(
        &["get", "events", "-n", "kube-system"],
        "events about both bad files",
        |v| {
            let text = v.as_ref().map(|v| v.to_string()).unwrap_or_default();
            text.contains("ApplyFailed")
                && text.contains("a-bad.yaml")
                && text.contains("b-unknown.yaml")
        },
    );
    let log = server.log();
    assert!(
        log.contains("a-bad.yaml") && log.contains("not valid YAML"),
        "{log}"
    );
    // Hidden and skipped files were passed over.
    assert!(!exists(&server, &["namespace", "dropped-ns"]));
    assert!(!exists(&server, &["secret", "extra", "-n", "default"]));
    // Fixed, the bad file is applied.
    std::fs::write(dir.join("a-bad.yaml"), NAMESPACE).unwrap();
    wait_exists(&server, &["namespace", "dropped-ns"]);
}

#[test]
fn custom_resources_follow_their_definition_in_one_file() {
    let server = Server::start();
    let crd = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;
    let cr = "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\nspec:\n  size: 3\n";
    std::fs::write(manifests(&server).join("gadgets.yaml"), docs(&[crd, cr])).unwrap();
    let g = wait_exists(&server, &["gadgets.example.com", "g1", "-n", "default"]);
    assert_eq!(g["spec"]["size"], 3);
}

#[test]
fn disabled_local_storage_has_no_class() {
    let server = Server::start_with(&["--disable", "local-storage"]);
    // The deployer's record is written after its first pass.
    wait_exists(
        &server,
        &["configmap", "minik-manifests", "-n", "kube-system"],
    );
    assert!(!exists(&server, &["storageclass", "local-path"]));
    assert!(!manifests(&server).join("local-storage.yaml").exists());
}

#[test]
fn disabling_local_storage_later_deletes_the_class() {
    let mut server = Server::start();
    wait_exists(&server, &["storageclass", "local-path"]);
    server.stop();
    server.extra = vec!["--disable".into(), "local-storage".into()];
    server.resume();
    wait_gone(&server, &["storageclass", "local-path"]);
    assert!(!manifests(&server).join("local-storage.yaml").exists());
}
