//! Why a pod fits nowhere: each node's reason, and the FailedScheduling message
//! kube-scheduler writes from them.

use std::collections::BTreeMap;

use crate::filters;

/// Why no node was chosen: each node's reason.
pub struct FitError {
    pub total: usize,
    pub failed: Vec<(String, filters::Reason)>,
}

/// "3 Insufficient cpu, 1 node(s) were unschedulable" (sorted, as kube-scheduler writes it).
fn histogram(reasons: impl Iterator<Item = String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

impl FitError {
    /// kube-scheduler's FailedScheduling message.
    pub fn message(&self, preemption: Option<&str>) -> String {
        if self.total == 0 {
            return "no nodes available to schedule pods".into();
        }
        let mut m = format!(
            "0/{} nodes are available: {}.",
            self.total,
            histogram(self.failed.iter().map(|(_, r)| r.text()))
        );
        match preemption {
            Some(p) => m.push_str(&format!(" preemption: {p}")),
            None => {
                let why = self.failed.iter().map(|(_, r)| {
                    if r.preemptable() {
                        "No preemption victims found for incoming pod.".to_string()
                    } else {
                        "Preemption is not helpful for scheduling.".to_string()
                    }
                });
                m.push_str(&format!(
                    " preemption: 0/{} nodes are available: {}",
                    self.total,
                    histogram(why)
                ));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_kube_schedulers() {
        let fit = FitError {
            total: 3,
            failed: vec![
                ("a".into(), filters::Reason::Insufficient("cpu".into())),
                ("b".into(), filters::Reason::Insufficient("cpu".into())),
                (
                    "c".into(),
                    filters::Reason::Taint("{node-role.kubernetes.io/control-plane: }".into()),
                ),
            ],
        };
        assert_eq!(
            fit.message(None),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling., 2 No preemption victims found for incoming pod."
        );
    }
}
