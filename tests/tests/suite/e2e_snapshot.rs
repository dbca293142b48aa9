//! `minik snapshot save|restore|ls` with the real binary: a snapshot taken while the server
//! runs, restored into a fresh data directory, gives back every object saved (and nothing
//! written after), the same CA, service-account key and encryption keys; bad input is refused
//! clearly and changes nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minik_tests::minik;
use minik_tests::server::{Server, ok, text};

fn minik_ok(args: &[&str]) -> String {
    let out = minik(args);
    assert!(out.status.success(), "minik {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn minik_err(args: &[&str]) -> String {
    let out = minik(args);
    assert!(
        !out.status.success(),
        "minik {args:?} succeeded: {}",
        text(&out)
    );
    let t = text(&out);
    assert!(!t.contains("panicked"), "{t}");
    t
}

fn data_dir(s: &Server) -> PathBuf {
    s.dir.path().join("data")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// kubectl with another kubeconfig than the one the server writes at each start.
fn kubectl_with(s: &Server, kubeconfig: &Path, args: &[&str]) -> Output {
    s.kubectl_cmd(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run kubectl")
}

/// Whether `kubectl get ARGS` finds the object.
fn exists(s: &Server, args: &[&str]) -> bool {
    s.json_opt(&[&["get"], args].concat()).is_some()
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: snap}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: snap}
data: {color: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: password, namespace: snap}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: snap}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: robot-token
  namespace: snap
  annotations: {kubernetes.io/service-account.name: robot}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: snap}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox, command: [sleep, "3600"]}]
"#;

fn secret_value(s: &Server, name: &str, key: &str) -> String {
    let secret = s.get_json(&["secret", "-n", "snap", name]);
    let b64 = secret["data"][key].as_str().expect("secret data");
    String::from_utf8(STANDARD.decode(b64).expect("base64")).expect("UTF-8")
}

fn whoami(s: &Server, token: &str) -> String {
    ok(s.kubectl(&["--token", token, "auth", "whoami"]))
}

#[test]
fn save_online_then_restore_into_a_new_data_dir_gives_back_every_object() {
    let mut s = Server::start_with(&["--secrets-encryption"]);
    let data = data_dir(&s);
    ok(s.kubectl_stdin(&["apply", "-f", "-"], OBJECTS));
    let legacy = s.until(
        &["get", "secret", "-n", "snap", "robot-token"],
        "the token controller fills robot-token",
        |v| v.as_ref().is_some_and(|v| v["data"]["token"].is_string()),
    );
    assert!(legacy.is_some());
    let legacy_token = secret_value(&s, "robot-token", "token");
    let requested = ok(s.kubectl(&["create", "token", "robot", "-n", "snap"]))
        .trim()
        .to_string();
    let deployment_uid = s.get_json(&["deployment", "-n", "snap", "web"])["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let old_kubeconfig = s.dir.path().join("old-kubeconfig.yaml");
    fs::copy(&s.kubeconfig, &old_kubeconfig).expect("copy kubeconfig");

    // Online: the server keeps running (and writing) while the snapshot is taken.
    let saved = minik_ok(&["snapshot", "save", "--data-dir", path_str(&data)]);
    let saved = PathBuf::from(saved.trim());
    let name = saved
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("on-demand-"), "{name}");
    assert!(
        saved.starts_with(data.join("server/db/snapshots")),
        "{saved:?}"
    );
    ok(s.kubectl(&["create", "configmap", "later", "-n", "snap"]));
    let listed = minik_ok(&["snapshot", "ls", "--data-dir", path_str(&data)]);
    assert!(listed.starts_with("NAME"), "{listed}");
    assert!(listed.contains(&name), "{listed}");

    // The whole data directory goes away; the snapshot is restored where it was.
    s.stop();
    let moved = s.dir.path().join("moved");
    fs::rename(&data, &moved).expect("move the data dir away");
    let file = moved.join(saved.strip_prefix(&data).expect("inside the data dir"));
    let out = minik_ok(&[
        "snapshot",
        "restore",
        path_str(&file),
        "--data-dir",
        path_str(&data),
    ]);
    assert!(out.contains("restored revision"), "{out}");
    assert!(!data.join("server/manifests").exists());
    assert!(data.join("server/cred/encryption-config.json").exists());
    s.resume();

    assert!(exists(&s, &["namespace", "snap"]));
    let cm = s.get_json(&["configmap", "-n", "snap", "settings"]);
    assert_eq!(cm["data"]["color"], "blue");
    assert_eq!(secret_value(&s, "password", "password"), "hunter2");
    let dep = s.get_json(&["deployment", "-n", "snap", "web"]);
    assert_eq!(dep["metadata"]["uid"], deployment_uid.as_str());
    assert_eq!(dep["spec"]["replicas"], 2);
    assert!(exists(&s, &["serviceaccount", "-n", "snap", "robot"]));
    assert!(
        !exists(&s, &["configmap", "-n", "snap", "later"]),
        "written after the save"
    );

    // Same CA and admin certificate: the kubeconfig from before still works.
    let out = kubectl_with(&s, &old_kubeconfig, &["get", "configmap", "-n", "snap"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("settings"));
    // Same service-account key: tokens issued before still authenticate; new ones too.
    let robot = "system:serviceaccount:snap:robot";
    assert_eq!(secret_value(&s, "robot-token", "token"), legacy_token);
    assert!(whoami(&s, &legacy_token).contains(robot));
    assert!(whoami(&s, &requested).contains(robot));
    let fresh = ok(s.kubectl(&["create", "token", "robot", "-n", "snap"]));
    assert!(whoami(&s, fresh.trim()).contains(robot));
}

#[test]
fn refusals_are_clear_and_change_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let empty = tmp.path().join("empty");
    let err = minik_err(&["snapshot", "save", "--data-dir", path_str(&empty)]);
    assert!(err.contains("no datastore in"), "{err}");
    assert!(!empty.exists());

    let mut s = Server::start();
    let data = data_dir(&s);
    let backups = tmp.path().join("backups");
    ok(s.kubectl(&["create", "configmap", "kept"]));
    let err = minik_err(&[
        "snapshot",
        "save",
        "--data-dir",
        path_str(&data),
        "--name",
        "a/b",
    ]);
    assert!(err.contains("plain file name"), "{err}");
    let save = |name: &str| {
        minik_ok(&[
            "snapshot",
            "save",
            "--data-dir",
            path_str(&data),
            "--dir",
            path_str(&backups),
            "--name",
            name,
        ])
    };
    assert_eq!(save("nightly").trim(), path_str(&backups.join("nightly")));
    let err = minik_err(&[
        "snapshot",
        "save",
        "--data-dir",
        path_str(&data),
        "--dir",
        path_str(&backups),
        "--name",
        "nightly",
    ]);
    assert!(err.contains("already exists"), "{err}");
    let listed = minik_ok(&["snapshot", "ls", "--dir", path_str(&backups)]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("SIZE"));
    assert!(lines[1].starts_with("nightly"), "{listed}");

    // Not a snapshot: a text file, and the datastore itself.
    let text_file = tmp.path().join("notes.txt");
    fs::write(&text_file, "not a snapshot").expect("write");
    let fresh = tmp.path().join("fresh");
    for bad in [&text_file, &data.join("db/state.db")] {
        let err = minik_err(&[
            "snapshot",
            "restore",
            path_str(bad),
            "--data-dir",
            path_str(&fresh),
        ]);
        assert!(err.contains("is not a minik snapshot"), "{err}");
        assert!(!fresh.exists());
    }
    let err = minik_err(&[
        "snapshot",
        "restore",
        "nope",
        "--data-dir",
        path_str(&fresh),
    ]);
    assert!(err.contains("no snapshot \"nope\""), "{err}");

    // A running server keeps its data directory.
    let restore_by_name = |force: bool| {
        let mut args = vec![
            "snapshot",
            "restore",
            "nightly",
            "--dir",
            path_str(&backups),
            "--data-dir",
            path_str(&data),
        ];
        if force {
            args.push("--force");
        }
        minik(&args)
    };
    let out = restore_by_name(true);
    assert!(!out.status.success());
    let expected = format!(
        "a minik server is running on {}; stop it first",
        data.display()
    );
    assert!(text(&out).contains(&expected), "{}", text(&out));

    // A stopped one's datastore is kept unless --force, which moves it aside.
    ok(s.kubectl(&["create", "configmap", "dropped"]));
    s.stop();
    let db = data.join("db/state.db");
    let before = fs::read(&db).expect("read db");
    let out = restore_by_name(false);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("already has a datastore"),
        "{}",
        text(&out)
    );
    assert_eq!(fs::read(&db).expect("read db"), before);
    let out = restore_by_name(true);
    assert!(out.status.success(), "{}", text(&out));
    let aside: Vec<String> = fs::read_dir(data.join("db"))
        .expect("db dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.db.before-restore-"))
        .collect();
    assert!(!aside.is_empty(), "the old datastore is kept aside");
    s.resume();
    assert!(exists(&s, &["configmap", "kept"]));
    assert!(!exists(&s, &["configmap", "dropped"]));
}
