//! Lookups in Records built from Services and EndpointSlices: every case of the Kubernetes
//! DNS specification minik serves.

use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::{Lookup, Records};

fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .unwrap()
}

/// A slice of `svc`'s endpoints: (address, hostname, ready).
fn slice(ns: &str, svc: &str, eps: &[(&str, Option<&str>, Option<bool>)]) -> EndpointSlice {
    let endpoints: Vec<_> = eps
        .iter()
        .map(|(ip, host, ready)| {
            let mut ep = json!({"addresses": [ip]});
            if let Some(h) = host {
                ep["hostname"] = json!(h);
            }
            if let Some(r) = ready {
                ep["conditions"] = json!({"ready": r});
            }
            ep
        })
        .collect();
    let family = if eps.iter().any(|e| e.0.contains(':')) {
        "IPv6"
    } else {
        "IPv4"
    };
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{svc}-x1"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family,
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

fn cluster() -> Records {
    let ports = json!([{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 9000}]);
    let services = [
        service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.20", "ports": ports}),
        ),
        service(
            "default",
            "v6",
            json!({"clusterIP": "fd00:43::20", "clusterIPs": ["fd00:43::20"]}),
        ),
        service("db", "pg", json!({"clusterIP": "None", "ports": ports})),
        service(
            "db",
            "late",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
        ),
        service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "Example.COM."}),
        ),
    ];
    let slices = [
        slice(
            "db",
            "pg",
            &[
                ("10.42.0.5", Some("pg-0"), Some(true)),
                ("10.42.0.6", None, None),
                ("10.42.0.7", Some("pg-2"), Some(false)),
            ],
        ),
        slice("db", "late", &[("10.42.1.9", Some("late-0"), Some(false))]),
        slice("other", "pg", &[("10.42.9.9", None, Some(true))]),
    ];
    Records::build("cluster.local.", &services, &slices)
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// The answer records' data, or panic on NXDOMAIN / forward.
fn data(records: &Records, q: &str, t: RecordType) -> Vec<RData> {
    match records.lookup(&name(q), t) {
        Lookup::Answer { answers, .. } => answers.into_iter().map(|r| r.data).collect(),
        other => panic!("{q} {t}: {other:?}"),
    }
}

fn ips(records: &Records, q: &str, t: RecordType) -> Vec<IpAddr> {
    data(records, q, t)
        .into_iter()
        .filter_map(|d| match d {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn cluster_ip_service_a_record() {
    let r = cluster();
    assert_eq!(
        ips(&r, "web.default.svc.cluster.local.", RecordType::A),
        [ip("10.43.0.20")]
    );
    // Case-insensitive, with or without the trailing dot; owner is the asked name.
    let Lookup::Answer { answers, .. } =
        r.lookup(&name("WEB.Default.svc.Cluster.Local"), RecordType::A)
    else {
        panic!("no answer");
    };
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].ttl, 5);
    assert_eq!(answers[0].name.to_ascii(), "WEB.Default.svc.Cluster.Local");
    // An IPv4 service has no AAAA: NOERROR, no answers.
    assert!(ips(&r, "web.default.svc.cluster.local.", RecordType::AAAA).is_empty());
}

#[test]
fn ipv6_service_answers_aaaa_only() {
    let r = cluster();
    assert_eq!(
        ips(&r, "v6.default.svc.cluster.local.", RecordType::AAAA),
        [ip("fd00:43::20")]
    );
    assert!(ips(&r, "v6.default.svc.cluster.local.", RecordType::A).is_empty());
}

#[test]
fn headless_service_lists_ready_endpoints() {
    let r = cluster();
    let got = ips(&r, "pg.db.svc.cluster.local.", RecordType::A);
    assert_eq!(got, [ip("10.42.0.5"), ip("10.42.0.6")]);
    // publishNotReadyAddresses publishes not-ready endpoints too.
    assert_eq!(
        ips(&r, "late.db.svc.cluster.local.", RecordType::A),
        [ip("10.42.1.9")]
    );
}

#[test]
fn headless_endpoint_hostnames() {
    let r = cluster();
    assert_eq!(
        ips(&r, "pg-0.pg.db.svc.cluster.local.", RecordType::A),
        [ip("10.42.0.5")]
    );
    // Endpoints without a hostname are named by their dashed address.
    assert_eq!(
        ips(&r, "10-42-0-6.pg.db.svc.cluster.local.", RecordType::A),
        [ip("10.42.0.6")]
    );
    // Not ready, not published.
    let gone = r.lookup(&name("pg-2.pg.db.svc.cluster.local."), RecordType::A);
    assert_eq!(gone, Lookup::NxDomain);
}

#[test]
fn external_name_is_a_cname() {
    let r = cluster();
    for t in [RecordType::A, RecordType::CNAME, RecordType::AAAA] {
        let got = data(&r, "ext.default.svc.cluster.local.", t);
        let [RData::CNAME(c)] = got.as_slice() else {
            panic!("{t}: {got:?}");
        };
        assert_eq!(c.0.to_ascii(), "example.com.");
    }
}

#[test]
fn srv_of_a_cluster_ip_service() {
    let r = cluster();
    let q = name("_http._tcp.web.default.svc.cluster.local.");
    let Lookup::Answer {
        answers,
        additionals,
    } = r.lookup(&q, RecordType::SRV)
    else {
        panic!("no answer");
    };
    let [RData::SRV(srv)] = &answers.iter().map(|a| a.data.clone()).collect::<Vec<_>>()[..] else {
        panic!("{answers:?}");
    };
    assert_eq!(srv.port, 80);
    assert_eq!(srv.target.to_ascii(), "web.default.svc.cluster.local.");
    assert_eq!(additionals.len(), 1);
    assert_eq!(
        additionals[0].name.to_ascii(),
        "web.default.svc.cluster.local."
    );
    // Unnamed ports have no SRV name; a wrong protocol is no name either.
    for missing in [
        "_9000._tcp.web.default.svc.cluster.local.",
        "_http._udp.web.default.svc.cluster.local.",
    ] {
        assert_eq!(r.lookup(&name(missing), RecordType::SRV), Lookup::NxDomain);
    }
}

#[test]
fn srv_of_a_headless_service_names_each_endpoint() {
    let r = cluster();
    let q = name("_http._tcp.pg.db.svc.cluster.local.");
    let Lookup::Answer {
        answers,
        additionals,
    } = r.lookup(&q, RecordType::SRV)
    else {
        panic!("no answer");
    };
    let mut targets: Vec<(String, u16)> = answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::SRV(s) => Some((s.target.to_ascii(), s.port)),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            ("10-42-0-6.pg.db.svc.cluster.local.".to_owned(), 8080),
            ("pg-0.pg.db.svc.cluster.local.".to_owned(), 8080),
        ]
    );
    let mut extra: Vec<(String, RData)> = additionals
        .into_iter()
        .map(|a| (a.name.to_ascii(), a.data))
        .collect();
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(extra.len(), 2);
    assert_eq!(extra[1].0, "pg-0.pg.db.svc.cluster.local.");
    assert_eq!(extra[1].1, RData::A(ip4("10.42.0.5")));
}

fn ip4(s: &str) -> hickory_proto::rr::rdata::A {
    hickory_proto::rr::rdata::A(s.parse().unwrap())
}

#[test]
fn pod_names_are_their_address() {
    let r = cluster();
    assert_eq!(
        ips(&r, "10-42-3-4.any.pod.cluster.local.", RecordType::A),
        [ip("10.42.3.4")]
    );
    assert_eq!(
        ips(&r, "fd00--7.default.pod.cluster.local.", RecordType::AAAA),
        [ip("fd00::7")]
    );
    assert!(ips(&r, "10-42-3-4.any.pod.cluster.local.", RecordType::AAAA).is_empty());
    let bad = r.lookup(&name("not-an-ip.default.pod.cluster.local."), RecordType::A);
    assert_eq!(bad, Lookup::NxDomain);
}

#[test]
fn reverse_lookups() {
    let r = cluster();
    let ptr = |q: &str| -> Vec<String> {
        data(&r, q, RecordType::PTR)
            .into_iter()
            .filter_map(|d| match d {
                RData::PTR(p) => Some(p.0.to_ascii()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        ptr("20.0.43.10.in-addr.arpa."),
        ["web.default.svc.cluster.local."]
    );
    assert_eq!(
        ptr("5.0.42.10.in-addr.arpa."),
        ["pg-0.pg.db.svc.cluster.local."]
    );
    let v6 = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(ptr(v6), ["v6.default.svc.cluster.local."]);
    // Addresses the cluster does not know (and a headless endpoint without a hostname) go upstream.
    for q in [
        "1.1.168.192.in-addr.arpa.",
        "6.0.42.10.in-addr.arpa.",
        "10.in-addr.arpa.",
    ] {
        assert_eq!(r.lookup(&name(q), RecordType::PTR), Lookup::Forward, "{q}");
    }
}

#[test]
fn missing_names_and_the_rest_of_the_world() {
    let r = cluster();
    for q in [
        "nope.default.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "x.cluster.local.",
    ] {
        assert_eq!(r.lookup(&name(q), RecordType::A), Lookup::NxDomain, "{q}");
    }
    // Names that exist only above others: NOERROR, no answers.
    for q in [
        "default.svc.cluster.local.",
        "svc.cluster.local.",
        "cluster.local.",
    ] {
        assert!(data(&r, q, RecordType::A).is_empty(), "{q}");
    }
    assert_eq!(data(&r, "cluster.local.", RecordType::SOA).len(), 1);
    let version = data(&r, "dns-version.cluster.local.", RecordType::TXT);
    let [RData::TXT(txt)] = version.as_slice() else {
        panic!("{version:?}");
    };
    assert_eq!(&*txt.txt_data[0], b"1.1.0");
    for q in ["example.com.", "cluster.local.example.com.", "local."] {
        assert_eq!(r.lookup(&name(q), RecordType::A), Lookup::Forward, "{q}");
    }
    let RData::SOA(soa) = &r.soa().data else {
        panic!("not an SOA");
    };
    assert_eq!(soa.minimum, 5);
    assert_eq!(r.soa().name.to_ascii(), "cluster.local.");
}

#[test]
fn slices_of_other_namespaces_do_not_leak() {
    let r = cluster();
    assert!(!ips(&r, "pg.db.svc.cluster.local.", RecordType::A).contains(&ip("10.42.9.9")));
    let empty = Records::build("cluster.local", &[], &[]);
    let q = name("web.default.svc.cluster.local.");
    assert_eq!(empty.lookup(&q, RecordType::A), Lookup::NxDomain);
}
