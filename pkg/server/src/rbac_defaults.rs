//! The roles and bindings Kubernetes bootstraps (kube-apiserver's RBAC defaults), made at
//! start when missing: cluster-admin for system:masters, admin/edit/view for users to bind
//! (aggregated from system:aggregate-to-admin/edit/view and any role labelled to join them),
//! discovery, basic-user and public-info-viewer for everyone.

use minik_registry::{ApiError, Registry, WriteParams};
use serde_json::{Value, json};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

/// What `view` may read, by API group.
const WORKLOADS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "pods/log",
            "pods/status",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "replicationcontrollers/status",
            "serviceaccounts",
            "services",
            "services/status",
            "events",
            "limitranges",
            "resourcequotas",
            "resourcequotas/status",
            "namespaces",
            "namespaces/status",
        ],
    ),
    (
        "apps",
        &[
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
    ),
    (
        "autoscaling",
        &[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ],
    ),
    (
        "batch",
        &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
    ),
    (
        "policy",
        &["poddisruptionbudgets", "poddisruptionbudgets/status"],
    ),
    (
        "networking.k8s.io",
        &["ingresses", "ingresses/status", "networkpolicies"],
    ),
    ("discovery.k8s.io", &["endpointslices"]),
    ("events.k8s.io", &["events"]),
];

fn rules(verbs: &[&str], extra: &[(&str, &[&str])]) -> Vec<Value> {
    WORKLOADS
        .iter()
        .chain(extra)
        .map(|(g, r)| json!({"apiGroups": [g], "resources": r, "verbs": verbs}))
        .collect()
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    let mut role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules});
    // admin, edit and view also take the rules of roles labelled to aggregate into them
    // (how operators extend them for their custom resources).
    if ["admin", "edit", "view"].contains(&name) {
        role["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels":
            {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}]});
    }
    role
}

/// `system:aggregate-to-<name>`, whose rules join the roles `into`.
fn aggregate_to(name: &str, into: &[&str], rules: Vec<Value>) -> Value {
    let mut role = cluster_role(&format!("system:aggregate-to-{name}"), rules);
    for target in into {
        role["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{target}")] =
            json!("true");
    }
    role
}

/// The rules of `sets` in order, each once (as aggregation makes them).
fn union(sets: &[&Vec<Value>]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for rule in sets.iter().copied().flatten() {
        if !out.contains(rule) {
            out.push(rule.clone());
        }
    }
    out
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| match g.strip_prefix("user:") {
            Some(user) => {
                json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user})
            }
            None => json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g}),
        })
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

fn defaults() -> (Vec<Value>, Vec<Value>) {
    let secrets: &[(&str, &[&str])] = &[("", &["secrets"])];
    let write_all: Vec<&str> = READ.iter().chain(WRITE).copied().collect();
    let mut edit = rules(&write_all, secrets);
    edit.push(
        json!({"apiGroups": [""], "resources": ["pods/attach", "pods/exec",
        "pods/portforward", "pods/proxy", "pods/eviction", "services/proxy"],
        "verbs": ["create", "get"]}),
    );
    let admin = vec![
        json!({"apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["rolebindings", "roles"], "verbs": write_all}),
        json!({"apiGroups": ["authorization.k8s.io"],
            "resources": ["localsubjectaccessreviews"], "verbs": ["create"]}),
    ];
    let view = rules(READ, &[]);
    let public = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let mut roles = vec![
        cluster_role(
            "cluster-admin",
            vec![
                json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        // What admin, edit and view aggregate (the aggregation controller keeps them the
        // union; they start as it so they are usable before it runs).
        cluster_role("admin", union(&[&admin, &edit, &view])),
        cluster_role("edit", union(&[&edit, &view])),
        cluster_role("view", view.clone()),
        aggregate_to("admin", &["admin"], admin),
        aggregate_to("edit", &["admin", "edit"], edit),
        aggregate_to("view", &["admin", "edit", "view"], view),
        cluster_role(
            "system:discovery",
            vec![json!({"nonResourceURLs": ["/api", "/api/*",
            "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
            "/version", "/version/"], "verbs": ["get"]})],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                json!({"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}),
                json!({"apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]}),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![json!({"nonResourceURLs": public, "verbs": ["get"]})],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![
                json!({"nonResourceURLs": ["/.well-known/openid-configuration",
                "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/"],
                "verbs": ["get"]}),
            ],
        ),
        // The controller manager acts on every kind of object (as its per-controller
        // service accounts together do in kube-controller-manager).
        cluster_role(
            "system:kube-controller-manager",
            vec![json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})],
        ),
        cluster_role("system:kube-scheduler", scheduler_rules()),
        metrics_reader(),
        // Everything on the kubelet API (what the API server's kubelet client is bound to).
        cluster_role(
            "system:kubelet-api-admin",
            vec![
                json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}),
                json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["proxy"]}),
                json!({"apiGroups": [""], "resources": ["nodes/proxy", "nodes/metrics",
                "nodes/stats", "nodes/log", "nodes/pods", "nodes/healthz", "nodes/configz"],
                "verbs": ["*"]}),
            ],
        ),
    ];
    roles.extend(csr_roles());
    let bindings = vec![
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            &["user:system:kube-controller-manager"],
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            &["user:system:kube-scheduler"],
        ),
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
        // As kubeadm binds them for its bootstrap tokens: bootstrapping kubelets may ask for
        // a client certificate, which is approved at once; nodes' renewals are too.
        binding(
            "minik:kubelet-bootstrap",
            "system:node-bootstrapper",
            &["system:bootstrappers"],
        ),
        binding(
            "minik:node-autoapprove-bootstrap",
            NODE_CLIENT,
            &["system:bootstrappers"],
        ),
        binding(
            "minik:node-autoapprove-certificate-rotation",
            SELF_NODE_CLIENT,
            &["system:nodes"],
        ),
        binding(
            "minik:node-autoapprove-serving",
            SELF_NODE_SERVING,
            &["system:nodes"],
        ),
    ];
    (roles, bindings)
}

const NODE_CLIENT: &str = "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
const SELF_NODE_CLIENT: &str =
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";
/// Nodes' own serving certificates (minik's agents ask for theirs by CSR).
const SELF_NODE_SERVING: &str =
    "minik:certificates.k8s.io:certificatesigningrequests:selfnodeserving";

/// kube-apiserver's roles for certificate requests: kubelets bootstrapping ask for
/// certificates; `nodeclient` and `selfnodeclient` are what the CSR approver checks.
fn csr_roles() -> Vec<Value> {
    let csr = |resource: &str, verbs: &[&str]| {
        vec![json!({"apiGroups": ["certificates.k8s.io"], "resources": [resource], "verbs": verbs})]
    };
    vec![
        cluster_role(
            "system:node-bootstrapper",
            csr(
                "certificatesigningrequests",
                &["create", "get", "list", "watch"],
            ),
        ),
        cluster_role(
            NODE_CLIENT,
            csr("certificatesigningrequests/nodeclient", &["create"]),
        ),
        cluster_role(
            SELF_NODE_CLIENT,
            csr("certificatesigningrequests/selfnodeclient", &["create"]),
        ),
        cluster_role(
            SELF_NODE_SERVING,
            csr("certificatesigningrequests/selfnodeserving", &["create"]),
        ),
    ]
}

/// Reading the resource metrics API (`kubectl top`), joined to view, edit and admin, as
/// metrics-server installs it.
fn metrics_reader() -> Value {
    let rule = json!({"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"],
        "verbs": READ});
    let mut role = cluster_role("system:aggregated-metrics-reader", vec![rule]);
    for target in ["admin", "edit", "view"] {
        role["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{target}")] =
            json!("true");
    }
    role
}

/// kube-scheduler's: read what placement depends on; bind, evict (preempt) and report.
fn scheduler_rules() -> Vec<Value> {
    vec![
        json!({"apiGroups": ["*"], "resources": ["*"], "verbs": READ}),
        json!({"apiGroups": [""], "resources": ["bindings", "pods/binding"], "verbs": ["create"]}),
        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}),
        json!({"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]}),
        // VolumeBinding binds volumes to claims and marks claims with the chosen node.
        json!({"apiGroups": [""], "resources": ["persistentvolumeclaims", "persistentvolumes"],
            "verbs": ["patch", "update"]}),
        json!({"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
            "verbs": ["create", "patch", "update"]}),
        json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["create", "get", "update"]}),
    ]
}

/// Create the default roles and bindings that are missing.
pub async fn ensure(registry: &Registry) -> Result<(), ApiError> {
    let find = |plural| minik_api::builtin("rbac.authorization.k8s.io", "v1", plural);
    let (roles, bindings) = defaults();
    create_missing(registry, find("clusterroles"), roles).await?;
    create_missing(registry, find("clusterrolebindings"), bindings).await
}

/// Create the cluster-scoped `objects` of `info` that do not exist yet.
pub async fn create_missing(
    registry: &Registry,
    info: &minik_api::ResourceInfo,
    objects: impl IntoIterator<Item = serde_json::Value>,
) -> Result<(), ApiError> {
    for obj in objects {
        match registry
            .create(info, None, obj, &WriteParams::default())
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
