//! CustomResourceDefinitions against a real `minik server`: kubectl applies a CRD and
//! custom resources (schema and CEL violations are 422 with the rule's message), shows the
//! printer columns and explains the schema; kube-rs `#[derive(CustomResource)]` types
//! create, list, watch, patch status and scale; deleting the CRD deletes its objects.

use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher::{self, Event};
use kube::{Api, CustomResource, CustomResourceExt, ResourceExt};
use minik_tests::server::{Kubectl, Server, ok, text};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [color]
            x-kubernetes-validations:
            - rule: self.replicas <= self.maxReplicas
              messageExpression: \"'replicas ' + string(self.replicas) + ' is over ' + string(self.maxReplicas)\"
            properties:
              color: {type: string, enum: [red, blue], description: The widget's colour.}
              replicas: {type: integer, minimum: 0, default: 1}
              maxReplicas: {type: integer, default: 5}
";

#[test]
fn kubectl_crd_and_custom_resources() {
    let s = Server::start();
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        eprintln!("kubectl: {}", k.bin);
        ok(k.stdin(&["apply", "-f", "-"], CRD));
        let wait = k.run(&[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=10s",
        ]);
        assert!(
            wait.status.success(),
            "{}\nserver log:\n{}",
            text(&wait),
            s.log()
        );
        let ns = format!("c{i}");
        ok(k.run(&["create", "namespace", &ns]));
        let n = ["-n", ns.as_str()];
        let widget = |name: &str, spec: &str| {
            format!(
                "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {spec}\n"
            )
        };
        ok(k.stdin(
            &[&n[..], &["apply", "-f", "-"]].concat(),
            &widget("w1", "{color: red}"),
        ));
        // Defaults were applied; the printer columns show them.
        let table = ok(k.run(&[&n[..], &["get", "widgets"]].concat()));
        assert!(
            table.contains("COLOR") && table.contains("REPLICAS"),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("w1") && l.contains("red") && l.contains(" 1")),
            "{table}"
        );
        // A schema violation and a CEL violation: 422 with the messages.
        let bad = k.stdin(
            &[&n[..], &["apply", "-f", "-"]].concat(),
            &widget("w2", "{color: pink}"),
        );
        assert!(!bad.status.success());
        assert!(
            text(&bad).contains("Unsupported value: \"pink\""),
            "{}",
            text(&bad)
        );
        let bad = k.stdin(
            &[&n[..], &["apply", "-f", "-"]].concat(),
            &widget("w3", "{color: red, replicas: 9}"),
        );
        assert!(
            text(&bad).contains("replicas 9 is over 5"),
            "{}",
            text(&bad)
        );
        assert!(
            k.run(&[&n[..], &["get", "widget", "w3"]].concat())
                .status
                .code()
                != Some(0)
        );
        // explain reads the CRD's schema.
        let explain = ok(k.run(&["explain", "widgets.spec.color"]));
        assert!(explain.contains("colour"), "{explain}");
        let v2 = ok(k.run(&["explain", "widgets.spec", "--output=plaintext-openapiv2"]));
        assert!(v2.contains("maxReplicas"), "{v2}");
        // Short name and a merge patch.
        ok(k.run(
            &[
                &n[..],
                &[
                    "patch",
                    "wd",
                    "w1",
                    "--type",
                    "merge",
                    "-p",
                    r#"{"spec":{"color":"blue"}}"#,
                ],
            ]
            .concat(),
        ));
        let got: Value = serde_json::from_str(&ok(
            k.run(&[&n[..], &["get", "wd", "w1", "-o", "json"]].concat())
        ))
        .unwrap();
        assert_eq!(
            got["spec"],
            json!({"color": "blue", "replicas": 1, "maxReplicas": 5})
        );
        // Deleting the CRD deletes its objects first.
        ok(k.run(&["delete", "crd", "widgets.example.com", "--timeout=30s"]));
        let gone = k.run(&[&n[..], &["get", "widgets"]].concat());
        assert!(!gone.status.success(), "{}", text(&gone));
    }
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "minik.dev", version = "v1", kind = "Gadget", namespaced)]
#[kube(status = "GadgetStatus", shortname = "gd")]
#[kube(scale(
    spec_replicas_path = ".spec.replicas",
    status_replicas_path = ".status.replicas"
))]
#[kube(printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"))]
pub struct GadgetSpec {
    replicas: i32,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, Default)]
pub struct GadgetStatus {
    replicas: i32,
    ready: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_derived_custom_resources() {
    let s = Server::start();
    let client = s.kube_client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Gadget::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds.clone(),
        "gadgets.minik.dev",
        conditions::is_crd_established(),
    );
    if tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .is_err()
    {
        panic!("not established within 10 s; server log:\n{}", s.log());
    }
    let gadgets: Api<Gadget> = Api::namespaced(client.clone(), "default");
    let events = watcher::watcher(gadgets.clone(), watcher::Config::default());
    let mut events = Box::pin(events);
    let g = Gadget::new(
        "g1",
        GadgetSpec {
            replicas: 1,
            tags: vec!["a".into()],
        },
    );
    gadgets.create(&PostParams::default(), &g).await.unwrap();
    let list = gadgets.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    // The watcher sees it.
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.try_next().await.unwrap() {
            if let Event::Apply(o) | Event::InitApply(o) = ev
                && o.name_any() == "g1"
            {
                return o;
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("watched within 10 s");
    assert_eq!(seen.spec.replicas, 1);
    // Status through the status subresource (the main resource ignores it).
    let status = json!({"status": {"replicas": 1, "ready": true}});
    let patched = gadgets
        .patch_status("g1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert!(patched.status.as_ref().is_some_and(|s| s.ready));
    // Scale.
    let scale = gadgets.get_scale("g1").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    let scaled = gadgets
        .patch_scale(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(4));
    assert_eq!(gadgets.get("g1").await.unwrap().spec.replicas, 4);
    // Server-side apply by two managers on the custom resource.
    let apply = |tags: &[&str], replicas: i32| {
        json!({"apiVersion": "minik.dev/v1", "kind": "Gadget", "metadata": {"name": "g1"},
            "spec": {"replicas": replicas, "tags": tags}})
    };
    gadgets
        .patch(
            "g1",
            &PatchParams::apply("one").force(),
            &Patch::Apply(apply(&["a"], 4)),
        )
        .await
        .unwrap();
    let err = gadgets
        .patch(
            "g1",
            &PatchParams::apply("two"),
            &Patch::Apply(apply(&["a"], 6)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 409),
        "{err:?}"
    );
    drop(events);
}
