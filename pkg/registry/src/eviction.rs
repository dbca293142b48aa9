//! POST pods/<name>/eviction, as kube-apiserver does it: a pod that is pending, finished or
//! already being deleted goes at once; otherwise the one PodDisruptionBudget selecting it
//! must allow a disruption, which is taken (disruptionsAllowed decremented, the pod recorded
//! in disruptedPods) before the pod is marked `DisruptionTarget` and deleted. An unready pod
//! goes without taking a disruption when the budget's unhealthyPodEvictionPolicy is
//! AlwaysAllow, or (IfHealthyBudget, the default) when the budget is currently met.

use serde_json::{Value, json};

use crate::delete::DeleteParams;
use crate::error::{ApiError, Cause, Result};
use crate::rest::Registry;
use crate::selector::selector_string;
use crate::subresources::Change;

/// More unconfirmed evictions than this in disruptedPods and the budget refuses more.
const MAX_DISRUPTED_PODS: usize = 2000;
/// Times a pod that changed while being evicted is looked at again.
const RETRIES: usize = 8;

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Pending, finished or being deleted: no budget is asked.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Pending" | "Succeeded" | "Failed") || deleting(pod)
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn pod_rv(pod: &Value) -> Option<String> {
    pod["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn budget_refused(message: String) -> ApiError {
    ApiError::TooManyRequestsBecause {
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        causes: vec![Cause {
            field: String::new(),
            reason: "DisruptionBudget".into(),
            message,
        }],
    }
}

fn still_processing(name: &str) -> ApiError {
    budget_refused(format!(
        "The disruption budget {name} is still being processed by the server."
    ))
}

fn budget_forbids(name: &str, message: &str) -> ApiError {
    ApiError::Forbidden {
        group: "policy".into(),
        resource: "poddisruptionbudget".into(),
        name: name.into(),
        message: message.into(),
    }
}

/// Take one disruption from a stored budget (or refuse), recording the pod.
fn take_disruption(pdb: &mut Value, pod: &str, dry_run: bool) -> Result<()> {
    let name = pdb["metadata"]["name"].as_str().unwrap_or("").to_string();
    if int(pdb, "/status/observedGeneration") < int(pdb, "/metadata/generation") {
        return Err(still_processing(&name));
    }
    let allowed = int(pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(budget_forbids(&name, "pdb disruptions allowed is negative"));
    }
    let recorded = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if recorded > MAX_DISRUPTED_PODS {
        return Err(budget_forbids(
            &name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(budget_refused(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            int(pdb, "/status/desiredHealthy"),
            int(pdb, "/status/currentHealthy")
        )));
    }
    if dry_run {
        return Ok(());
    }
    let status = &mut pdb["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        set_insufficient(status);
    }
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(crate::now_rfc3339());
    Ok(())
}

/// The DisruptionAllowed condition once no disruption is left.
fn set_insufficient(status: &mut Value) {
    let generation = status["observedGeneration"].clone();
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(list) = status["conditions"].as_array_mut() else {
        return;
    };
    let now = crate::now_rfc3339();
    let new = |since: Value| {
        json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
            "message": "", "observedGeneration": generation, "lastTransitionTime": since})
    };
    match list.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(c) if c["status"] == "False" => *c = new(c["lastTransitionTime"].clone()),
        Some(c) => *c = new(json!(now)),
        None => list.push(new(json!(now))),
    }
}

impl Registry {
    /// POST pods/<name>/eviction.
    pub async fn evict(
        &self,
        ns: &str,
        name: &str,
        eviction: &Value,
        params: &crate::WriteParams,
    ) -> Result<()> {
        if let Some(n) = eviction.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::BadRequest(
                "name in URL does not match name in Eviction object".into(),
            ));
        }
        let pods = minik_api::builtin("", "v1", "pods");
        self.admit_subresource_create(pods, Some(ns), name, "eviction", eviction, params)
            .await?;
        let opts = eviction.get("deleteOptions").unwrap_or(&Value::Null);
        let precondition = |p: &str| {
            opts.pointer(&format!("/preconditions/{p}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let mut delete = DeleteParams {
            uid: precondition("uid"),
            resource_version: precondition("resourceVersion"),
            dry_run: params.dry_run
                || opts["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "All")),
            grace_period_seconds: opts["gracePeriodSeconds"].as_i64(),
            user: params.user.clone(),
            ..Default::default()
        };
        let asked_rv = delete.resource_version.is_some();
        let mut tries = 0;
        let pod = loop {
            let pod = self.get(pods, Some(ns), name).await?;
            if !can_ignore_budget(&pod) {
                break pod;
            }
            // A pending pod might start meanwhile: delete this version only, and look again
            // if it changed (unless the caller named a version).
            let mut params = delete.clone();
            if !asked_rv && !deleting(&pod) && !matches!(phase(&pod), "Succeeded" | "Failed") {
                params.resource_version = pod_rv(&pod);
            }
            match self.disrupt_and_delete(ns, name, params).await {
                Err(ApiError::Conflict { .. }) if !asked_rv && tries < RETRIES => tries += 1,
                other => return other,
            }
        };
        let budgets = self.budgets_of(ns, &pod).await?;
        if budgets.len() > 1 {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ));
        }
        if let Some(pdb) = budgets.first() {
            let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or("").to_string();
            let always =
                pdb.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow"));
            let desired = int(pdb, "/status/desiredHealthy");
            let met = int(pdb, "/status/currentHealthy") >= desired && desired > 0;
            if !ready(&pod) && (always || met) {
                // Unhealthy, and deleting it disrupts nothing: no disruption taken, but only
                // this version of the pod (not one that became ready since).
                delete.resource_version = pod_rv(&pod);
                return match self.disrupt_and_delete(ns, name, delete).await {
                    Err(ApiError::Conflict { .. }) if !asked_rv => Err(still_processing(&pdb_name)),
                    other => other,
                };
            }
            let pdbs = minik_api::builtin("policy", "v1", "poddisruptionbudgets");
            let dry_run = delete.dry_run;
            let how = Change {
                dry_run,
                ..Default::default()
            };
            self.modify(pdbs, Some(ns), &pdb_name, how, |pdb| {
                take_disruption(pdb, name, dry_run)
            })
            .await
            .map_err(|e| match e {
                ApiError::Conflict { .. } => ApiError::Timeout(format!(
                    "couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"
                )),
                other => other,
            })?;
        }
        self.disrupt_and_delete(ns, name, delete).await
    }

    /// The budgets in `ns` whose selector selects the pod (a missing selector selects
    /// nothing; an empty one, everything).
    async fn budgets_of(&self, ns: &str, pod: &Value) -> Result<Vec<Value>> {
        let pdbs = minik_api::builtin("policy", "v1", "poddisruptionbudgets");
        let list = self.list(pdbs, Some(ns), &Default::default()).await?;
        let mut out = Vec::new();
        for pdb in list.items {
            let Some(sel) = pdb.pointer("/spec/selector").filter(|s| !s.is_null()) else {
                continue;
            };
            let Ok(selector) = crate::Selector::labels(&selector_string(Some(sel))) else {
                continue;
            };
            if selector.matches_labels(pod) {
                out.push(pdb.as_ref().clone());
            }
        }
        Ok(out)
    }

    /// Mark the pod `DisruptionTarget` (EvictionByEvictionAPI) and delete it, both on the
    /// preconditions asked for.
    async fn disrupt_and_delete(
        &self,
        ns: &str,
        name: &str,
        mut params: DeleteParams,
    ) -> Result<()> {
        let pods = minik_api::builtin("", "v1", "pods");
        if !params.dry_run {
            let (uid, rv) = (params.uid.clone(), params.resource_version.clone());
            let how = Change {
                expected_rv: rv.as_deref(),
                ..Default::default()
            };
            let marked = self
                .modify(pods, Some(ns), name, how, |pod| {
                    if uid
                        .as_deref()
                        .is_some_and(|u| !u.is_empty() && pod["metadata"]["uid"] != u)
                    {
                        return Err(ApiError::conflict(pods, name));
                    }
                    mark_disruption_target(pod);
                    Ok(())
                })
                .await?;
            if rv.is_some() {
                params.resource_version = marked["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
            }
        }
        self.delete(pods, Some(ns), name, &params).await.map(|_| ())
    }
}

/// Set the pod's DisruptionTarget condition (its transition time moves only when its status
/// does).
fn mark_disruption_target(pod: &mut Value) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(list) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    let now = crate::now_rfc3339();
    let mut cond = json!({"type": "DisruptionTarget", "status": "True",
        "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
        "lastProbeTime": null, "lastTransitionTime": now});
    match list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(c) => {
            if c["status"] == "True" {
                cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = cond;
        }
        None => list.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, generation: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
            "status": {"disruptionsAllowed": allowed, "observedGeneration": observed,
                "desiredHealthy": 2, "currentHealthy": 2}})
    }

    #[test]
    fn a_disruption_is_taken_and_recorded() {
        let mut p = pdb(1, 1, 1);
        take_disruption(&mut p, "web-1", false).expect("allowed");
        assert_eq!(p["status"]["disruptionsAllowed"], 0);
        assert!(p["status"]["disruptedPods"]["web-1"].is_string());
        let c = &p["status"]["conditions"][0];
        assert_eq!(
            (c["type"].as_str(), c["reason"].as_str()),
            (Some("DisruptionAllowed"), Some("InsufficientPods"))
        );
        // None left: refused with kube-apiserver's words.
        let e = take_disruption(&mut p, "web-2", false).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        let ApiError::TooManyRequestsBecause { causes, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            causes[0].message,
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
        // A dry run changes nothing.
        let mut p = pdb(1, 1, 1);
        take_disruption(&mut p, "web-1", true).expect("allowed");
        assert_eq!(p["status"]["disruptionsAllowed"], 1);
    }

    #[test]
    fn a_budget_not_yet_observed_or_negative_refuses() {
        let e = take_disruption(&mut pdb(3, 2, 1), "x", false).expect_err("refused");
        let ApiError::TooManyRequestsBecause { causes, .. } = e else {
            panic!("{e:?}")
        };
        assert!(causes[0].message.contains("still being processed"));
        let e = take_disruption(&mut pdb(-1, 1, 1), "x", false).expect_err("refused");
        assert_eq!(e.code_and_reason().0, 403);
    }

    #[test]
    fn pending_finished_and_terminating_pods_skip_the_budget() {
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budget(
            &json!({"status": {"phase": "Succeeded"}})
        ));
        assert!(can_ignore_budget(
            &json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
        let mut pod = json!({"status": {"phase": "Running"}});
        mark_disruption_target(&mut pod);
        assert_eq!(
            pod["status"]["conditions"][0]["reason"],
            "EvictionByEvictionAPI"
        );
    }
}
