//! The cluster's DNS records, built whole from Services and EndpointSlices (the Kubernetes
//! DNS specification, as CoreDNS's kubernetes plugin serves it), and their lookup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::names::{dashed, fqdn, from_reverse, is_reverse, key, key_of, undashed};

/// The TTL of every answer (CoreDNS's default).
pub const TTL: u32 = 5;

/// The label linking an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What one name holds.
#[derive(Debug, Default)]
struct Entry {
    data: Vec<RData>,
    /// The address records of SRV targets (the additional section).
    additionals: Vec<Record>,
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// NOERROR: the name exists (no answers: it has no data of the asked type).
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name is in the cluster domain and does not exist.
    NxDomain,
    /// Not the cluster's to answer: ask the upstream resolvers.
    Forward,
}

/// A headless Service's endpoint: its address and the name it is known by.
struct Endpoint {
    ip: IpAddr,
    hostname: Option<String>,
}

/// Every record of the cluster domain, swapped whole when the cluster changes.
#[derive(Debug)]
pub struct Records {
    domain: String,
    /// `.<domain>`, what names in the domain end with.
    suffix: String,
    soa: Record,
    names: HashMap<String, Entry>,
    /// Names that exist only because names below them do (empty non-terminals).
    parents: HashSet<String>,
    ptrs: HashMap<IpAddr, Vec<Name>>,
}

impl Records {
    /// The records of `services` and the EndpointSlices of the headless ones.
    pub fn build(domain: &str, services: &[Service], slices: &[EndpointSlice]) -> Records {
        let domain = key(domain);
        let mut records = Records::empty(&domain);
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let labels = slice.metadata.labels.as_ref();
            let svc = labels.and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(svc)) = (slice.metadata.namespace.as_deref(), svc) {
                by_service
                    .entry((ns, svc.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        for svc in services {
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let slices = by_service.get(&(ns, name)).map_or(&[][..], Vec::as_slice);
            records.add_service(svc, &key(&format!("{name}.{ns}.svc.{domain}")), slices);
        }
        records
    }

    /// No services: only the zone itself.
    fn empty(domain: &str) -> Records {
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| (d.as_secs() & 0xffff_ffff) as u32);
        let name = |k: &str| fqdn(k).unwrap_or_else(Name::root);
        let soa = SOA::new(
            name(&format!("ns.dns.{domain}")),
            name(&format!("hostmaster.{domain}")),
            serial,
            7200,
            1800,
            86400,
            TTL,
        );
        let mut records = Records {
            domain: domain.to_owned(),
            suffix: format!(".{domain}"),
            soa: Record::from_rdata(name(domain), TTL, RData::SOA(soa)),
            names: HashMap::new(),
            parents: HashSet::new(),
            ptrs: HashMap::new(),
        };
        records.add_parents(&format!("svc.{domain}"));
        records.add_parents(&format!("pod.{domain}"));
        // The version of the Kubernetes DNS schema served.
        let version = RData::TXT(TXT::new(vec!["1.1.0".to_owned()]));
        records
            .entry(&format!("dns-version.{domain}"))
            .data
            .push(version);
        records
    }

    /// The zone's SOA record (the authority of negative answers).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Mark `key` and every name between it and the domain as existing.
    fn add_parents(&mut self, key: &str) {
        let mut rest = key;
        while rest.len() > self.domain.len() && !self.parents.contains(rest) {
            self.parents.insert(rest.to_owned());
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => break,
            }
        }
    }

    fn entry(&mut self, key: &str) -> &mut Entry {
        self.add_parents(key);
        self.names.entry(key.to_owned()).or_default()
    }

    fn add_service(&mut self, svc: &Service, base: &str, slices: &[&EndpointSlice]) {
        let Some(spec) = svc.spec.as_ref() else {
            return;
        };
        self.add_parents(base);
        let Some(base_name) = fqdn(base) else {
            tracing::debug!(name = base, "service name is not a DNS name");
            return;
        };
        let named_ports = spec.ports.iter().flatten().filter(|p| p.name.is_some());
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().and_then(|t| fqdn(&key(t))) {
                self.entry(base).data.push(RData::CNAME(CNAME(target)));
            }
        } else if spec.cluster_ip.as_deref() == Some("None") {
            let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
            let endpoints = endpoints(slices, publish_not_ready);
            let weight = srv_weight(endpoints.len());
            for ep in &endpoints {
                let host = ep.hostname.clone().unwrap_or_else(|| dashed(ep.ip));
                let host_key = format!("{host}.{base}");
                let Some(host_name) = fqdn(&host_key) else {
                    continue;
                };
                self.entry(base).data.push(address(ep.ip));
                self.entry(&host_key).data.push(address(ep.ip));
                if ep.hostname.is_some() {
                    self.ptrs.entry(ep.ip).or_default().push(host_name.clone());
                }
                for port in named_ports.clone() {
                    let number = endpoint_port(slices, port).unwrap_or(port.port);
                    let srv = srv(weight, number, &host_name);
                    let extra = Record::from_rdata(host_name.clone(), TTL, address(ep.ip));
                    self.add_srv(base, port, srv, extra);
                }
            }
        } else {
            let ips = cluster_ips(spec.cluster_ips.as_deref(), spec.cluster_ip.as_deref());
            for ip in &ips {
                self.entry(base).data.push(address(*ip));
                self.ptrs.entry(*ip).or_default().push(base_name.clone());
            }
            for port in named_ports {
                let srv = srv(srv_weight(1), port.port, &base_name);
                for ip in &ips {
                    let extra = Record::from_rdata(base_name.clone(), TTL, address(*ip));
                    self.add_srv(base, port, srv.clone(), extra);
                }
                if ips.is_empty() {
                    self.entry(&srv_key(base, port)).data.push(srv);
                }
            }
        }
    }

    /// An SRV record at `_port._proto.<base>` and at `<base>` itself, with its target's address.
    fn add_srv(&mut self, base: &str, port: &ServicePort, srv: RData, extra: Record) {
        for key in [srv_key(base, port), base.to_owned()] {
            let entry = self.entry(&key);
            if !entry.data.contains(&srv) {
                entry.data.push(srv.clone());
            }
            if !entry.additionals.contains(&extra) {
                entry.additionals.push(extra.clone());
            }
        }
    }

    /// The answer to a question about `name`.
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        let key = key_of(name);
        if is_reverse(&key) {
            return match from_reverse(&key).and_then(|ip| self.ptrs.get(&ip)) {
                Some(targets) => {
                    let data = targets.iter().map(|t| RData::PTR(PTR(t.clone())));
                    answer(name, qtype, data.collect::<Vec<_>>().iter(), &[])
                }
                None => Lookup::Forward,
            };
        }
        if key == self.domain {
            let soa = (qtype == RecordType::SOA || qtype == RecordType::ANY)
                .then(|| self.soa.clone())
                .into_iter();
            return Lookup::Answer {
                answers: soa.collect(),
                additionals: Vec::new(),
            };
        }
        let Some(rel) = key.strip_suffix(self.suffix.as_str()) else {
            return Lookup::Forward;
        };
        if let Some(entry) = self.names.get(&key) {
            return answer(name, qtype, entry.data.iter(), &entry.additionals);
        }
        if self.parents.contains(&key) {
            return answer(name, qtype, [].iter(), &[]);
        }
        // `<dashed-ip>.<namespace>.pod.<domain>` ("pods insecure": any address, any namespace).
        let labels: Vec<&str> = rel.split('.').collect();
        if let [ip, _namespace, "pod"] = labels.as_slice()
            && let Some(ip) = undashed(ip)
        {
            return answer(name, qtype, [address(ip)].iter(), &[]);
        }
        Lookup::NxDomain
    }
}

/// The records of `data` a `qtype` question gets (a CNAME answers every type).
fn answer<'a>(
    name: &Name,
    qtype: RecordType,
    data: impl Iterator<Item = &'a RData>,
    additionals: &[Record],
) -> Lookup {
    let answers: Vec<Record> = data
        .filter(|d| {
            let t = d.record_type();
            qtype == RecordType::ANY || t == qtype || t == RecordType::CNAME
        })
        .map(|d| Record::from_rdata(name.clone(), TTL, d.clone()))
        .collect();
    let has_srv = answers.iter().any(|r| r.record_type() == RecordType::SRV);
    Lookup::Answer {
        answers,
        additionals: if has_srv {
            additionals.to_vec()
        } else {
            Vec::new()
        },
    }
}

/// An A or AAAA record's data.
fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

fn srv(weight: u16, port: i32, target: &Name) -> RData {
    let port = u16::try_from(port).unwrap_or_default();
    RData::SRV(SRV::new(0, weight, port, target.clone()))
}

/// Each of `n` targets' share of 100 (CoreDNS's weighting).
fn srv_weight(n: usize) -> u16 {
    u16::try_from(100 / n.max(1)).unwrap_or(1).max(1)
}

/// `_<port>._<proto>.<base>`.
fn srv_key(base: &str, port: &ServicePort) -> String {
    let proto = port
        .protocol
        .as_deref()
        .unwrap_or("TCP")
        .to_ascii_lowercase();
    let name = port
        .name
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    format!("_{name}._{proto}.{base}")
}

/// A Service's cluster IPs (`clusterIPs`, else `clusterIP`).
fn cluster_ips(ips: Option<&[String]>, ip: Option<&str>) -> Vec<IpAddr> {
    let all = match ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => ip.into_iter().collect::<Vec<_>>(),
    };
    all.into_iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// The port number the endpoints serve a named Service port on.
fn endpoint_port(slices: &[&EndpointSlice], port: &ServicePort) -> Option<i32> {
    let proto = port.protocol.as_deref().unwrap_or("TCP");
    slices
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| p.name == port.name && p.protocol.as_deref().unwrap_or("TCP") == proto)
        .and_then(|p| p.port)
}

/// The endpoints DNS publishes: ready ones (or all, with `publishNotReadyAddresses`),
/// each address once, in address order.
fn endpoints(slices: &[&EndpointSlice], publish_not_ready: bool) -> Vec<Endpoint> {
    let mut seen: BTreeMap<IpAddr, Option<String>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue;
        }
        for ep in slice.endpoints.iter().flatten() {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !ready && !publish_not_ready {
                continue;
            }
            for ip in ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                let hostname = ep.hostname.as_deref().map(key);
                let slot = seen.entry(ip).or_default();
                if slot.is_none() {
                    *slot = hostname;
                }
            }
        }
    }
    seen.into_iter()
        .map(|(ip, hostname)| Endpoint { ip, hostname })
        .collect()
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
