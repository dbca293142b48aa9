//! Resource paths: what `/api/v1/...` and `/apis/<g>/<v>/...` name.

use minik_api::ResourceInfo;

/// The target of a resource request.
#[derive(Debug, Clone)]
pub struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// A custom resource's additionalPrinterColumns (for Table output).
    pub printer: Vec<serde_json::Value>,
}

/// The Kubernetes verb of a resource request: `named` when it names one object.
pub fn verb(method: &axum::http::Method, named: bool, watch: bool) -> &'static str {
    use axum::http::Method;
    match (method, named) {
        (&Method::GET | &Method::HEAD, false) if watch => "watch",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, false) => "deletecollection",
        (&Method::DELETE, true) => "delete",
        _ => "unknown",
    }
}

/// Parse the segments after the group-version. `None` when no resource matches.
pub fn parse(
    registry: &minik_registry::Registry,
    group: &str,
    version: &str,
    rest: &str,
) -> Option<Target> {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let find = |plural: &str| registry.find(group, version, plural);
    // namespaces/<ns>/<resource>/... when <resource> is a namespaced resource here.
    if segs.len() >= 3
        && segs[0] == "namespaces"
        && let Some(info) = find(segs[2]).filter(|i| i.namespaced)
    {
        return build(registry, info, Some(segs[1]), &segs[3..]);
    }
    let info = find(segs.first()?)?;
    build(registry, info, None, &segs[1..])
}

fn build(
    registry: &minik_registry::Registry,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    rest: &[&str],
) -> Option<Target> {
    // Only a proxy subresource has a path of its own after it.
    if rest.len() > 2 && rest[1] != "proxy" {
        return None;
    }
    Some(Target {
        info,
        namespace: namespace.map(str::to_string),
        name: rest.first().map(|s| s.to_string()),
        subresource: rest.get(1).map(|s| s.to_string()),
        printer: registry.printer_columns(info),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paths() {
        let store = minik_store::open("memory://", std::path::Path::new("/"), Default::default())
            .await
            .unwrap();
        let reg = minik_registry::Registry::new(store);
        let parse = |g: &str, v: &str, rest: &str| parse(&reg, g, v, rest);
        let t = parse("", "v1", "namespaces/default/pods/p1/status").unwrap();
        assert_eq!(t.info.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("p1"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let ns = parse("", "v1", "namespaces/kube-system").unwrap();
        assert_eq!(ns.info.plural, "namespaces");
        assert_eq!(ns.name.as_deref(), Some("kube-system"));
        let fin = parse("", "v1", "namespaces/x/finalize").unwrap();
        assert_eq!(fin.subresource.as_deref(), Some("finalize"));
        let all = parse("apps", "v1", "deployments").unwrap();
        assert_eq!(all.namespace, None);
        assert!(parse("", "v1", "nothings").is_none());
        assert!(parse("", "v1", "namespaces/a/pods/b/c/d").is_none());
        let proxy = parse("", "v1", "namespaces/a/pods/b:80/proxy/x/y").unwrap();
        assert_eq!(proxy.subresource.as_deref(), Some("proxy"));
        assert_eq!(proxy.name.as_deref(), Some("b:80"));
    }
}
