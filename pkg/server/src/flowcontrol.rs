//! The API Priority and Fairness objects every cluster has (flowcontrol.apiserver.k8s.io/v1):
//! the mandatory `exempt` and `catch-all` priority levels and flow schemas, and
//! `global-default` for everyone else, one flow per user — as the API server queues them.

use minik_registry::{ApiError, Registry};

use crate::rbac_defaults::create_missing;
use serde_json::{Value, json};

const API: &str = "flowcontrol.apiserver.k8s.io/v1";

fn meta(name: &str) -> Value {
    json!({"name": name, "annotations": {"apf.kubernetes.io/autoupdate-spec": "true"}})
}

fn level(name: &str, spec: Value) -> Value {
    json!({"apiVersion": API, "kind": "PriorityLevelConfiguration", "metadata": meta(name), "spec": spec})
}

fn schema(name: &str, level: &str, precedence: i64, subjects: Value) -> Value {
    let mut spec = json!({"priorityLevelConfiguration": {"name": level},
        "matchingPrecedence": precedence,
        "rules": [{"subjects": subjects,
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                "clusterScope": true, "namespaces": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]});
    if level != "exempt" {
        spec["distinguisherMethod"] = json!({"type": "ByUser"});
    }
    json!({"apiVersion": API, "kind": "FlowSchema", "metadata": meta(name), "spec": spec})
}

fn limited(shares: i64, queue: bool) -> Value {
    let response = if queue {
        json!({"type": "Queue", "queuing": {"queues": 128, "handSize": 6, "queueLengthLimit": 50}})
    } else {
        json!({"type": "Reject"})
    };
    json!({"type": "Limited", "limited": {"nominalConcurrencyShares": shares,
        "lendablePercent": 0, "limitResponse": response}})
}

fn group(name: &str) -> Value {
    json!([{"kind": "Group", "group": {"name": name}}])
}

/// Create the default objects that are missing.
pub async fn ensure(registry: &Registry) -> Result<(), ApiError> {
    let levels = [
        level("exempt", json!({"type": "Exempt", "exempt": {}})),
        level("catch-all", limited(5, false)),
        level("global-default", limited(20, true)),
    ];
    let schemas = [
        schema("exempt", "exempt", 1, group("system:masters")),
        schema(
            "global-default",
            "global-default",
            9900,
            group("system:authenticated"),
        ),
        schema(
            "catch-all",
            "catch-all",
            10000,
            json!([
            {"kind": "Group", "group": {"name": "system:authenticated"}},
            {"kind": "Group", "group": {"name": "system:unauthenticated"}}]),
        ),
    ];
    let find = |plural| minik_api::builtin("flowcontrol.apiserver.k8s.io", "v1", plural);
    create_missing(registry, find("prioritylevelconfigurations"), levels).await?;
    create_missing(registry, find("flowschemas"), schemas).await
}
