//! The namespace's status conditions, as kube-controller-manager's namespace deleter keeps
//! them: each of its five condition types is True with what went wrong, or False with the
//! "all is well" reason and message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// (type, reason, message) of each condition when all is well, in Kubernetes' order.
const OK: &[(&str, &str, &str)] = &[
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
];

/// What emptying the namespace found.
#[derive(Default)]
pub struct Report {
    pub failing: Vec<NamespaceCondition>,
    /// Resources that could not be emptied.
    pub errors: Vec<String>,
    /// Discovery that failed: what it missed may still hold content.
    pub incomplete: Vec<String>,
    pub estimate: i64,
    pub remaining: BTreeMap<String, usize>,
    pub finalizers: BTreeMap<String, usize>,
}

pub fn condition(type_: &str, status: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
    }
}

impl Report {
    /// Discovery missed something (`type_`, `reason`): content may remain where it looked.
    pub fn missed(&mut self, type_: &str, reason: &str, msg: String) {
        self.incomplete.push(msg.clone());
        self.failing.push(condition(type_, "True", reason, msg));
    }

    /// The conditions that say something is wrong (ProcessContentTotals and friends).
    pub fn totals(&mut self) {
        let list = |m: &BTreeMap<String, usize>, f: &dyn Fn(&String, &usize) -> String| {
            m.iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| f(k, n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.remaining.is_empty() {
            let msg = list(&self.remaining, &|r, n| {
                format!("{r} has {n} resource instances")
            });
            let msg = format!("Some resources are remaining: {msg}");
            self.failing.push(condition(
                "NamespaceContentRemaining",
                "True",
                "SomeResourcesRemain",
                msg,
            ));
        }
        if !self.finalizers.is_empty() {
            let msg = list(&self.finalizers, &|f, n| {
                format!("{f} in {n} resource instances")
            });
            let msg = format!("Some finalizers are remaining: {msg}");
            self.failing.push(condition(
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizerRemain",
                msg,
            ));
        }
        if !self.errors.is_empty() {
            let mut errors = self.errors.clone();
            errors.sort();
            let msg = format!(
                "Failed to delete all resource types, {} remaining: {}",
                errors.len(),
                errors.join(", ")
            );
            self.failing.push(condition(
                "NamespaceDeletionContentFailure",
                "True",
                "ContentDeletionFailed",
                msg,
            ));
        }
    }
}

/// Set every condition the controller keeps: the failing ones as given, the others to their
/// "all is well" form. Whether anything changed.
pub fn update_conditions(
    conditions: &mut Vec<NamespaceCondition>,
    failing: &[NamespaceCondition],
) -> bool {
    let mut changed = false;
    for (type_, reason, msg) in OK {
        let new = failing
            .iter()
            .find(|c| c.type_ == *type_)
            .cloned()
            .unwrap_or_else(|| condition(type_, "False", reason, msg.to_string()));
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            None => {
                conditions.push(new);
                changed = true;
            }
            Some(old)
                if (&old.status, &old.reason, &old.message)
                    != (&new.status, &new.reason, &new.message) =>
            {
                if old.status != new.status {
                    old.last_transition_time = new.last_transition_time.clone();
                }
                old.status = new.status;
                old.reason = new.reason;
                old.message = new.message;
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_is_left_and_turn_false_when_all_is_well() {
        let mut report = Report::default();
        report.remaining.insert("configmaps.".into(), 2);
        report.finalizers.insert("example.com/hold".into(), 2);
        report.totals();
        let mut conditions = Vec::new();
        assert!(update_conditions(&mut conditions, &report.failing));
        assert_eq!(conditions.len(), 5);
        let get =
            |c: &[NamespaceCondition], t: &str| c.iter().find(|c| c.type_ == t).cloned().unwrap();
        let remaining = get(&conditions, "NamespaceContentRemaining");
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 2 resource instances")
        );
        assert_eq!(
            get(&conditions, "NamespaceFinalizersRemaining")
                .message
                .as_deref(),
            Some("Some finalizers are remaining: example.com/hold in 2 resource instances")
        );
        assert_eq!(
            get(&conditions, "NamespaceDeletionDiscoveryFailure").status,
            "False"
        );
        // Nothing changed: nothing to write.
        assert!(!update_conditions(&mut conditions, &report.failing));
        // All gone.
        assert!(update_conditions(&mut conditions, &[]));
        let remaining = get(&conditions, "NamespaceContentRemaining");
        assert_eq!(
            (remaining.status.as_str(), remaining.reason.as_deref()),
            ("False", Some("ContentRemoved"))
        );
    }

    #[test]
    fn content_failures_are_listed_sorted() {
        let mut report = Report {
            errors: vec!["b failed".into(), "a failed".into()],
            ..Default::default()
        };
        report.totals();
        assert_eq!(
            report.failing[0].message.as_deref(),
            Some("Failed to delete all resource types, 2 remaining: a failed, b failed")
        );
    }
}
