//! RBAC escalation prevention: a user who may write roles and bindings can grant only what
//! they hold, unless a role gives them `escalate` or `bind`.

use minik_tests::server::{Kubectl, Server, ok, text};

const HELD: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-admin, namespace: team}
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, update, get, list]
- apiGroups: ['']
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-role-admin, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-admin}
subjects: [{kind: User, name: bob}]
";

fn role(name: &str, verb: &str, resource: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {name}, namespace: team}}\nrules:\n- apiGroups: ['']\n  resources: [{resource}]\n  verbs: [{verb}]\n"
    )
}

#[test]
fn grants_are_limited_to_what_the_granter_holds() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "bob-t,bob,u-2\n").unwrap();
    let s = Server::start_with(&["--token-auth-file", tokens.to_str().unwrap()]);
    ok(s.kubectl(&["create", "namespace", "team"]));
    ok(s.kubectl_stdin(&["apply", "-f", "-"], HELD));
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        let bob = |args: &[&str]| k.run(&[&["--token", "bob-t", "-n", "team"][..], args].concat());
        let bob_in = |args: &[&str], input: &str| {
            k.stdin(
                &[&["--token", "bob-t", "-n", "team"][..], args].concat(),
                input,
            )
        };
        // What bob holds he may hand on.
        ok(bob_in(
            &["create", "-f", "-"],
            &role(&format!("readers{i}"), "get", "pods"),
        ));
        ok(bob(&[
            "create",
            "rolebinding",
            &format!("r{i}"),
            &format!("--role=readers{i}"),
            "--user=carol",
        ]));
        // What he does not hold he may not.
        let out = bob_in(
            &["create", "-f", "-"],
            &role(&format!("deleters{i}"), "delete", "secrets"),
        );
        assert!(!out.status.success());
        let t = text(&out);
        assert!(
            t.contains(&format!("roles.rbac.authorization.k8s.io \"deleters{i}\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:")),
            "{t}"
        );
        assert!(
            t.contains("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"delete\"]}"),
            "{t}"
        );
        let out = bob(&[
            "create",
            "rolebinding",
            &format!("a{i}"),
            "--clusterrole=admin",
            "--user=carol",
        ]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("is attempting to grant RBAC permissions not currently held"),
            "{}",
            text(&out)
        );
    }
    // `bind` on one role lets him bind it; `escalate` lets him write any role.
    let extra = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: binder, namespace: team}
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  resourceNames: [view]
  verbs: [bind]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles]
  verbs: [escalate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-binder, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: binder}
subjects: [{kind: User, name: bob}]
";
    ok(s.kubectl_stdin(&["apply", "-f", "-"], extra));
    let bob = |args: &[&str]| s.kubectl(&[&["--token", "bob-t", "-n", "team"][..], args].concat());
    ok(bob(&[
        "create",
        "rolebinding",
        "v",
        "--clusterrole=view",
        "--user=carol",
    ]));
    let out = bob(&[
        "create",
        "rolebinding",
        "e",
        "--clusterrole=edit",
        "--user=carol",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    ok(s.kubectl_stdin(
        &["--token", "bob-t", "-n", "team", "create", "-f", "-"],
        &role("deleters", "delete", "secrets"),
    ));
}
