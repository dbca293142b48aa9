//! EventRateLimit: token buckets on event writes, per server, namespace, user or source and
//! object, as the plugin's Configuration (eventratelimit.admission.k8s.io/v1alpha1) in the
//! AdmissionConfiguration sets them. Over a limit the write is answered 429.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use minik_registry::admission::{Attributes, Operation, Verdict};
use minik_registry::{ApiError, Registry, Result};
use serde_json::Value;

use crate::Plugin;

struct Limit {
    kind: String,
    qps: f64,
    burst: f64,
    /// key -> (tokens, last refill)
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    cache_size: usize,
}

pub struct EventRateLimit {
    limits: Vec<Limit>,
}

impl EventRateLimit {
    pub fn new(config: Option<&Value>) -> std::result::Result<Self, String> {
        let config = config
            .ok_or("EventRateLimit needs its Configuration in --admission-control-config-file")?;
        if config["kind"] != "Configuration" {
            return Err("the EventRateLimit plugin's configuration must be a Configuration".into());
        }
        let mut limits = Vec::new();
        for (i, l) in config["limits"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let kind = l["type"].as_str().unwrap_or("").to_string();
            if !matches!(
                kind.as_str(),
                "Server" | "Namespace" | "User" | "SourceAndObject"
            ) {
                return Err(format!(
                    "EventRateLimit limits[{i}].type {kind:?} is not Server, Namespace, User or SourceAndObject"
                ));
            }
            let qps = l["qps"].as_f64().filter(|q| *q > 0.0);
            let burst = l["burst"].as_f64().filter(|b| *b > 0.0);
            let (Some(qps), Some(burst)) = (qps, burst) else {
                return Err(format!(
                    "EventRateLimit limits[{i}]: qps and burst must be positive"
                ));
            };
            let default_cache = if kind == "Server" { 1 } else { 4096 };
            limits.push(Limit {
                kind,
                qps,
                burst,
                buckets: Mutex::new(HashMap::new()),
                cache_size: l["cacheSize"]
                    .as_u64()
                    .map_or(default_cache, |c| c as usize),
            });
        }
        if limits.is_empty() {
            return Err("EventRateLimit's configuration has no limits".into());
        }
        Ok(EventRateLimit { limits })
    }
}

fn key(kind: &str, attrs: &Attributes<'_>, event: &Value) -> String {
    match kind {
        "Namespace" => attrs.namespace.unwrap_or("").to_string(),
        "User" => attrs.user.name.clone(),
        "SourceAndObject" => {
            let src = &event["source"];
            let obj = &event["involvedObject"];
            format!(
                "{}/{}/{}/{}/{}",
                src["component"]
                    .as_str()
                    .unwrap_or(event["reportingController"].as_str().unwrap_or("")),
                src["host"].as_str().unwrap_or(""),
                obj["kind"].as_str().unwrap_or(""),
                obj["namespace"].as_str().unwrap_or(""),
                obj["name"].as_str().unwrap_or("")
            )
        }
        _ => String::new(),
    }
}

#[async_trait::async_trait]
impl Plugin for EventRateLimit {
    async fn validate(
        &self,
        _: &Registry,
        attrs: &Attributes<'_>,
        event: &Value,
    ) -> Result<Verdict> {
        let is_event = attrs.info.kind == "Event" && attrs.subresource.is_none();
        if !is_event || attrs.operation == Operation::Delete || attrs.dry_run {
            return Ok(Verdict::default());
        }
        for l in &self.limits {
            let k = key(&l.kind, attrs, event);
            let mut buckets = l.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if buckets.len() >= l.cache_size && !buckets.contains_key(&k) {
                // Forget the longest-idle bucket (a new key starts full anyway).
                if let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone())
                {
                    buckets.remove(&oldest);
                }
            }
            let now = Instant::now();
            let (tokens, last) = buckets.entry(k.clone()).or_insert((l.burst, now));
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * l.qps).min(l.burst);
            *last = now;
            if *tokens < 1.0 {
                return Err(ApiError::TooManyRequests(format!(
                    "limit reached on type {} for key {k}",
                    l.kind
                )));
            }
            *tokens -= 1.0;
        }
        Ok(Verdict::default())
    }
}
