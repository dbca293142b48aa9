//! NetworkPolicies to one nft script for the table `inet minik-policy`.
//!
//! The `forward` chain (priority filter, after DNAT) accepts replies, accepts the node's own
//! traffic, then sends packets from egress-isolated pods and to ingress-isolated pods of this
//! node, through address-keyed verdict maps, to one chain per pod and direction. A pod's
//! chain `return`s what one of its policies' rules allows and rejects the rest; so traffic
//! between two isolated pods of the node must pass the sender's egress chain, then the
//! receiver's ingress chain. Each rule's peers are a named interval set per family.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;

use super::PolicyOptions;
use super::addr::Family;
use super::select::{
    Cluster, Direction, Port, Protocol, has_type, is_local, named_port, pod_ips, ports, rules,
    selects,
};

/// The longest set or chain name the kernel takes (256 bytes with the NUL), with room to spare.
const MAX_NAME: usize = 240;

/// A script that removes the table `inet <name>` (and does nothing if it is absent).
pub fn delete_script(name: &str) -> String {
    format!("table inet {name} {{}}\ndelete table inet {name}\n")
}

/// One rule compiled against the cluster: what the pod chains of its policy refer to.
struct Compiled {
    /// Peer sets by family; None: any peer.
    peers: Option<Vec<(Family, String)>>,
    /// None: all ports.
    ports: Option<Vec<Port>>,
    /// Egress named ports: sets of (peer address, protocol, port) by family.
    named: Vec<(Family, String)>,
}

/// The whole table as one script that (re)creates it atomically.
/// Objects come owned or shared (`Arc`s from the informers' stores, not copied).
pub fn render(
    pods: &[impl Borrow<Pod>],
    namespaces: &[impl Borrow<Namespace>],
    policies: &[impl Borrow<NetworkPolicy>],
    options: &PolicyOptions,
) -> String {
    let cluster = Cluster::new(pods, namespaces);
    let mut policies: Vec<&NetworkPolicy> = policies.iter().map(Borrow::borrow).collect();
    policies.sort_by_key(|p| (p.namespace(), p.name_any()));
    let mut local: Vec<&Pod> = pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p| is_local(p, &options.node_name))
        .collect();
    local.sort_by_key(|p| (p.namespace(), p.name_any()));

    let mut sets = String::new();
    let mut chains = String::new();
    let mut maps: HashMap<(&str, Family), Vec<String>> = HashMap::new();
    let mut claimed = HashSet::new();
    let mut compiled: HashMap<(usize, &str), Vec<Compiled>> = HashMap::new();
    for dir in Direction::ALL {
        for pod in &local {
            let selecting: Vec<usize> = (0..policies.len())
                .filter(|i| has_type(policies[*i], dir) && selects(policies[*i], pod))
                .collect();
            if selecting.is_empty() {
                continue;
            }
            let chain = ident(&[
                dir.short(),
                &pod.namespace().unwrap_or_default(),
                &pod.name_any(),
            ]);
            // A pod cannot block access to itself (through a Service, its packets pass here).
            let mut body: Vec<String> = pod_ips(pod)
                .iter()
                .map(|ip| format!("{} {} {ip} return", Family::of(ip).nft(), dir.peer_field()))
                .collect();
            for i in selecting {
                let rules = compiled
                    .entry((i, dir.short()))
                    .or_insert_with(|| compile(&cluster, policies[i], dir, &mut sets));
                for rule in rules.iter() {
                    body.extend(rule_lines(dir, rule, pod));
                }
            }
            body.push("reject with icmpx admin-prohibited".to_string());
            let about = format!("{} of pod {}", dir.short(), key(pod));
            block(&mut chains, "chain", &chain, Some(&about), &body);
            for ip in pod_ips(pod) {
                // Two pods claiming one address (a stale object) would make nft refuse the map.
                if !claimed.insert((dir.short(), ip)) {
                    tracing::warn!(pod = key(pod), %ip, "address already claimed by another pod");
                    continue;
                }
                let entry = maps.entry((dir.short(), Family::of(&ip))).or_default();
                entry.push(format!("{ip} : jump {chain}"));
            }
        }
    }

    let mut out = delete_script(&options.table);
    let _ = writeln!(out, "table inet {} {{", options.table);
    let table_comment = format!("minik NetworkPolicy (node {})", options.node_name);
    let _ = writeln!(out, "\t{}", comment(&table_comment));
    out.push_str(&sets);
    let mut forward = vec![
        "type filter hook forward priority filter; policy accept;".to_string(),
        "ct state established,related accept".to_string(),
        "fib saddr type local accept".to_string(),
    ];
    for dir in [Direction::Egress, Direction::Ingress] {
        for family in Family::ALL {
            let name = format!("{}-pods-{}", dir.short(), family.suffix());
            let elements = maps.remove(&(dir.short(), family)).unwrap_or_default();
            let mut lines = vec![format!("type {} : verdict", family.addr_type())];
            lines.extend(elements_line(&elements));
            block(&mut out, "map", &name, None, &lines);
            forward.push(format!("{} {} vmap @{name}", family.nft(), dir.pod_field()));
        }
    }
    block(&mut out, "chain", "forward", None, &forward);
    out.push_str(&chains);
    out.push_str("}\n");
    out
}

/// Compile `policy`'s `dir` rules, writing the sets they need into `sets`.
fn compile(
    cluster: &Cluster<'_>,
    policy: &NetworkPolicy,
    dir: Direction,
    sets: &mut String,
) -> Vec<Compiled> {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let mut out = Vec::new();
    for (index, rule) in rules(policy, dir).into_iter().enumerate() {
        let index = index.to_string();
        let (addrs, peer_pods) = match rule.peers {
            Some(peers) => {
                let (addrs, pods) = cluster.resolve(&ns, peers);
                (Some(addrs), pods)
            }
            None => (None, cluster.peers.clone()),
        };
        let peers = addrs.map(|addrs| {
            let mut refs = Vec::new();
            for family in Family::ALL {
                if addrs.is_empty(family) {
                    continue;
                }
                let set = ident(&[dir.short(), &ns, &name, &index, family.suffix()]);
                let mut lines = vec![
                    format!("type {}", family.addr_type()),
                    "flags interval".to_string(),
                ];
                lines.extend(elements_line(&addrs.elements(family)));
                block(sets, "set", &set, None, &lines);
                refs.push((family, set));
            }
            refs
        });
        let ports = rule.ports.map(ports);
        let mut named = Vec::new();
        if dir == Direction::Egress {
            let wanted: Vec<(Protocol, &str)> = (ports.iter().flatten())
                .filter_map(|p| match p {
                    Port::Named(proto, n) => Some((*proto, n.as_str())),
                    _ => None,
                })
                .collect();
            for family in Family::ALL {
                let mut elements = BTreeSet::new();
                for (proto, port_name) in &wanted {
                    for pod in &peer_pods {
                        let numbers = named_port(pod, *proto, port_name);
                        let ips = pod_ips(pod)
                            .into_iter()
                            .filter(|ip| Family::of(ip) == family);
                        for ip in ips {
                            for n in &numbers {
                                elements.insert(format!("{ip} . {} . {n}", proto.nft()));
                            }
                        }
                    }
                }
                if elements.is_empty() {
                    continue;
                }
                let set = ident(&[
                    dir.short(),
                    &ns,
                    &name,
                    &index,
                    &format!("named-{}", family.suffix()),
                ]);
                let elements: Vec<String> = elements.into_iter().collect();
                let mut lines = vec![format!(
                    "type {} . inet_proto . inet_service",
                    family.addr_type()
                )];
                lines.extend(elements_line(&elements));
                block(sets, "set", &set, None, &lines);
                named.push((family, set));
            }
        }
        out.push(Compiled {
            peers,
            ports,
            named,
        });
    }
    out
}

/// The chain lines of one compiled rule for `pod` (each `return`s what it allows).
fn rule_lines(dir: Direction, rule: &Compiled, pod: &Pod) -> Vec<String> {
    let port_matches: Vec<String> = match &rule.ports {
        None => vec![String::new()],
        Some(ports) => ports
            .iter()
            .flat_map(|p| match p {
                Port::All(proto) => vec![format!("meta l4proto {}", proto.nft())],
                Port::Range(proto, lo, hi) => vec![port_match(*proto, *lo, *hi)],
                Port::Named(proto, name) if dir == Direction::Ingress => {
                    let numbers = named_port(pod, *proto, name);
                    numbers
                        .into_iter()
                        .map(|n| port_match(*proto, n, n))
                        .collect()
                }
                Port::Named(..) => Vec::new(),
            })
            .collect(),
    };
    let peer_matches: Vec<String> = match &rule.peers {
        None => vec![String::new()],
        Some(sets) => sets
            .iter()
            .map(|(family, set)| format!("{} {} @{set}", family.nft(), dir.peer_field()))
            .collect(),
    };
    let mut lines = Vec::new();
    for peer in &peer_matches {
        for port in &port_matches {
            let parts: Vec<&str> = [peer.as_str(), port.as_str(), "return"]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            lines.push(parts.join(" "));
        }
    }
    for (family, set) in &rule.named {
        lines.push(format!(
            "{} daddr . meta l4proto . th dport @{set} return",
            family.nft()
        ));
    }
    lines
}

fn port_match(proto: Protocol, lo: u16, hi: u16) -> String {
    if lo == hi {
        format!("{} dport {lo}", proto.nft())
    } else {
        format!("{} dport {lo}-{hi}", proto.nft())
    }
}

/// `elements = { ... }`, or nothing for no elements (nft refuses empty braces).
fn elements_line(elements: &[String]) -> Option<String> {
    (!elements.is_empty()).then(|| format!("elements = {{ {} }}", elements.join(", ")))
}

/// Write `kind name { comment; lines }` at one tab of indentation.
fn block(out: &mut String, kind: &str, name: &str, comment: Option<&str>, lines: &[String]) {
    let _ = writeln!(out, "\t{kind} {name} {{");
    if let Some(c) = comment {
        let _ = writeln!(out, "\t\t{}", self::comment(c));
    }
    for line in lines {
        let _ = writeln!(out, "\t\t{line}");
    }
    out.push_str("\t}\n");
}

/// A `comment "..."` statement (nft takes at most 128 characters, no quotes).
fn comment(text: &str) -> String {
    let text: String = text.chars().filter(|c| *c != '"').take(120).collect();
    format!("comment \"{text}\"")
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// A set or chain name from `parts` joined by `/`: characters nft would not take become
/// `_`, and a name too long for the kernel is cut and given a hash of the whole.
fn ident(parts: &[&str]) -> String {
    let name: String = parts
        .join("/")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    format!("{}.{:016x}", &name[..MAX_NAME - 17], hasher.finish())
}
