//! What every cluster starts with: the four namespaces, and the `kubernetes` service with
//! its Endpoints and EndpointSlice pointing at this server.

use std::net::IpAddr;

use minik_api::ResourceInfo;
use minik_registry::{ApiError, Registry, WriteParams};
use serde_json::{Value, json};

/// The address other nodes and pods reach this server at: the bind address when one is
/// given, else the first non-loopback IPv4 address of an interface that is up.
pub fn advertise_address(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    let found = nix::ifaddrs::getifaddrs().ok().and_then(|addrs| {
        addrs
            .filter(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
            .filter_map(|a| a.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
            .find(|ip| !ip.is_loopback())
    });
    found.unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Create `obj`, or replace what is there (keeping its resourceVersion for the CAS).
pub(crate) async fn create_or_replace(
    registry: &Registry,
    info: &ResourceInfo,
    ns: &str,
    mut obj: Value,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match registry.get(info, Some(ns), &name).await {
        Ok(current) => {
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            registry
                .update(info, Some(ns), &name, obj, false, &WriteParams::default())
                .await
                .map(|_| ())
        }
        Err(ApiError::NotFound { .. }) => ensure(
            registry
                .create(info, Some(ns), obj, &WriteParams::default())
                .await,
        ),
        Err(e) => Err(e),
    }
}

/// Point the `kubernetes` service's Endpoints and EndpointSlice at `ip:port`.
pub async fn endpoints(registry: &Registry, ip: IpAddr, port: u16) -> Result<(), ApiError> {
    let eps = minik_api::builtin("", "v1", "endpoints");
    let obj = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    create_or_replace(registry, eps, "default", obj).await?;
    let slices = minik_api::builtin("discovery.k8s.io", "v1", "endpointslices");
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    create_or_replace(registry, slices, "default", slice).await
}

/// Create what is missing; leave what exists. `dns`: the cluster DNS address, reserved by
/// the `kube-dns` service in kube-system (as k3s's CoreDNS manifest has it); each node
/// answers on it itself, so the service has no selector and the proxy leaves it alone.
pub async fn run(
    registry: &Registry,
    cidr: minik_registry::ServiceCidr,
    dns: Option<IpAddr>,
) -> Result<(), ApiError> {
    let namespaces = minik_api::builtin("", "v1", "namespaces");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        ensure(
            registry
                .create(namespaces, None, obj, &WriteParams::default())
                .await,
        )?;
    }
    let services = minik_api::builtin("", "v1", "services");
    let first = cidr.nth(1).to_string();
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": first, "clusterIPs": [first],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
    });
    ensure(
        registry
            .create(services, Some("default"), svc, &WriteParams::default())
            .await,
    )?;
    let Some(dns) = dns.map(|ip| ip.to_string()) else {
        return Ok(());
    };
    let family = if dns.contains(':') { "IPv6" } else { "IPv4" };
    let port = |name: &str, protocol: &str, port: u16| json!({"name": name, "port": port, "protocol": protocol, "targetPort": port});
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS",
                "kubernetes.io/cluster-service": "true"}},
        "spec": {"type": "ClusterIP", "clusterIP": dns, "clusterIPs": [dns],
            "ipFamilies": [family], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
            "ports": [port("dns", "UDP", 53), port("dns-tcp", "TCP", 53)]},
    });
    ensure(
        registry
            .create(services, Some("kube-system"), svc, &WriteParams::default())
            .await,
    )
}

fn ensure<T>(r: Result<T, ApiError>) -> Result<(), ApiError> {
    match r {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Who this server is when it holds a leader Lease: the host name and a random suffix (as
/// kube-controller-manager's `<hostname>_<uuid>`).
pub fn leader_identity() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "minik".into());
    format!("{host}_{}", minik_controllers::util::random_suffix(8))
}
