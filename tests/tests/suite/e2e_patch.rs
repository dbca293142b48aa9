//! Patch with the real kubectl: client-side apply, the three patch types, edit, label,
//! annotate, scale, set image, diff and rollout restart, against a real `minik server`.

use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::Value;

fn deployment(ns: &str, env: &str, second: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
  labels: {{app: web, stage: dev}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: c1
        image: busybox
        env: [{env}]
{second}"
    )
}

fn get(k: &Kubectl, ns: &str) -> Value {
    serde_json::from_str(&ok(k.run(&["-n", ns, "get", "deploy", "web", "-o", "json"]))).unwrap()
}

#[test]
fn client_side_apply_and_patch_commands() {
    let s = Server::start();
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        eprintln!("kubectl: {}", k.bin);
        let ns = format!("p{i}");
        ok(k.run(&["create", "namespace", &ns]));
        let second = "      - name: c2\n        image: busybox\n";
        let first = deployment(
            &ns,
            "{name: A, value: \"1\"}, {name: B, value: \"2\"}",
            second,
        );
        assert!(ok(k.stdin(&["apply", "-f", "-"], &first)).contains("created"));
        // Re-applied without B, c2 and the stage label: all three go, the rest stays.
        let again = deployment(&ns, "{name: A, value: \"1\"}", "");
        let again = again.replace(", stage: dev", "");
        assert!(ok(k.stdin(&["apply", "-f", "-"], &again)).contains("configured"));
        let d = get(k, &ns);
        let containers = d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1, "{containers:?}");
        assert_eq!(
            containers[0]["env"],
            serde_json::json!([{"name": "A", "value": "1"}])
        );
        assert!(d["metadata"]["labels"].get("stage").is_none());
        assert!(
            d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .is_string()
        );
        let n = ["-n", ns.as_str()];
        let run = |args: &[&str]| ok(k.run(&[&n[..], args].concat()));
        // Strategic: a container merged by name; merge: null deletes; json: test then replace.
        run(&[
            "patch",
            "deploy",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#,
        ]);
        run(&[
            "patch",
            "deploy",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"app":null,"x":"y"}}}"#,
        ]);
        run(&[
            "patch",
            "deploy",
            "web",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":3}]"#,
        ]);
        let failed = k.run(
            &[
                &n[..],
                &[
                    "patch",
                    "deploy",
                    "web",
                    "--type",
                    "json",
                    "-p",
                    r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
                ],
            ]
            .concat(),
        );
        assert!(!failed.status.success());
        assert!(
            text(&failed).contains("cannot be applied"),
            "{}",
            text(&failed)
        );
        let d = get(k, &ns);
        let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c1", "side"]);
        assert_eq!(d["metadata"]["labels"], serde_json::json!({"x": "y"}));
        assert_eq!(d["spec"]["replicas"], 3);
        // A patch that makes the object invalid changes nothing.
        let bad = k.run(
            &[
                &n[..],
                &[
                    "patch",
                    "deploy",
                    "web",
                    "--type",
                    "merge",
                    "-p",
                    r#"{"spec":{"replicas":-1}}"#,
                ],
            ]
            .concat(),
        );
        assert!(text(&bad).contains("Invalid"), "{}", text(&bad));
        assert_eq!(get(k, &ns)["spec"]["replicas"], 3);
        // The everyday commands, all patches underneath.
        run(&["label", "deploy", "web", "tier=front"]);
        run(&["annotate", "deploy", "web", "note=hello"]);
        run(&["scale", "deploy", "web", "--replicas=5"]);
        run(&["set", "image", "deploy/web", "c1=busybox:2"]);
        run(&["rollout", "restart", "deploy/web"]);
        let d = get(k, &ns);
        assert_eq!(d["metadata"]["labels"]["tier"], "front");
        assert_eq!(d["metadata"]["annotations"]["note"], "hello");
        assert_eq!(d["spec"]["replicas"], 5);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:2"
        );
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_string()
        );
        // diff: a dry-run patch; the stored object does not change.
        let changed = again.replace("replicas: 2", "replicas: 7");
        let diff = k.stdin(&[&n[..], &["diff", "-f", "-"]].concat(), &changed);
        assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
        assert!(text(&diff).contains("replicas: 7"), "{}", text(&diff));
        assert_eq!(get(k, &ns)["spec"]["replicas"], 5);
        // edit: the editor is a script that changes the replicas.
        let editor = format!("{}/edit.sh", s.dir.path().display());
        std::fs::write(
            &editor,
            "#!/bin/sh\nsed -i 's/replicas: 5/replicas: 6/' \"$1\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let edited = k
            .cmd(&[&n[..], &["edit", "deploy", "web"]].concat())
            .env("KUBE_EDITOR", &editor)
            .output()
            .unwrap();
        assert!(edited.status.success(), "{}", text(&edited));
        assert_eq!(get(k, &ns)["spec"]["replicas"], 6);
    }
}
