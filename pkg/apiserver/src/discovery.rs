//! Discovery: /version, legacy (/api, /apis, per group-version resource lists) and
//! aggregated (apidiscovery.k8s.io/v2) documents, all from the resource table.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minik_api::ResourceInfo;
use serde_json::{Value, json};

use crate::AppState;
use crate::status::json_response;

/// A served subresource: its verbs and the kind it answers with (None: the parent's).
type Served = (
    &'static str,
    &'static [&'static str],
    Option<(&'static str, &'static str, &'static str)>,
);

/// Subresources served so far; discovery lists only these.
const SERVED_SUBRESOURCES: &[Served] = &[
    ("status", &["get", "patch", "update"], None),
    (
        "scale",
        &["get", "patch", "update"],
        Some(("autoscaling", "v1", "Scale")),
    ),
    ("binding", &["create"], Some(("", "v1", "Binding"))),
    ("eviction", &["create"], Some(("policy", "v1", "Eviction"))),
    ("ephemeralcontainers", &["get", "patch", "update"], None),
    ("log", &["get"], None),
    (
        "exec",
        &["create", "get"],
        Some(("", "v1", "PodExecOptions")),
    ),
    (
        "attach",
        &["create", "get"],
        Some(("", "v1", "PodAttachOptions")),
    ),
    (
        "portforward",
        &["create", "get"],
        Some(("", "v1", "PodPortForwardOptions")),
    ),
    (
        "proxy",
        &["create", "delete", "get", "patch", "update"],
        None,
    ),
    ("finalize", &["update"], None),
    ("approval", &["get", "update"], None),
    (
        "token",
        &["create"],
        Some(("authentication.k8s.io", "v1", "TokenRequest")),
    ),
];

/// The served subresource `sub` of `r`, if any.
pub fn served_subresource(r: &ResourceInfo, sub: &str) -> Option<&'static Served> {
    SERVED_SUBRESOURCES
        .iter()
        .find(|(s, _, _)| *s == sub && r.subresources.contains(s))
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub async fn version() -> Response {
    let body = json!({
        "major": minik_version::KUBERNETES_MAJOR,
        "minor": minik_version::KUBERNETES_MINOR,
        "emulationMajor": minik_version::KUBERNETES_MAJOR,
        "emulationMinor": minik_version::KUBERNETES_MINOR,
        "gitVersion": format!("{}+minik", minik_version::KUBERNETES_VERSION),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    });
    json_response(StatusCode::OK, &body, &[])
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Group names in first-seen order, each with its versions in table order (the first is
/// the preferred one).
fn group_versions(res: &[&'static ResourceInfo]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in res.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2;"))
}

fn aggregated(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, AGGREGATED)],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

fn group_version_json(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    json!({
        "name": group,
        "versions": versions.iter().map(|v| group_version_json(group, v)).collect::<Vec<_>>(),
        "preferredVersion": group_version_json(group, versions[0]),
    })
}

pub async fn core_versions(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return aggregated(discovery_list(&state.registry.resources(), true));
    }
    let body = json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    });
    json_response(StatusCode::OK, &body, &[])
}

/// The groups served here and by aggregated API servers.
fn all_groups(state: &AppState) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = group_versions(&state.registry.resources())
        .into_iter()
        .map(|(g, vs)| (g.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect();
    for (g, v, _) in state.aggregator.discovery() {
        match out.iter_mut().find(|(og, _)| *og == g) {
            Some((_, vs)) if !vs.contains(&v) => vs.push(v),
            Some(_) => {}
            None => out.push((g, vec![v])),
        }
    }
    out
}

pub async fn groups(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let res = state.registry.resources();
    if wants_aggregated(&headers) {
        let mut list = discovery_list(&res, false);
        if let Some(items) = list["items"].as_array_mut() {
            items.extend(aggregated_items(&state));
        }
        return aggregated(list);
    }
    let groups: Vec<Value> = all_groups(&state)
        .iter()
        .map(|(g, vs)| {
            let vs: Vec<&str> = vs.iter().map(String::as_str).collect();
            api_group(g, &vs)
        })
        .collect();
    let body = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups});
    json_response(StatusCode::OK, &body, &[])
}

pub async fn group(State(state): State<AppState>, Path(group): Path<String>) -> Response {
    match all_groups(&state).iter().find(|(g, _)| *g == group) {
        Some((g, vs)) => {
            let vs: Vec<&str> = vs.iter().map(String::as_str).collect();
            let mut body = api_group(g, &vs);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &body, &[])
        }
        None => {
            crate::status::not_found_path(format!("/apis/{group}").parse().unwrap_or_default())
                .await
        }
    }
}

fn resource_list(res: &[&'static ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in res
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for served in served_subresources(r) {
            let (group, version, kind) = sub_kind(r, served);
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, served.0),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": served.1,
            });
            if served.2.is_some() {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn served_subresources(r: &ResourceInfo) -> impl Iterator<Item = &'static Served> + '_ {
    SERVED_SUBRESOURCES
        .iter()
        .filter(|(s, _, _)| r.subresources.contains(s))
}

/// (group, version, kind) a subresource answers with.
fn sub_kind<'a>(r: &'a ResourceInfo, served: &'a Served) -> (&'a str, &'a str, &'a str) {
    let proxy = match (served.0, r.kind) {
        ("proxy", "Pod") => Some("PodProxyOptions"),
        ("proxy", "Service") => Some("ServiceProxyOptions"),
        ("proxy", "Node") => Some("NodeProxyOptions"),
        _ => None,
    };
    match proxy {
        Some(kind) => ("", "v1", kind),
        None => served.2.unwrap_or((r.group, r.version, r.kind)),
    }
}

pub async fn core_resources(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Response {
    let res = state.registry.resources();
    respond_list(
        resource_list(&res, "", &version),
        &format!("/api/{version}"),
    )
}

pub async fn group_resources(
    State(state): State<AppState>,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    respond_list(
        resource_list(&state.registry.resources(), &group, &version),
        &format!("/apis/{group}/{version}"),
    )
}

fn respond_list(list: Option<Value>, path: &str) -> Response {
    match list {
        Some(body) => json_response(StatusCode::OK, &body, &[]),
        None => {
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": format!("the server could not find the requested resource (path {path})"),
                "reason": "NotFound", "details": {}, "code": 404});
            json_response(StatusCode::NOT_FOUND, &body, &[])
        }
    }
}

/// apidiscovery.k8s.io/v2 APIGroupDiscoveryList for the core group or every named group.
fn discovery_list(res: &[&'static ResourceInfo], core: bool) -> Value {
    let groups: Vec<(&str, Vec<&str>)> = if core {
        vec![("", vec!["v1"])]
    } else {
        group_versions(res)
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = res
                        .iter()
                        .filter(|r| r.group == *g && r.version == *v)
                        .map(|r| discovery_resource(r))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut item = json!({"metadata": {}, "versions": versions});
            if !g.is_empty() {
                item["metadata"]["name"] = json!(g);
            }
            item
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {}, "items": items})
}

/// apidiscovery v2 items of the aggregated group-versions, from their APIResourceLists.
fn aggregated_items(state: &AppState) -> Vec<Value> {
    let mut items: Vec<Value> = Vec::new();
    for (g, v, list) in state.aggregator.discovery() {
        let all: Vec<Value> = list["resources"].as_array().cloned().unwrap_or_default();
        let resources: Vec<Value> = all
            .iter()
            .filter(|r| !r["name"].as_str().unwrap_or("").contains('/'))
            .map(|r| {
                let name = r["name"].as_str().unwrap_or("");
                let subs: Vec<Value> = all
                    .iter()
                    .filter_map(|s| {
                        let sub = s["name"].as_str()?.strip_prefix(&format!("{name}/"))?;
                        Some(json!({"subresource": sub, "verbs": s["verbs"],
                            "responseKind": {"group": g, "version": v, "kind": s["kind"]}}))
                    })
                    .collect();
                let mut e = json!({"resource": name,
                    "responseKind": {"group": g, "version": v, "kind": r["kind"]},
                    "scope": if r["namespaced"] == json!(true) { "Namespaced" } else { "Cluster" },
                    "singularResource": r["singularName"], "verbs": r["verbs"]});
                for k in ["shortNames", "categories"] {
                    if let Some(x) = r.get(k) {
                        e[k] = x.clone();
                    }
                }
                if !subs.is_empty() {
                    e["subresources"] = json!(subs);
                }
                e
            })
            .collect();
        let version = json!({"version": v, "resources": resources, "freshness": "Current"});
        match items
            .iter_mut()
            .find(|i| i["metadata"]["name"] == g.as_str())
        {
            Some(item) => {
                if let Some(vs) = item["versions"].as_array_mut() {
                    vs.push(version);
                }
            }
            None => items.push(json!({"metadata": {"name": g}, "versions": [version]})),
        }
    }
    items
}

fn discovery_resource(r: &ResourceInfo) -> Value {
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": kind,
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    let subs: Vec<Value> = served_subresources(r)
        .map(|served| {
            let (group, version, k) = sub_kind(r, served);
            json!({"subresource": served.0, "verbs": served.1,
                "responseKind": {"group": group, "version": version, "kind": k}})
        })
        .collect();
    if !subs.is_empty() {
        entry["subresources"] = json!(subs);
    }
    entry
}
