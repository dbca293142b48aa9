//! PodSecurity: pods are held to the Pod Security Standard their namespace's
//! `pod-security.kubernetes.io/{enforce,warn,audit}` labels name (else the configured
//! defaults, privileged unless the PodSecurityConfiguration says otherwise). Enforce refuses
//! a pod; warn sends warnings, for pods and for workloads' pod templates. Labelling a
//! namespace with a stricter enforce level warns about the pods already breaking it.

mod checks;

use minik_registry::admission::{Attributes, Operation, Verdict};
use minik_registry::{ApiError, Cause, Registry, Result};
use serde_json::Value;

use crate::Plugin;
use checks::{Level, violations};

const PREFIX: &str = "pod-security.kubernetes.io/";

/// The level and version one mode holds pods to.
#[derive(Debug, Clone)]
struct Standard {
    level: Level,
    version: String,
}

impl Standard {
    fn label(&self) -> String {
        format!("{}:{}", self.level.as_str(), self.version)
    }
}

#[derive(Debug, Clone)]
struct Modes {
    enforce: Standard,
    warn: Standard,
    audit: Standard,
}

pub struct PodSecurity {
    defaults: Modes,
    exempt_users: Vec<String>,
    exempt_namespaces: Vec<String>,
    exempt_runtime_classes: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// One mode from a label-like map (`enforce`, `enforce-version`); Err names a bad level.
fn mode(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: &Standard,
) -> std::result::Result<Standard, String> {
    let level = match get(name) {
        Some(l) => Level::parse(&l).ok_or_else(|| {
            format!("{name}: {l:?} must be one of privileged, baseline, restricted")
        })?,
        None => default.level,
    };
    let version = get(&format!("{name}-version")).unwrap_or_else(|| default.version.clone());
    Ok(Standard { level, version })
}

fn modes(
    get: &dyn Fn(&str) -> Option<String>,
    defaults: &Modes,
) -> std::result::Result<Modes, String> {
    Ok(Modes {
        enforce: mode(get, "enforce", &defaults.enforce)?,
        warn: mode(get, "warn", &defaults.warn)?,
        audit: mode(get, "audit", &defaults.audit)?,
    })
}

impl PodSecurity {
    /// From the plugin's PodSecurityConfiguration, if any.
    pub fn new(config: Option<&Value>) -> std::result::Result<Self, String> {
        let privileged = Standard {
            level: Level::Privileged,
            version: "latest".into(),
        };
        let base = Modes {
            enforce: privileged.clone(),
            warn: privileged.clone(),
            audit: privileged,
        };
        let Some(config) = config else {
            return Ok(PodSecurity {
                defaults: base,
                exempt_users: Vec::new(),
                exempt_namespaces: Vec::new(),
                exempt_runtime_classes: Vec::new(),
            });
        };
        if config["kind"] != "PodSecurityConfiguration" {
            return Err(
                "the PodSecurity plugin's configuration must be a PodSecurityConfiguration".into(),
            );
        }
        let d = &config["defaults"];
        let get = |k: &str| d[k].as_str().map(str::to_string);
        let defaults =
            modes(&get, &base).map_err(|e| format!("PodSecurityConfiguration defaults.{e}"))?;
        let ex = &config["exemptions"];
        Ok(PodSecurity {
            defaults,
            exempt_users: strings(&ex["usernames"]),
            exempt_namespaces: strings(&ex["namespaces"]),
            exempt_runtime_classes: strings(&ex["runtimeClasses"]),
        })
    }

    fn namespace_modes(&self, ns: &Value) -> Modes {
        let labels = &ns["metadata"]["labels"];
        let get = |k: &str| labels[format!("{PREFIX}{k}")].as_str().map(str::to_string);
        modes(&get, &self.defaults).unwrap_or_else(|_| {
            // A bad level fails closed, as kube-apiserver does.
            let restricted = Standard {
                level: Level::Restricted,
                version: "latest".into(),
            };
            Modes {
                enforce: restricted.clone(),
                warn: restricted.clone(),
                audit: restricted,
            }
        })
    }

    /// A namespace write: its labels must name real levels; a stricter enforce level warns
    /// about the pods that break it.
    async fn namespace(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        ns: &Value,
    ) -> Result<Verdict> {
        let labels = &ns["metadata"]["labels"];
        let get = |k: &str| labels[format!("{PREFIX}{k}")].as_str().map(str::to_string);
        let new = modes(&get, &self.defaults).map_err(|e| {
            let (label, message) = e.split_once(": ").unwrap_or((&e, ""));
            ApiError::invalid(
                attrs.info,
                attrs.name,
                vec![Cause {
                    field: format!("metadata.labels[{PREFIX}{label}]"),
                    message: format!("Invalid value: {message}"),
                    reason: "FieldValueInvalid".into(),
                }],
            )
        })?;
        let before = attrs.old.map(|o| self.namespace_modes(o).enforce.level);
        let mut verdict = Verdict::default();
        if attrs.operation != Operation::Update || before.is_none_or(|b| b >= new.enforce.level) {
            return Ok(verdict);
        }
        let pods = crate::cached(reg, "", "v1", "pods", Some(attrs.name)).await?;
        for pod in &pods {
            let v = violations(new.enforce.level, &pod["metadata"], &pod["spec"]);
            if !v.is_empty() {
                verdict.warnings.push(format!(
                    "existing pods in namespace {:?} violate the new PodSecurity enforce level {:?}",
                    attrs.name,
                    new.enforce.label()
                ));
                verdict.warnings.push(format!(
                    "{}: {}",
                    pod["metadata"]["name"].as_str().unwrap_or(""),
                    v.join(", ")
                ));
                break;
            }
        }
        Ok(verdict)
    }
}

/// The pod template of a workload (its metadata and spec), or a pod's own.
fn template<'a>(attrs: &Attributes<'_>, obj: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let t = match (attrs.info.group, attrs.info.plural) {
        ("", "pods") => return Some((&obj["metadata"], &obj["spec"])),
        ("", "podtemplates") => &obj["template"],
        ("batch", "cronjobs") => &obj["spec"]["jobTemplate"]["spec"]["template"],
        ("", "replicationcontrollers")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => &obj["spec"]["template"],
        _ => return None,
    };
    Some((&t["metadata"], &t["spec"]))
}

#[async_trait::async_trait]
impl Plugin for PodSecurity {
    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict> {
        if !matches!(attrs.operation, Operation::Create | Operation::Update) {
            return Ok(Verdict::default());
        }
        if crate::is_core(attrs, "namespaces") {
            return self.namespace(reg, attrs, obj).await;
        }
        let pod = crate::is_core(attrs, "pods");
        let ephemeral = attrs.subresource == Some("ephemeralcontainers");
        if (attrs.subresource.is_some() && !ephemeral)
            || self.exempt_users.contains(&attrs.user.name)
        {
            return Ok(Verdict::default());
        }
        let Some(ns) = attrs
            .namespace
            .filter(|n| !self.exempt_namespaces.iter().any(|e| e == n))
        else {
            return Ok(Verdict::default());
        };
        let Some((meta, spec)) = template(attrs, obj) else {
            return Ok(Verdict::default());
        };
        if spec["runtimeClassName"]
            .as_str()
            .is_some_and(|r| self.exempt_runtime_classes.iter().any(|e| e == r))
        {
            return Ok(Verdict::default());
        }
        // Updates that leave the pod spec alone (labels, status, ...) are not judged again.
        if attrs
            .old
            .is_some_and(|o| template(attrs, o).is_some_and(|(_, s)| s == spec))
        {
            return Ok(Verdict::default());
        }
        let namespaces = crate::cached(reg, "", "v1", "namespaces", None).await?;
        let modes = namespaces
            .iter()
            .find(|n| n["metadata"]["name"] == ns)
            .map(|n| self.namespace_modes(n))
            .unwrap_or_else(|| self.defaults.clone());
        if pod || ephemeral {
            minik_registry::admission::annotate(
                "pod-security.kubernetes.io/enforce-policy",
                modes.enforce.label(),
            );
            let v = violations(modes.enforce.level, meta, spec);
            if !v.is_empty() {
                return Err(ApiError::forbidden(
                    attrs.info,
                    attrs.name,
                    format!(
                        "violates PodSecurity {:?}: {}",
                        modes.enforce.label(),
                        v.join(", ")
                    ),
                ));
            }
        }
        let audited = violations(modes.audit.level, meta, spec);
        if !audited.is_empty() {
            minik_registry::admission::annotate(
                "pod-security.kubernetes.io/audit-violations",
                format!(
                    "would violate PodSecurity {:?}: {}",
                    modes.audit.label(),
                    audited.join(", ")
                ),
            );
        }
        let mut verdict = Verdict::default();
        let standards = if pod {
            vec![&modes.warn]
        } else {
            vec![&modes.enforce, &modes.warn]
        };
        let strictest = standards.into_iter().max_by_key(|s| s.level);
        if let Some(s) = strictest {
            let v = violations(s.level, meta, spec);
            if !v.is_empty() {
                verdict.warnings.push(format!(
                    "would violate PodSecurity {:?}: {}",
                    s.label(),
                    v.join(", ")
                ));
            }
        }
        Ok(verdict)
    }
}
