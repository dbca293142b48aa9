//! What a request asks to do, as authorizers see it: a verb on a resource (group,
//! resource, subresource, namespace, name) or on a non-resource path.

use axum::extract::Request;
use axum::http::Method;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// False for non-resource requests (`path` then says what).
    pub resource_request: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

fn http_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

impl Attributes {
    /// The attributes of an HTTP request.
    pub fn of(registry: &minik_registry::Registry, req: &Request) -> Attributes {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("");
        let watch = query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
            ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
            _ => return Attributes::non_resource(http_verb(req.method()), &path),
        };
        let namespaced = |r: &str| {
            registry
                .find(group, version, r)
                .is_some_and(|i| i.namespaced)
        };
        let (resource, name, sub, namespace) = match rest {
            ["namespaces", ns] => ("namespaces", *ns, "", ""),
            // As kube-apiserver's RequestInfoFactory: what follows a namespace is a resource
            // in it (also one of an aggregated API this registry does not know), unless it is
            // the namespace's own status or finalize.
            ["namespaces", ns, r, more @ ..]
                if namespaced(r) || !matches!(*r, "status" | "finalize") =>
            {
                (
                    *r,
                    more.first().copied().unwrap_or(""),
                    more.get(1).copied().unwrap_or(""),
                    *ns,
                )
            }
            ["namespaces", ns, s] => ("namespaces", *ns, *s, ""),
            [r, more @ ..] => (
                *r,
                more.first().copied().unwrap_or(""),
                more.get(1).copied().unwrap_or(""),
                "",
            ),
            [] => return Attributes::non_resource(http_verb(req.method()), &path),
        };
        let mut verb = crate::path::verb(req.method(), !name.is_empty(), watch);
        // As kube-apiserver 1.35+ (AuthorizePodWebsocketUpgradeCreatePermission): exec,
        // attach and port-forward over a WebSocket (a GET) need create, as over SPDY (POST).
        if resource == "pods"
            && matches!(sub, "exec" | "attach" | "portforward")
            && crate::proxy::is_upgrade(req.headers())
        {
            verb = "create";
        }
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: namespace.into(),
            name: name.into(),
            path,
        }
    }

    pub(crate) fn non_resource(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// From a SubjectAccessReview spec (resourceAttributes or nonResourceAttributes).
    pub fn from_review(spec: &Value) -> Attributes {
        let t = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        match spec.get("resourceAttributes") {
            Some(r) => Attributes {
                verb: t(r, "verb"),
                resource_request: true,
                group: t(r, "group"),
                resource: t(r, "resource"),
                subresource: t(r, "subresource"),
                namespace: t(r, "namespace"),
                name: t(r, "name"),
                path: String::new(),
            },
            None => {
                let n = spec
                    .get("nonResourceAttributes")
                    .cloned()
                    .unwrap_or_default();
                Attributes::non_resource(&t(&n, "verb"), &t(&n, "path"))
            }
        }
    }

    /// kube-apiserver's words for a refusal.
    pub fn forbidden_message(&self, user: &str) -> String {
        if !self.resource_request {
            return format!(
                "forbidden: User \"{user}\" cannot {} path \"{}\"",
                self.verb, self.path
            );
        }
        let mut what = self.resource.clone();
        if !self.subresource.is_empty() {
            what = format!("{what}/{}", self.subresource);
        }
        let grouped = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let subject = if self.name.is_empty() {
            grouped
        } else {
            format!("{grouped} \"{}\"", self.name)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", self.namespace)
        };
        format!(
            "{subject} is forbidden: User \"{user}\" cannot {} resource \"{what}\" in API group \"{}\" {scope}",
            self.verb, self.group
        )
    }
}
