//! The nftables script of the proxy's table, from the port plans (model.rs), as kube-proxy's
//! nftables mode lays it out: a verdict map from `address . protocol . port` to a per-service
//! chain that picks an endpoint at random (`numgen`), a per-endpoint chain that DNATs, and
//! reject rules for services without endpoints. Everything is written in dependency order
//! (a set, map or chain before whatever names it), in one `table { ... }` block; update.rs
//! puts it after what replaces or refreshes the table.

use std::collections::HashSet;
use std::fmt::Write;

use super::model::{Backend, PortPlan};

/// The packet mark asking nat postrouting to masquerade.
const MASQ_MARK: &str = "0x00004000";

/// The names of one port plan's chains and sets.
struct Names<'p> {
    plan: &'p PortPlan,
}

impl Names<'_> {
    /// Internal traffic (the cluster IP).
    fn service(&self) -> String {
        format!("svc-{}", self.plan.id)
    }
    /// All endpoints of the cluster: the service chain itself unless that one holds local
    /// endpoints only (internalTrafficPolicy Local).
    fn cluster(&self) -> String {
        if self.plan.internal_local {
            format!("clu-{}", self.plan.id)
        } else {
            self.service()
        }
    }
    /// External traffic (node port, external and load-balancer IPs).
    fn external(&self) -> String {
        format!("ext-{}", self.plan.id)
    }
    fn endpoint(&self, b: &Backend) -> String {
        format!("ep-{}__{}/{}", self.plan.id, b.ip, b.port)
    }
    /// The clients an endpoint served lately. The timeout is part of the name: a set keeps
    /// its definition across updates, so a new timeout needs a new set.
    fn affinity(&self, b: &Backend) -> String {
        let secs = self.plan.affinity_seconds.unwrap_or_default();
        format!("aff-{}__{}/{}/{secs}s", self.plan.id, b.ip, b.port)
    }
    /// Every endpoint that gets a chain: the cluster's and the local ones (a local
    /// terminating endpoint may be used by policy Local while ready ones exist elsewhere).
    fn backends(&self) -> Vec<&Backend> {
        let mut all: Vec<&Backend> = self.plan.cluster.iter().chain(&self.plan.local).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// The table's contents: `table <table> { ... }` (`table`: family and name).
pub fn body(table: &str, plans: &[PortPlan], cluster_cidr: &str) -> String {
    let mut out = String::with_capacity(1024 + plans.len() * 1024);
    let _ = writeln!(out, "table {table} {{");
    for p in plans {
        affinity_sets(&mut out, p);
    }
    let _ = writeln!(
        out,
        "\tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | {MASQ_MARK}\n\t}}"
    );
    out.push_str(
        "\tchain reject-chain {\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject with icmp type port-unreachable\n\t}\n",
    );
    for p in plans {
        port_chains(&mut out, p, cluster_cidr);
    }
    maps(&mut out, plans);
    let _ = writeln!(
        out,
        "\tchain masquerading {{\n\t\tmeta mark & {MASQ_MARK} == 0 return\n\t\tmeta mark set meta mark ^ {MASQ_MARK}\n\t\tmasquerade fully-random\n\t}}"
    );
    out.push_str(
        "\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n\t}\n",
    );
    base_chains(&mut out, cluster_cidr);
    out.push_str("}\n");
    out
}

fn affinity_sets(out: &mut String, p: &PortPlan) {
    let Some(timeout) = p.affinity_seconds else {
        return;
    };
    let names = Names { plan: p };
    for b in names.backends() {
        let _ = writeln!(
            out,
            "\tset {} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s\n\t}}",
            names.affinity(b)
        );
    }
}

/// A port's endpoint chains, then the chains that choose among them.
fn port_chains(out: &mut String, p: &PortPlan, cluster_cidr: &str) {
    let names = Names { plan: p };
    for b in names.backends() {
        let _ = writeln!(out, "\tchain {} {{", names.endpoint(b));
        let _ = writeln!(out, "\t\tip saddr {} jump mark-for-masquerade", b.ip);
        if p.affinity_seconds.is_some() {
            let _ = writeln!(out, "\t\tupdate @{} {{ ip saddr }}", names.affinity(b));
        }
        let _ = writeln!(
            out,
            "\t\tmeta l4proto {} dnat to {}:{}",
            p.proto.nft(),
            b.ip,
            b.port
        );
        out.push_str("\t}\n");
    }
    if p.cluster.is_empty() {
        return; // rejected in the filter chains instead
    }
    // Internal traffic: from outside the pod network (the host, another node) it is
    // masqueraded so replies come back through here.
    let _ = writeln!(out, "\tchain {} {{", names.service());
    let _ = writeln!(
        out,
        "\t\tip daddr {} {} dport {} ip saddr != {cluster_cidr} jump mark-for-masquerade",
        p.cluster_ip,
        p.proto.nft(),
        p.port
    );
    pick(
        out,
        &names,
        if p.internal_local {
            &p.local
        } else {
            &p.cluster
        },
    );
    out.push_str("\t}\n");
    if p.internal_local && p.has_external() {
        let _ = writeln!(out, "\tchain {} {{", names.cluster());
        pick(out, &names, &p.cluster);
        out.push_str("\t}\n");
    }
    if !p.has_external() {
        return;
    }
    let cluster = names.cluster();
    let _ = writeln!(out, "\tchain {} {{", names.external());
    if p.external_local {
        // Pods and the host itself may use any endpoint; others get local ones only, with
        // their source address kept.
        let _ = writeln!(out, "\t\tip saddr {cluster_cidr} goto {cluster}");
        out.push_str("\t\tfib saddr type local jump mark-for-masquerade\n");
        let _ = writeln!(out, "\t\tfib saddr type local goto {cluster}");
        pick(out, &names, &p.local);
    } else {
        out.push_str("\t\tjump mark-for-masquerade\n");
        let _ = writeln!(out, "\t\tgoto {cluster}");
    }
    out.push_str("\t}\n");
}

/// Rules sending a packet to one of `backends`: its remembered endpoint first (session
/// affinity), else a random one; none → drop.
fn pick(out: &mut String, names: &Names<'_>, backends: &[Backend]) {
    if backends.is_empty() {
        out.push_str("\t\tdrop\n");
        return;
    }
    if names.plan.affinity_seconds.is_some() {
        for b in backends {
            let _ = writeln!(
                out,
                "\t\tip saddr @{} goto {}",
                names.affinity(b),
                names.endpoint(b)
            );
        }
    }
    let _ = write!(out, "\t\tnumgen random mod {} vmap {{ ", backends.len());
    for (i, b) in backends.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}{i} : goto {}", names.endpoint(b));
    }
    out.push_str(" }\n");
}

/// The dispatch maps: served addresses and node ports, and those without endpoints.
fn maps(out: &mut String, plans: &[PortPlan]) {
    let mut ips = Elements::default();
    let mut nodeports = Elements::default();
    for p in plans {
        let names = Names { plan: p };
        let proto = p.proto.nft();
        let serve = !p.cluster.is_empty();
        let key = |ip| format!("{ip} . {proto} . {}", p.port);
        ips.add(key(p.cluster_ip), serve.then(|| names.service()));
        for ip in &p.external_ips {
            ips.add(key(*ip), serve.then(|| names.external()));
        }
        if let Some(np) = p.node_port {
            nodeports.add(format!("{proto} . {np}"), serve.then(|| names.external()));
        }
    }
    let addr_key = "ipv4_addr . inet_proto . inet_service";
    let port_key = "inet_proto . inet_service";
    map(out, "service-ips", addr_key, &ips.served);
    map(out, "service-nodeports", port_key, &nodeports.served);
    map(out, "no-endpoint-services", addr_key, &ips.rejected);
    map(out, "no-endpoint-nodeports", port_key, &nodeports.rejected);
}

/// One key space's map elements: served (a chain) or rejected (no endpoints). The first
/// claim of a key wins: services may share an external or load-balancer IP and port, and
/// nft refuses a map holding a key twice.
#[derive(Default)]
struct Elements {
    seen: HashSet<String>,
    served: Vec<String>,
    rejected: Vec<String>,
}

impl Elements {
    fn add(&mut self, key: String, chain: Option<String>) {
        if !self.seen.insert(key.clone()) {
            return;
        }
        match chain {
            Some(chain) => self.served.push(format!("{key} : goto {chain}")),
            None => self.rejected.push(format!("{key} : goto reject-chain")),
        }
    }
}

fn map(out: &mut String, name: &str, key: &str, elements: &[String]) {
    let _ = writeln!(out, "\tmap {name} {{\n\t\ttype {key} : verdict");
    if !elements.is_empty() {
        let _ = writeln!(
            out,
            "\t\telements = {{\n\t\t\t{}\n\t\t}}",
            elements.join(",\n\t\t\t")
        );
    }
    out.push_str("\t}\n");
}

/// The hooked chains: DNAT in nat prerouting and output, masquerade in postrouting, and
/// the no-endpoint rejects in filter input, forward and output.
fn base_chains(out: &mut String, cluster_cidr: &str) {
    let base = |out: &mut String, name: &str, kind: &str, hook: &str, prio: &str, body: &str| {
        let _ = writeln!(
            out,
            "\tchain {name} {{\n\t\ttype {kind} hook {hook} priority {prio}; policy accept;\n{body}\t}}"
        );
    };
    let no_ep = "\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n";
    let no_ep_np = "\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports\n";
    base(
        out,
        "nat-prerouting",
        "nat",
        "prerouting",
        "dstnat",
        "\t\tjump services\n",
    );
    base(
        out,
        "nat-output",
        "nat",
        "output",
        "-100",
        "\t\tjump services\n",
    );
    let post = format!(
        "\t\tjump masquerading\n\t\tip saddr {cluster_cidr} ip daddr != {cluster_cidr} masquerade\n"
    );
    base(
        out,
        "nat-postrouting",
        "nat",
        "postrouting",
        "srcnat",
        &post,
    );
    base(
        out,
        "filter-input",
        "filter",
        "input",
        "-110",
        &format!("{no_ep}{no_ep_np}"),
    );
    base(out, "filter-forward", "filter", "forward", "-110", no_ep);
    base(
        out,
        "filter-output",
        "filter",
        "output",
        "-110",
        &format!("{no_ep}{no_ep_np}"),
    );
}
