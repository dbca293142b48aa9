//! A real `minik server` driven by the real kubectl (the machine's, or `$KUBECTL`).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::Value;

const CM: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: cm1
  labels: {app: web}
data:
  a: \"1\"
";

#[test]
fn version_discovery_and_bootstrap() {
    let s = Server::start();
    for k in Kubectl::each(&s) {
        eprintln!("kubectl: {}", k.bin);
        let v: Value = serde_json::from_str(&ok(k.run(&["version", "-o", "json"]))).unwrap();
        assert_eq!(v["serverVersion"]["major"], "1");
        assert_eq!(v["serverVersion"]["minor"], "37");
        let res = ok(k.run(&["api-resources"]));
        for want in [
            "pods",
            "deployments",
            "configmaps",
            "customresourcedefinitions",
            "leases",
        ] {
            assert!(res.contains(want), "api-resources lists {want}:\n{res}");
        }
        assert!(res.lines().any(|l| l.starts_with("deployments")
            && l.contains("deploy")
            && l.contains("apps/v1")));
        let versions = ok(k.run(&["api-versions"]));
        for want in [
            "v1",
            "apps/v1",
            "batch/v1",
            "rbac.authorization.k8s.io/v1",
            "autoscaling/v2",
        ] {
            assert!(
                versions.lines().any(|l| l == want),
                "api-versions lists {want}"
            );
        }
        let ns = ok(k.run(&["get", "ns", "-o", "name"]));
        for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.contains(&format!("namespace/{want}")), "{ns}");
        }
        let svc: Value =
            serde_json::from_str(&ok(k.run(&["get", "svc", "kubernetes", "-o", "json"]))).unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
        assert_eq!(ok(k.run(&["get", "--raw", "/livez"])), "ok");
        let ep: Value = serde_json::from_str(&ok(k.run(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "json",
        ])))
        .unwrap();
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
        assert_eq!(ep["subsets"][0]["ports"][0]["port"], s.port);
        let slice = ok(k.run(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "name",
        ]));
        assert_eq!(slice.trim(), "endpointslice.discovery.k8s.io/kubernetes");
        let explain = ok(k.run(&["explain", "pods.spec.containers"]));
        assert!(
            explain.contains("KIND:") && explain.contains("Pod"),
            "{explain}"
        );
        assert!(explain.contains("image"), "{explain}");
        let explain = ok(k.run(&["explain", "deployment.spec.strategy"]));
        assert!(
            explain.contains("GROUP:") && explain.contains("apps"),
            "{explain}"
        );
        // OpenAPI v2, fetched as gnostic protobuf, down through references.
        let explain = ok(k.run(&[
            "explain",
            "deploy.spec.template.spec.containers.ports",
            "--output=plaintext-openapiv2",
        ]));
        assert!(
            explain.contains("KIND:     Deployment") && explain.contains("List of ports"),
            "{explain}"
        );
        let cs = ok(k.run(&["get", "componentstatuses"]));
        assert!(
            cs.contains("etcd-0") && cs.contains("scheduler") && cs.contains("controller-manager"),
            "{cs}"
        );
    }
}

#[test]
fn create_get_select_delete() {
    let s = Server::start();
    for k in Kubectl::each(&s) {
        eprintln!("kubectl: {}", k.bin);
        assert!(ok(k.stdin(&["create", "-f", "-"], CM)).contains("configmap/cm1 created"));
        let got: Value =
            serde_json::from_str(&ok(k.run(&["get", "cm", "cm1", "-o", "json"]))).unwrap();
        assert_eq!(got["data"]["a"], "1");
        assert_eq!(got["metadata"]["namespace"], "default");
        assert!(
            got["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u.len() == 36)
        );
        assert!(got["metadata"]["resourceVersion"].as_str().is_some());
        assert_eq!(
            ok(k.run(&["get", "cm", "-l", "app=web", "-o", "name"])).trim(),
            "configmap/cm1"
        );
        assert_eq!(
            ok(k.run(&["get", "cm", "-l", "app in (db)", "-o", "name"])).trim(),
            ""
        );
        assert_eq!(
            ok(k.run(&[
                "get",
                "cm",
                "--field-selector",
                "metadata.name=cm1",
                "-o",
                "name"
            ]))
            .trim(),
            "configmap/cm1"
        );
        let again = k.stdin(&["create", "-f", "-"], CM);
        assert!(!again.status.success());
        assert!(text(&again).contains("AlreadyExists"), "{}", text(&again));
        let described = ok(k.run(&["describe", "cm", "cm1"]));
        assert!(
            described.contains("Name:         cm1") && described.contains("app=web"),
            "{described}"
        );
        let table = ok(k.run(&["get", "cm", "cm1"]));
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "DATA", "AGE"], "{table}");
        assert!(ok(k.run(&["delete", "cm", "cm1"])).contains("deleted"));
        let gone = k.run(&["get", "cm", "cm1"]);
        assert!(text(&gone).contains("NotFound"), "{}", text(&gone));
    }
}

#[test]
fn bad_input_is_refused_and_stores_nothing() {
    let s = Server::start();
    for k in Kubectl::each(&s) {
        eprintln!("kubectl: {}", k.bin);
        let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\nbogus: 1\n";
        let out = k.stdin(&["create", "-f", "-"], unknown);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("unknown field \"bogus\""),
            "{}",
            text(&out)
        );
        let bad_name = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n";
        let out = k.stdin(&["create", "-f", "-"], bad_name);
        assert!(text(&out).contains("is invalid"), "{}", text(&out));
        let wrong_type = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: [1]\n";
        let out = k.stdin(&["create", "-f", "-"], wrong_type);
        assert!(!out.status.success(), "{}", text(&out));
        let no_ns = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nope\n";
        let out = k.stdin(&["create", "-f", "-"], no_ns);
        assert!(
            text(&out).contains("namespaces \"nope\" not found"),
            "{}",
            text(&out)
        );
        assert!(user_configmaps(&ok(k.run(&["get", "cm", "-A", "-o", "name"]))).is_empty());
    }
}

/// The configmaps of `kubectl get -o name` but those every cluster has (kube-root-ca.crt
/// in each namespace, cluster-info in kube-public).
/// The ConfigMaps a cluster does not start with (nor make itself: the root CA, cluster-info,
/// the agents' settings and the manifests' record).
fn user_configmaps(names: &str) -> Vec<&str> {
    const OWN: &[&str] = &[
        "configmap/kube-root-ca.crt",
        "configmap/cluster-info",
        "configmap/minik-config",
        "configmap/minik-manifests",
    ];
    names.lines().filter(|l| !OWN.contains(l)).collect()
}

#[test]
fn chunked_lists_and_namespaces() {
    let s = Server::start();
    for k in Kubectl::each(&s) {
        eprintln!("kubectl: {}", k.bin);
        let mut docs = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n");
        for i in 0..25 {
            docs.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i:02}\n  namespace: team\n"
        ));
        }
        ok(k.stdin(&["create", "-f", "-"], &docs));
        let names = ok(k.run(&["get", "cm", "-n", "team", "--chunk-size=7", "-o", "name"]));
        assert_eq!(user_configmaps(&names).len(), 25, "{names}");
        let all = ok(k.run(&["get", "cm", "-A", "--chunk-size=4", "-o", "name"]));
        assert_eq!(user_configmaps(&all).len(), 25);
        // Deleting the namespace deletes what is in it.
        ok(k.run(&["delete", "ns", "team"]));
        let left = ok(k.run(&["get", "cm", "-A", "-o", "name"]));
        assert!(user_configmaps(&left).is_empty());
    }
}

#[test]
fn get_watch_streams_changes() {
    let s = Server::start();
    for k in Kubectl::each(&s) {
        eprintln!("kubectl: {}", k.bin);
        let mut watch = s
            .kubectl_cmd(&["get", "cm", "-w", "--request-timeout=30s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = watch.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The watch is open once kubectl printed the (empty) list or the first event.
        std::thread::sleep(Duration::from_millis(1500));
        ok(k.stdin(&["create", "-f", "-"], CM));
        ok(k.run(&["delete", "cm", "cm1"]));
        let mut seen = Vec::new();
        while seen
            .iter()
            .filter(|l: &&String| l.starts_with("cm1"))
            .count()
            < 2
        {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("watch lines so far: {seen:?}"),
            }
        }
        let _ = watch.kill();
        let _ = watch.wait();
    }
}

#[test]
fn events_expire_after_the_ttl() {
    let s = Server::start_with(&["--event-ttl", "2s"]);
    let k = &Kubectl::each(&s)[0];
    let event = "apiVersion: v1
kind: Event
metadata:
  name: e1
involvedObject:
  kind: Pod
  name: p
  namespace: default
reason: Testing
message: soon gone
type: Normal
";
    ok(k.stdin(&["create", "-f", "-"], event));
    assert!(ok(k.run(&["get", "events", "-o", "name"])).contains("event/e1"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let names = ok(k.run(&["get", "events", "-o", "name"]));
        if !names.contains("event/e1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "event still there after 30 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// kubectl's typed commands POST protobuf (`k8s\0` + runtime.Unknown).
#[test]
fn typed_create_commands_send_protobuf() {
    let s = Server::start();
    for (i, k) in Kubectl::each(&s).into_iter().enumerate() {
        let ns = format!("typed-{i}");
        ok(k.run(&["create", "namespace", &ns]));
        let n = ["-n", ns.as_str()];
        let run = |args: &[&str]| ok(k.run(&[&n[..], args].concat()));
        run(&[
            "create",
            "configmap",
            "cm",
            "--from-literal=a=b",
            "--from-literal=c.d=e",
        ]);
        run(&[
            "create",
            "secret",
            "generic",
            "sec",
            "--from-literal=pw=hunter2",
        ]);
        run(&[
            "create",
            "deployment",
            "web",
            "--image=busybox:1.36",
            "--replicas=0",
            "--port=80",
        ]);
        run(&["create", "service", "clusterip", "svc", "--tcp=80:8080"]);
        run(&["create", "job", "j", "--image=busybox", "--", "echo", "hi"]);
        run(&["create", "role", "r", "--verb=get", "--resource=pods"]);
        run(&["create", "rolebinding", "rb", "--role=r", "--user=bob"]);
        run(&[
            "run",
            "p",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sleep",
            "1",
        ]);
        run(&["create", "ingress", "ing", "--rule=foo.com/bar=svc:80"]);
        let get =
            |what: &str, path: &str| run(&["get", what, "-o", &format!("jsonpath={{{path}}}")]);
        assert_eq!(get("cm/cm", ".data.c\\.d"), "e");
        assert_eq!(get("secret/sec", ".data.pw"), "aHVudGVyMg==");
        assert_eq!(get("deploy/web", ".spec.replicas"), "0");
        assert_eq!(
            get(
                "deploy/web",
                ".spec.template.spec.containers[0].ports[0].containerPort"
            ),
            "80"
        );
        assert!(get("svc/svc", ".spec.clusterIP").starts_with("10.43."));
        assert_eq!(get("svc/svc", ".spec.ports[0].targetPort"), "8080");
        assert_eq!(
            get("job/j", ".spec.template.spec.containers[0].command"),
            "[\"echo\",\"hi\"]"
        );
        assert_eq!(get("rolebinding/rb", ".subjects[0].name"), "bob");
        assert_eq!(get("pod/p", ".spec.restartPolicy"), "Never");
        assert_eq!(
            get(
                "ingress/ing",
                ".spec.rules[0].http.paths[0].backend.service.port.number"
            ),
            "80"
        );
        ok(k.run(&["delete", "namespace", &ns]));
    }
}

/// A restart keeps the data and the certificates; kill -9 loses nothing acknowledged.
#[test]
fn data_survives_restart_and_kill9() {
    let mut s = Server::start();
    let kubeconfig = std::fs::read_to_string(&s.kubeconfig).unwrap();
    {
        let k = &Kubectl::each(&s)[0];
        ok(k.stdin(&["create", "-f", "-"], CM));
    }
    s.restart(false);
    assert_eq!(
        std::fs::read_to_string(&s.kubeconfig).unwrap(),
        kubeconfig,
        "same CA and client cert"
    );
    let k = &Kubectl::each(&s)[0];
    assert_eq!(
        ok(k.run(&["get", "cm", "cm1", "-o", "jsonpath={.data.a}"])),
        "1"
    );
    let mut docs = String::new();
    for i in 0..20 {
        docs.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k{i}\n"
        ));
    }
    ok(k.stdin(&["create", "-f", "-"], &docs));
    s.restart(true);
    let k = &Kubectl::each(&s)[0];
    let names = ok(k.run(&["get", "cm", "-o", "name"]));
    for i in 0..20 {
        assert!(
            names.contains(&format!("configmap/k{i}\n")),
            "k{i} lost after kill -9:\n{names}"
        );
    }
    // Bootstrap is idempotent: still one kubernetes service.
    assert_eq!(
        ok(k.run(&["get", "svc", "-o", "name"])).trim(),
        "service/kubernetes"
    );
}
