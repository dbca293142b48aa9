//! An audit Policy (audit.k8s.io/v1): the first rule that matches a request sets how much
//! of it is logged.

use serde_json::Value;

use crate::authn::UserInfo;
use crate::authz::Attributes;

/// How much of a request is logged, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "None" => Some(Level::None),
            "Metadata" => Some(Level::Metadata),
            "Request" => Some(Level::Request),
            "RequestResponse" => Some(Level::RequestResponse),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

const STAGES: &[&str] = &[
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

#[derive(Debug, Clone)]
struct Rule {
    level: Level,
    users: Vec<String>,
    groups: Vec<String>,
    verbs: Vec<String>,
    /// (group, resources, resourceNames)
    resources: Vec<(String, Vec<String>, Vec<String>)>,
    namespaces: Vec<String>,
    non_resource_urls: Vec<String>,
    omit_stages: Vec<String>,
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<String>,
    pub omit_managed_fields: bool,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn stages(v: &Value, at: &str) -> Result<Vec<String>, String> {
    let s = strings(v);
    match s.iter().find(|x| !STAGES.contains(&x.as_str())) {
        Some(bad) => Err(format!("{at}: unknown stage {bad:?}")),
        None => Ok(s),
    }
}

impl Policy {
    /// Parse a policy document; Err says what is wrong.
    pub fn parse(doc: &Value) -> Result<Policy, String> {
        if doc["kind"] != "Policy" {
            return Err("kind must be Policy".into());
        }
        let api = doc["apiVersion"].as_str().unwrap_or("");
        if !matches!(api, "audit.k8s.io/v1" | "audit.k8s.io/v1beta1") {
            return Err(format!("apiVersion {api:?} is not audit.k8s.io/v1"));
        }
        let mut rules = Vec::new();
        for (i, r) in doc["rules"].as_array().into_iter().flatten().enumerate() {
            let at = format!("rules[{i}]");
            let level = r["level"].as_str().and_then(Level::parse).ok_or_else(|| {
                format!(
                    "{at}.level: {:?} is not None, Metadata, Request or RequestResponse",
                    r["level"].as_str().unwrap_or("")
                )
            })?;
            let resources = r["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| {
                    (
                        g["group"].as_str().unwrap_or("").to_string(),
                        strings(&g["resources"]),
                        strings(&g["resourceNames"]),
                    )
                })
                .collect();
            let non_resource_urls = strings(&r["nonResourceURLs"]);
            let has_resource_terms = r.get("resources").is_some() || r.get("namespaces").is_some();
            if !non_resource_urls.is_empty() && has_resource_terms {
                return Err(format!(
                    "{at}: rules cannot apply to both regular resources and non-resource URLs"
                ));
            }
            rules.push(Rule {
                level,
                users: strings(&r["users"]),
                groups: strings(&r["userGroups"]),
                verbs: strings(&r["verbs"]),
                resources,
                namespaces: strings(&r["namespaces"]),
                non_resource_urls,
                omit_stages: stages(&r["omitStages"], &format!("{at}.omitStages"))?,
            });
        }
        if rules.is_empty() {
            return Err("a policy must have at least one rule".into());
        }
        Ok(Policy {
            rules,
            omit_stages: stages(&doc["omitStages"], "omitStages")?,
            omit_managed_fields: doc["omitManagedFields"] == true,
        })
    }

    /// The level of a request, and the stages not to log.
    pub fn level(&self, user: &UserInfo, a: &Attributes) -> (Level, Vec<String>) {
        for r in &self.rules {
            if matches(r, user, a) {
                let mut omit = self.omit_stages.clone();
                omit.extend(r.omit_stages.iter().cloned());
                return (r.level, omit);
            }
        }
        (Level::None, Vec::new())
    }
}

fn matches(r: &Rule, user: &UserInfo, a: &Attributes) -> bool {
    if !r.users.is_empty() && !r.users.contains(&user.name) {
        return false;
    }
    if !r.groups.is_empty() && !user.groups.iter().any(|g| r.groups.contains(g)) {
        return false;
    }
    if !r.verbs.is_empty() && !r.verbs.contains(&a.verb) {
        return false;
    }
    if !a.resource_request {
        if !r.resources.is_empty() || !r.namespaces.is_empty() {
            return false;
        }
        return r.non_resource_urls.is_empty()
            || r.non_resource_urls
                .iter()
                .any(|u| match u.strip_suffix('*') {
                    Some(prefix) => a.path.starts_with(prefix),
                    None => *u == a.path,
                });
    }
    if !r.non_resource_urls.is_empty() {
        return false;
    }
    if !r.namespaces.is_empty() && !r.namespaces.contains(&a.namespace) {
        return false;
    }
    if r.resources.is_empty() {
        return true;
    }
    let full = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    r.resources.iter().any(|(group, resources, names)| {
        *group == a.group
            && (resources.is_empty()
                || resources.iter().any(|res| {
                    *res == full
                        || *res == "*"
                        || (a.subresource.is_empty() && *res == a.resource)
                        || res.strip_prefix("*/").is_some_and(|s| s == a.subresource)
                        || res.strip_suffix("/*").is_some_and(|r| r == a.resource)
                }))
            && (names.is_empty() || names.contains(&a.name))
    })
}
