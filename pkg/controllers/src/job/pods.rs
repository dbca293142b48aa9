//! What the Job controller reads from and writes into pods: the tracking finalizer, the
//! completion index, failures under the podFailurePolicy, and new pods from the template.

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy};
use k8s_openapi::api::core::v1::{
    ContainerStatus, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodStatus,
};
use kube::ResourceExt;

use crate::util;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const INDEX: &str = "batch.kubernetes.io/job-completion-index";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// names.MaxGeneratedNameLength: 63 less the 5-character suffix.
const MAX_GENERATE_NAME: usize = 58;

pub fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

pub fn succeeded(pod: &Pod) -> bool {
    phase(pod) == Some("Succeeded")
}

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// Failed pods only are replaced (podReplacementPolicy Failed, or a podFailurePolicy).
pub fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Failed, or (unless only failed pods are replaced) deleted before it succeeded: orphans
/// that never reach a phase count as failures.
pub fn is_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == Some("Failed") {
        return true;
    }
    !only_replace_failed(job) && pod.metadata.deletion_timestamp.is_some() && !succeeded(pod)
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !util::is_terminal(pod)
}

/// The pod's completion index (from its annotation), if valid.
pub fn index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(INDEX)
        .and_then(|v| v.parse().ok())
        .filter(|i| *i >= 0)
}

/// What the podFailurePolicy makes of a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched, or a Count rule: it counts toward backoffLimit.
    Count,
    /// An Ignore rule: not counted.
    Ignore,
    /// A FailJob rule: the Job fails with this message.
    FailJob(String),
    /// A FailIndex rule (the index fails; counted).
    FailIndex,
}

impl Verdict {
    pub fn counts(&self) -> bool {
        *self != Verdict::Ignore
    }
}

/// The first rule of `policy` a failed pod matches.
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    let status = pod.status.clone().unwrap_or_default();
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    for (i, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            exit_code_match(&status, req).map(|c| {
                let code = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map_or(0, |t| t.exit_code);
                format!(
                    "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                    c.name, rule.action
                )
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            status.conditions.iter().flatten().find_map(|c| {
                patterns
                    .iter()
                    .any(|p| {
                        p.type_ == c.type_ && p.status.as_deref().unwrap_or("True") == c.status
                    })
                    .then(|| {
                        format!(
                            "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                            c.type_, rule.action
                        )
                    })
            })
        } else {
            None
        };
        let Some(message) = matched else { continue };
        match rule.action.as_str() {
            "Ignore" => return Verdict::Ignore,
            "Count" => return Verdict::Count,
            "FailJob" => return Verdict::FailJob(message),
            "FailIndex" => return Verdict::FailIndex,
            _ => {}
        }
    }
    Verdict::Count
}

fn exit_code_match<'a>(
    status: &'a PodStatus,
    req: &k8s_openapi::api::batch::v1::PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    let matches = |c: &&ContainerStatus| {
        let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return false;
        };
        req.container_name.as_ref().is_none_or(|n| *n == c.name)
            && t.exit_code != 0
            && match req.operator.as_str() {
                "In" => req.values.contains(&t.exit_code),
                "NotIn" => !req.values.contains(&t.exit_code),
                _ => false,
            }
    };
    let found = status.container_statuses.iter().flatten().find(matches);
    found.or_else(|| {
        status
            .init_container_statuses
            .iter()
            .flatten()
            .find(matches)
    })
}

/// A new pod of `job` (with the tracking finalizer); an Indexed Job's carries its index as
/// annotation, label, JOB_COMPLETION_INDEX and hostname `<job>-<index>`.
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let name = job.name_any();
    let mut pod = util::pod_from_template(&template, job, &name, None);
    let finalizers = pod.metadata.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let Some(i) = index else {
        return pod;
    };
    let suffix = format!("-{i}-");
    let mut prefix = format!("{name}{suffix}");
    if prefix.len() > MAX_GENERATE_NAME {
        let keep = name
            .char_indices()
            .map(|(p, _)| p)
            .take_while(|p| *p <= MAX_GENERATE_NAME - suffix.len())
            .last()
            .unwrap_or(0);
        prefix = format!("{}{suffix}", &name[..keep]);
    }
    pod.metadata.generate_name = Some(prefix);
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX.into(), i.to_string());
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(INDEX.into(), i.to_string());
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(format!("{name}-{i}"));
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            let env = c.env.get_or_insert_with(Vec::new);
            if env.iter().any(|e| e.name == INDEX_ENV) {
                continue;
            }
            env.push(EnvVar {
                name: INDEX_ENV.into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.labels['{INDEX}']"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    pod
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
