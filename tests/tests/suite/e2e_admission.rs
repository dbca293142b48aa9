//! The built-in admission plugins through kubectl: PodSecurity, ValidatingAdmissionPolicy,
//! ResourceQuota, LimitRanger, ServiceAccount, Priority, DefaultTolerationSeconds,
//! NamespaceLifecycle, and a broken admission setup refused at start.

use minik_tests::server::{Kubectl, Server, ok, start_fails, text};
use serde_json::{Value, json};

fn pod(name: &str, ns: &str, security: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": security}]}})
    .to_string()
}

#[test]
fn pod_security_restricted_rejects_a_privileged_pod() {
    let s = Server::start();
    ok(s.kubectl(&["create", "namespace", "locked"]));
    ok(s.kubectl(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ]));
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        let out = k.stdin(
            &["create", "-f", "-"],
            &pod(&format!("p{i}"), "locked", json!({"privileged": true})),
        );
        assert!(!out.status.success());
        let t = text(&out);
        assert!(
            t.contains(&format!(
                "pods \"p{i}\" is forbidden: violates PodSecurity \"restricted:latest\""
            )),
            "{t}"
        );
        assert!(
            t.contains("privileged (container \"c\" must not set securityContext.privileged=true)"),
            "{t}"
        );
        assert!(t.contains("runAsNonRoot != true"), "{t}");
    }
    let hardened = json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
    ok(s.kubectl_stdin(&["create", "-f", "-"], &pod("fine", "locked", hardened)));
    // A privileged ephemeral container cannot be slipped into it either.
    let mut with_debug: Value = serde_json::from_str(&ok(
        s.kubectl(&["get", "pod", "fine", "-n", "locked", "-o", "json"])
    ))
    .unwrap();
    with_debug["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "busybox",
        "securityContext": {"privileged": true}}]);
    let out = s.kubectl_stdin(
        &["replace", "--subresource=ephemeralcontainers", "-f", "-"],
        &with_debug.to_string(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("violates PodSecurity \"restricted:latest\""),
        "{}",
        text(&out)
    );
    // Workloads are only warned about; a bad level on a namespace is refused.
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "locked"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]}}}});
    let out = s.kubectl_stdin(&["create", "-f", "-"], &deploy.to_string());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Warning: would violate PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true)"), "{}", text(&out));
    let out = s.kubectl(&[
        "label",
        "namespace",
        "default",
        "pod-security.kubernetes.io/enforce=strictest",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("must be one of privileged, baseline, restricted"),
        "{}",
        text(&out)
    );
    // Elsewhere (privileged by default) the privileged pod is fine.
    ok(s.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("free", "default", json!({"privileged": true})),
    ));
}

#[test]
fn a_validating_admission_policy_denies_with_params() {
    let s = Server::start();
    let docs = [
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "replica-limit", "namespace": "default"}, "data": {"max": "3"}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "max-replicas"},
            "spec": {"failurePolicy": "Fail",
                "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "variables": [{"name": "wanted", "expression": "object.spec.replicas"}],
                "validations": [{"expression": "variables.wanted <= int(params.data.max)",
                    "messageExpression": "'at most ' + params.data.max + ' replicas'"}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "max-replicas-default"},
            "spec": {"policyName": "max-replicas", "validationActions": ["Deny"],
                "paramRef": {"name": "replica-limit", "namespace": "default",
                    "parameterNotFoundAction": "Deny"}}}),
    ];
    let all: Vec<String> = docs.iter().map(Value::to_string).collect();
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &all.join("\n")));
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        let name = format!("big{i}");
        let out = k.run(&[
            "create",
            "deployment",
            &name,
            "--image=busybox",
            "--replicas=5",
        ]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-default' denied request: at most 3 replicas"),
            "{}",
            text(&out)
        );
        let small = format!("small{i}");
        ok(k.run(&[
            "create",
            "deployment",
            &small,
            "--image=busybox",
            "--replicas=2",
        ]));
        // The scale subresource is not among the policy's resources; updates are.
        ok(k.run(&["scale", "deployment", &small, "--replicas=9"]));
        let out = k.run(&[
            "patch",
            "deployment",
            &small,
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":7}}"#,
        ]);
        assert!(text(&out).contains("at most 3 replicas"), "{}", text(&out));
    }
    // A Warn binding lets the request through with a warning.
    ok(s.kubectl(&[
        "patch",
        "validatingadmissionpolicybinding",
        "max-replicas-default",
        "--type=merge",
        "-p",
        r#"{"spec":{"validationActions":["Warn"]}}"#,
    ]));
    let out = s.kubectl(&[
        "create",
        "deployment",
        "warned",
        "--image=busybox",
        "--replicas=5",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Warning: Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-default': at most 3 replicas"), "{}", text(&out));
}

#[test]
fn a_quota_rejects_the_object_over_it() {
    let s = Server::start();
    ok(s.kubectl(&["create", "namespace", "small"]));
    // kube-root-ca.crt counts too, as in every namespace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !s
        .kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", "small"])
        .status
        .success()
    {
        assert!(std::time::Instant::now() < deadline, "kube-root-ca.crt");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ok(s.kubectl(&[
        "create",
        "quota",
        "q",
        "-n",
        "small",
        "--hard=count/configmaps=3,pods=1,requests.cpu=1",
    ]));
    ok(s.kubectl(&["create", "configmap", "a", "-n", "small"]));
    ok(s.kubectl(&["create", "configmap", "b", "-n", "small"]));
    let out = s.kubectl(&["create", "configmap", "c", "-n", "small"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("configmaps \"c\" is forbidden: exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=3, limited: count/configmaps=3"),
        "{}",
        text(&out)
    );
    // A pod must say what it requests of a limited resource, and stay within it.
    let out = s.kubectl_stdin(&["create", "-f", "-"], &pod("p", "small", json!({})));
    assert!(
        text(&out).contains("failed quota: q: must specify requests.cpu for: c"),
        "{}",
        text(&out)
    );
    let with_cpu = |name: &str, cpu: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "small"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": cpu}}}]}})
        .to_string()
    };
    let out = s.kubectl_stdin(&["create", "-f", "-"], &with_cpu("big", "1500m"));
    assert!(text(&out).contains("exceeded quota: q, requested: requests.cpu=1500m, used: requests.cpu=0, limited: requests.cpu=1"), "{}", text(&out));
    ok(s.kubectl_stdin(&["create", "-f", "-"], &with_cpu("p1", "500m")));
    let out = s.kubectl_stdin(&["create", "-f", "-"], &with_cpu("p2", "100m"));
    assert!(
        text(&out).contains("exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"),
        "{}",
        text(&out)
    );
    // kubectl describe shows what is used.
    let used = ok(s.kubectl(&[
        "get",
        "quota",
        "q",
        "-n",
        "small",
        "-o",
        "jsonpath={.status.used}",
    ]));
    let used: Value = serde_json::from_str(&used).unwrap();
    assert_eq!(used["count/configmaps"], "3");
    assert_eq!(used["pods"], "1");
    assert_eq!(used["requests.cpu"], "500m");
    // A deletion gives back what the object took.
    ok(s.kubectl(&["delete", "configmap", "a", "-n", "small"]));
    let used = ok(s.kubectl(&[
        "get",
        "quota",
        "q",
        "-n",
        "small",
        "-o",
        "jsonpath={.status.used.count/configmaps}",
    ]));
    assert_eq!(used, "2");
    // Many at once: the quota still holds exactly.
    ok(s.kubectl(&[
        "create",
        "quota",
        "cm",
        "-n",
        "default",
        "--hard=count/configmaps=5",
    ]));
    let before = ok(s.kubectl(&["get", "cm", "-n", "default", "-o", "name"]))
        .lines()
        .count();
    let children: Vec<_> = (0..10)
        .map(|i| {
            s.kubectl_cmd(&["create", "configmap", &format!("many{i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        c.wait().unwrap();
    }
    let after = ok(s.kubectl(&["get", "cm", "-n", "default", "-o", "name"]))
        .lines()
        .count();
    assert_eq!(after, before.max(5));
}

#[test]
fn pod_defaults_from_limit_ranges_service_accounts_and_priority() {
    let s = Server::start();
    let range = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr", "namespace": "default"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "200m"},
            "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"}}]}});
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &range.to_string()));
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"priorityClassName": "system-cluster-critical",
            "containers": [{"name": "c", "image": "busybox"}]}});
    ok(s.kubectl_stdin(&["create", "-f", "-"], &p.to_string()));
    let got: Value =
        serde_json::from_str(&ok(s.kubectl(&["get", "pod", "p", "-o", "json"]))).unwrap();
    let spec = &got["spec"];
    assert_eq!(
        spec["containers"][0]["resources"],
        json!({"limits": {"cpu": "200m"}, "requests": {"cpu": "100m"}})
    );
    assert_eq!(
        got["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container c; cpu limit for container c"
    );
    assert_eq!(spec["serviceAccountName"], "default");
    let volume = &spec["volumes"][0];
    assert!(
        volume["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-"),
        "{volume}"
    );
    assert_eq!(
        volume["projected"]["sources"][0]["serviceAccountToken"]["path"],
        "token"
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(spec["priority"], 2_000_000_000);
    let tolerations: Vec<&str> = spec["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        tolerations,
        [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable"
        ]
    );
    // Over the range's max, or a class that does not exist: refused.
    let big = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "2"}}}]}});
    let out = s.kubectl_stdin(&["create", "-f", "-"], &big.to_string());
    assert!(
        text(&out).contains("maximum cpu usage per Container is 1, but limit is 2"),
        "{}",
        text(&out)
    );
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nope"},
        "spec": {"priorityClassName": "nope", "containers": [{"name": "c", "image": "busybox"}]}});
    let out = s.kubectl_stdin(&["create", "-f", "-"], &p.to_string());
    assert!(
        text(&out).contains("no PriorityClass with name nope was found"),
        "{}",
        text(&out)
    );
    // The cluster's own namespaces stay.
    let out = s.kubectl(&["delete", "namespace", "kube-system"]);
    assert!(
        text(&out)
            .contains("namespaces \"kube-system\" is forbidden: this namespace may not be deleted"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_broken_admission_setup_stops_the_server_at_start() {
    let err = start_fails(&["--enable-admission-plugins=Bogus"], &[]);
    assert!(
        err.contains("admission plugin \"Bogus\" is unknown"),
        "{err}"
    );
    let err = start_fails(
        &["--enable-admission-plugins=ClusterTrustBundleAttest"],
        &[],
    );
    assert!(
        err.contains("admission plugin \"ClusterTrustBundleAttest\" is not available in minik"),
        "{err}"
    );
    let config = "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  configuration:\n    apiVersion: pod-security.admission.config.k8s.io/v1\n    kind: PodSecurityConfiguration\n    defaults:\n      enforce: strictest\n";
    let err = start_fails(
        &["--admission-control-config-file", "admission.yaml"],
        &[("admission.yaml", config)],
    );
    assert!(err.contains("PodSecurityConfiguration defaults.enforce: \"strictest\" must be one of privileged, baseline, restricted"), "{err}");
    let err = start_fails(&["--admission-control-config-file", "missing.yaml"], &[]);
    assert!(
        err.contains("reading admission configuration missing.yaml"),
        "{err}"
    );
}

#[test]
fn pod_security_defaults_come_from_the_admission_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("admission.yaml");
    std::fs::write(&config, "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  configuration:\n    apiVersion: pod-security.admission.config.k8s.io/v1\n    kind: PodSecurityConfiguration\n    defaults:\n      enforce: baseline\n    exemptions:\n      namespaces: [kube-system]\n").unwrap();
    let s = Server::start_with(&["--admission-control-config-file", config.to_str().unwrap()]);
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("p", "default", json!({"privileged": true})),
    );
    assert!(
        text(&out).contains("violates PodSecurity \"baseline:latest\": privileged"),
        "{}",
        text(&out)
    );
    ok(s.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("p", "kube-system", json!({"privileged": true})),
    ));
}

#[test]
fn evictions_go_through_admission() {
    let s = Server::start();
    let docs = [
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "no-evictions"},
            "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["pods/eviction"]}]},
                "validations": [{"expression": "object.kind != 'Eviction'", "message": "evictions are paused"}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "no-evictions"},
            "spec": {"policyName": "no-evictions", "validationActions": ["Deny"]}}),
    ];
    let all: Vec<String> = docs.iter().map(Value::to_string).collect();
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &all.join("\n")));
    ok(s.kubectl_stdin(&["create", "-f", "-"], &pod("p", "default", json!({}))));
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "p", "namespace": "default"}});
    let file = s.dir.path().join("eviction.json");
    std::fs::write(&file, eviction.to_string()).unwrap();
    let out = s.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/p/eviction",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(
        text(&out).contains("evictions are paused"),
        "{}",
        text(&out)
    );
    ok(s.kubectl(&["get", "pod", "p"]));
}
