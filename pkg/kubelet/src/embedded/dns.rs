//! A pod's /etc/resolv.conf (kubelet's dnsPolicy rules, written the way containerd writes
//! the sandbox's file) and /etc/hosts (kubelet's managed hosts file).

use k8s_openapi::api::core::v1::{HostAlias, Pod};

/// Search domains and nameservers beyond these are dropped, as the kubelet does.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
/// Where pods of dnsPolicy Default go when the host only has a local stub resolver (k3s).
const FALLBACK_NAMESERVER: &str = "8.8.8.8";

/// A resolv.conf's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl Resolv {
    /// Read resolv.conf text (later "search" lines replace earlier ones, as libc does).
    pub fn parse(text: &str) -> Resolv {
        let mut r = Resolv::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.nameservers.extend(words.next().map(str::to_string)),
                Some("search" | "domain") => r.searches = words.map(str::to_string).collect(),
                Some("options") => r.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        r
    }

    /// The file as containerd writes it: search, nameserver, options lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

fn is_loopback(ns: &str) -> bool {
    ns.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The host's resolver configuration for pods: /etc/resolv.conf, unless it only names
/// loopback resolvers (systemd-resolved's stub), then systemd's upstream file, else a
/// public resolver (what k3s gives the kubelet).
pub fn host_resolv(etc: &str, systemd: Option<&str>) -> Resolv {
    let usable =
        |r: &Resolv| !r.nameservers.is_empty() && !r.nameservers.iter().all(|n| is_loopback(n));
    let main = Resolv::parse(etc);
    if usable(&main) {
        return main;
    }
    if let Some(upstream) = systemd.map(Resolv::parse).filter(usable) {
        return upstream;
    }
    Resolv {
        nameservers: vec![FALLBACK_NAMESERVER.into()],
        ..main
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The pod's resolv.conf per its dnsPolicy and dnsConfig.
pub fn pod_resolv(pod: &Pod, host: &Resolv, cluster_dns: Option<&str>, domain: &str) -> Resolv {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut r = match (policy, cluster_first, cluster_dns) {
        ("None", _, _) => Resolv::default(),
        (_, true, Some(dns)) => {
            let mut searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ];
            push_unique(&mut searches, host.searches.iter().cloned());
            Resolv {
                nameservers: vec![dns.to_string()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        // Default, or ClusterFirst without a cluster DNS: the node's resolvers.
        _ => host.clone(),
    };
    if let Some(config) = &spec.dns_config {
        push_unique(
            &mut r.nameservers,
            config.nameservers.iter().flatten().cloned(),
        );
        push_unique(&mut r.searches, config.searches.iter().flatten().cloned());
        for o in config.options.iter().flatten() {
            let rendered = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let name = o.name.as_deref().unwrap_or_default();
            r.options.retain(|x| x.split(':').next() != Some(name));
            r.options.push(rendered);
        }
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCHES);
    r
}

/// The pod's hostname and, with a subdomain, its domain ("<sub>.<ns>.svc.<domain>").
pub fn hostname(pod: &Pod, domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut name: String = name.chars().take(63).collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sub = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}.{namespace}.svc.{domain}"));
    (name, sub)
}

fn aliases(host_aliases: &[HostAlias]) -> String {
    if host_aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in host_aliases {
        let names = a.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", a.ip));
    }
    out
}

/// The managed /etc/hosts of a pod on the pod network.
pub fn managed_hosts(
    ips: &[String],
    name: &str,
    domain: Option<&str>,
    extra: &[HostAlias],
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        match domain {
            Some(d) => out.push_str(&format!("{ip}\t{name}.{d}\t{name}\n")),
            None => out.push_str(&format!("{ip}\t{name}\n")),
        }
    }
    out + &aliases(extra)
}

/// The /etc/hosts of a hostNetwork pod: the node's, with the pod's aliases.
pub fn host_network_hosts(node_hosts: &str, extra: &[HostAlias]) -> String {
    format!(
        "# Kubernetes-managed hosts file (host network).\n{node_hosts}{}",
        aliases(extra)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(policy: &str, host_network: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: Some(policy.into()),
                host_network: Some(host_network),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn dns_policies_pick_the_resolvers() {
        let host = Resolv::parse("nameserver 192.168.1.1\nsearch lan\noptions edns0\n");
        let r = pod_resolv(
            &pod("ClusterFirst", false),
            &Resolv::default(),
            Some("10.43.0.10"),
            "cluster.local",
        );
        assert_eq!(
            r.render(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
        let r = pod_resolv(
            &pod("ClusterFirst", false),
            &host,
            Some("10.43.0.10"),
            "cluster.local",
        );
        assert_eq!(r.searches.last().map(String::as_str), Some("lan"));
        assert_eq!(
            pod_resolv(&pod("Default", false), &host, Some("10.43.0.10"), "c"),
            host
        );
        assert_eq!(
            pod_resolv(&pod("ClusterFirst", true), &host, Some("10.43.0.10"), "c"),
            host
        );
        assert_eq!(
            pod_resolv(
                &pod("ClusterFirstWithHostNet", true),
                &host,
                Some("10.43.0.10"),
                "c"
            )
            .nameservers,
            vec!["10.43.0.10"]
        );
        assert_eq!(
            pod_resolv(&pod("ClusterFirst", false), &host, None, "c"),
            host
        );
        let mut p = pod("None", false);
        if let Some(s) = p.spec.as_mut() {
            s.dns_config = Some(PodDNSConfig {
                nameservers: Some(vec!["1.1.1.1".into()]),
                searches: Some(vec!["a.example".into()]),
                options: Some(vec![PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                }]),
            });
        }
        assert_eq!(
            pod_resolv(&p, &host, Some("10.43.0.10"), "c").render(),
            "search a.example\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
    }

    #[test]
    fn loopback_host_resolvers_are_replaced() {
        let stub = "nameserver 127.0.0.53\nsearch home\n";
        assert_eq!(
            host_resolv(stub, Some("nameserver 10.0.0.1\n")).nameservers,
            vec!["10.0.0.1"]
        );
        let r = host_resolv(stub, None);
        assert_eq!(
            (r.nameservers, r.searches),
            (vec!["8.8.8.8".to_string()], vec!["home".to_string()])
        );
    }

    #[test]
    fn hosts_files_are_the_kubelets() {
        let alias = HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: Some(vec!["foo".into(), "bar".into()]),
        };
        let hosts = managed_hosts(
            &["10.42.0.5".into()],
            "web",
            Some("sub.shop.svc.cluster.local"),
            &[alias],
        );
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("10.42.0.5\tweb.sub.shop.svc.cluster.local\tweb\n"));
        assert!(hosts.ends_with("\n# Entries added by HostAliases.\n10.1.2.3\tfoo\tbar\n"));
        assert_eq!(
            hostname(&pod("ClusterFirst", false), "cluster.local"),
            ("web".into(), None)
        );
    }
}
