//! ClusterRole aggregation: a ClusterRole with an `aggregationRule` has as rules the union
//! of the rules of the ClusterRoles its selectors match (in name order, each rule once),
//! kept up to date as those change. This is how admin, edit and view get their rules (from
//! system:aggregate-to-admin/edit/view and whatever operators label to join them).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::{Ctx, Queue, Reconcile, Result, util};

pub struct Controller {
    ctx: Ctx,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("clusterrole_aggregator", ctx.metrics.clone());
    let (q, roles) = (queue.clone(), ctx.informers.clusterroles.clone());
    // Any role may be selected by any aggregating role: look at them all again.
    ctx.informers.clusterroles.on(move |_, _| {
        for r in roles.store().state() {
            if r.aggregation_rule.is_some() {
                q.add(r.name_any());
            }
        }
    });
    let this = Arc::new(Controller { ctx: ctx.clone() });
    ctx.spawn_workers("clusterrole_aggregator", &queue, workers, this);
    queue
}

/// The rules `role` aggregates from `all`: each matched role's rules in name order, each
/// rule once. None when the role does not aggregate.
pub fn aggregate(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .clone()?;
    let mut matched: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|r| r.name_any() != role.name_any())
        // A selector that selects nothing selects nothing here (not everything).
        .filter(|r| {
            selectors
                .iter()
                .any(|s| !util::is_empty(s) && util::matches(s, r.labels()))
        })
        .collect();
    matched.sort_by_key(|r| r.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for rule in matched.iter().flat_map(|r| r.rules.iter().flatten()) {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    Some(rules)
}

impl Reconcile for Controller {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>> {
        let store = self.ctx.informers.clusterroles.store();
        let Some(role) = store.get(&ObjectRef::new(&name)) else {
            return Ok(None);
        };
        let Some(rules) = aggregate(&role, &store.state()) else {
            return Ok(None);
        };
        if role.rules.clone().unwrap_or_default() == rules {
            return Ok(None);
        }
        let api: Api<ClusterRole> = Api::all(self.ctx.client.clone());
        // Only the rules change; the resourceVersion makes a stale cache a conflict.
        let patch = json!({"metadata": {"resourceVersion": role.resource_version()},
            "rules": rules});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(role = name, "aggregated cluster role rules");
                Ok(None)
            }
            Err(e) if util::code(&e) == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(v: serde_json::Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn rules_are_the_union_of_matching_roles_in_name_order() {
        let admin = role(json!({"metadata": {"name": "admin"}, "aggregationRule": {
            "clusterRoleSelectors": [{"matchLabels": {"to-admin": "true"}}]}}));
        let pods = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        let all = vec![
            admin.clone(),
            role(
                json!({"metadata": {"name": "b", "labels": {"to-admin": "true"}},
                "rules": [pods, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
            ),
            role(
                json!({"metadata": {"name": "a", "labels": {"to-admin": "true"}},
                "rules": [pods]}),
            ),
            role(json!({"metadata": {"name": "c"}, "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})),
        ];
        let rules = aggregate(&admin, &all).unwrap();
        let resources: Vec<String> = rules
            .iter()
            .map(|r| r.resources.clone().unwrap().join(","))
            .collect();
        assert_eq!(resources, ["pods", "secrets"]);
        assert!(aggregate(&all[3], &all).is_none());
    }
}
