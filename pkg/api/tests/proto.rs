//! Protobuf bodies encoded by prost (as Go clients encode them) decode to the JSON a client
//! would have sent.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use minik_api::proto::decode_envelope;
use prost::Message;
use serde_json::json;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

#[test]
fn deployment_with_every_kind_of_field() {
    let container = core::Container {
        name: Some("web".into()),
        image: Some("busybox:1.36".into()),
        args: vec!["sleep".into(), "3600".into()],
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: [(
                "memory".to_string(),
                Quantity {
                    string: Some("64Mi".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("http".into()),
                    }),
                    host: Some(String::new()),
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    };
    let volume = core::Volume {
        name: Some("scratch".into()),
        volume_source: Some(core::VolumeSource {
            empty_dir: Some(core::EmptyDirVolumeSource::default()),
            ..Default::default()
        }),
    };
    let d = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("web".into()),
            generate_name: Some(String::new()),
            labels: [("app".to_string(), "web".to_string())].into(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(-62_135_596_800),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    volumes: vec![volume],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(2),
                        str_val: None,
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("10%".into()),
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let obj = decode_envelope(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
    assert_eq!(obj["apiVersion"], "apps/v1");
    assert_eq!(obj["kind"], "Deployment");
    assert_eq!(
        obj["metadata"],
        json!({"name": "web", "labels": {"app": "web"}})
    );
    assert_eq!(obj["spec"]["replicas"], 0);
    assert_eq!(
        obj["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 2, "maxUnavailable": "10%"})
    );
    let pod = &obj["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["args"], json!(["sleep", "3600"]));
    assert_eq!(
        c["ports"][0],
        json!({"containerPort": 80, "protocol": "TCP"})
    );
    assert_eq!(c["resources"]["limits"]["memory"], "64Mi");
    assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], "http");
    assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "scratch", "emptyDir": {}})
    );
    // The JSON decodes as the typed k8s-openapi Deployment.
    let info = minik_api::find("apps", "v1", "deployments").unwrap();
    assert!((info.typed)(&obj).is_ok());
}

#[test]
fn secrets_bytes_acronyms_and_times() {
    let s = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: Some("s".into()),
            ..Default::default()
        }),
        data: [("pw".to_string(), b"hunter2".to_vec())].into(),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let obj = decode_envelope(&envelope("v1", "Secret", s.encode_to_vec())).unwrap();
    assert_eq!(obj["data"]["pw"], "aHVudGVyMg==");
    assert_eq!(obj["type"], "Opaque");
    let svc = core::Service {
        metadata: Some(meta::ObjectMeta {
            name: Some("svc".into()),
            ..Default::default()
        }),
        spec: Some(core::ServiceSpec {
            cluster_ip: Some("10.43.0.5".into()),
            cluster_ips: vec!["10.43.0.5".into()],
            ..Default::default()
        }),
        status: None,
    };
    let obj = decode_envelope(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
    assert_eq!(obj["spec"]["clusterIP"], "10.43.0.5");
    assert_eq!(obj["spec"]["clusterIPs"], json!(["10.43.0.5"]));
    let ev = core::Event {
        metadata: Some(meta::ObjectMeta {
            name: Some("e".into()),
            ..Default::default()
        }),
        last_timestamp: Some(meta::Time {
            seconds: Some(1_700_000_000),
            nanos: Some(0),
        }),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_000),
        }),
        ..Default::default()
    };
    let obj = decode_envelope(&envelope("v1", "Event", ev.encode_to_vec())).unwrap();
    assert_eq!(obj["lastTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(obj["eventTime"], "2023-11-14T22:13:20.123456Z");
}

#[test]
fn bad_bodies_are_errors() {
    assert!(decode_envelope(b"not protobuf").is_err());
    assert!(decode_envelope(b"k8s\0\x0a\xff").is_err());
    assert!(decode_envelope(&envelope("v1", "NoSuchKind", vec![])).is_err());
    assert!(decode_envelope(&envelope("v1", "ConfigMap", vec![0x0a, 0x05, 0x01])).is_err());
}

#[test]
fn json_encodes_to_protobuf_that_prost_reads() {
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "42",
            "creationTimestamp": "2026-11-30T10:00:00Z", "labels": {"app": "web"}},
        "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m"}},
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}]}],
                    "volumes": [{"name": "v", "emptyDir": {}}]}}},
        "status": {"replicas": 3, "readyReplicas": 2},
    });
    let bytes = minik_api::proto::encode_envelope(&obj).unwrap();
    let unknown = Unknown::decode(&bytes[4..]).unwrap();
    assert_eq!(
        unknown.type_meta.as_ref().unwrap().kind.as_deref(),
        Some("Deployment")
    );
    let d = apps::Deployment::decode(unknown.raw.as_deref().unwrap()).unwrap();
    let meta = d.metadata.unwrap();
    assert_eq!(meta.resource_version.as_deref(), Some("42"));
    assert_eq!(
        meta.creation_timestamp.unwrap().seconds,
        Some(1_796_032_800)
    );
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let ru = spec.strategy.unwrap().rolling_update.unwrap();
    assert_eq!(ru.max_surge.unwrap().int_val, Some(1));
    assert_eq!(ru.max_unavailable.unwrap().str_val.as_deref(), Some("25%"));
    let pod = spec.template.unwrap().spec.unwrap();
    assert_eq!(
        pod.containers[0].resources.as_ref().unwrap().requests["cpu"]
            .string
            .as_deref(),
        Some("100m")
    );
    assert!(
        pod.volumes[0]
            .volume_source
            .as_ref()
            .unwrap()
            .empty_dir
            .is_some()
    );
    assert_eq!(d.status.unwrap().ready_replicas, Some(2));
    // And back: the decoder gives the same object.
    assert_eq!(decode_envelope(&bytes).unwrap(), obj);
}
