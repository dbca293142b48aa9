//! The audit log (`--audit-policy-file`, `--audit-log-path`): for every authenticated
//! request the policy does not set to None, JSON-lines audit.k8s.io/v1 Events at the
//! RequestReceived and ResponseComplete stages (ResponseStarted for watches), with the
//! request and response objects at the Request and RequestResponse levels.

mod policy;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::authn::UserInfo;
use crate::authz::Attributes;
pub use policy::{Level, Policy};
pub use writer::Rotation;

/// The audit policy and where events go.
pub struct Auditor {
    policy: Policy,
    sink: Mutex<writer::Sink>,
}

impl Auditor {
    /// From the policy file and the log path; Err says what is wrong with either.
    pub fn new(policy_file: &Path, log: &Path, rotation: Rotation) -> Result<Arc<Auditor>, String> {
        let shown = policy_file.display();
        let text = std::fs::read_to_string(policy_file)
            .map_err(|e| format!("reading audit policy file {shown}: {e}"))?;
        let doc: Value = serde_saphyr::from_str(&text)
            .map_err(|e| format!("audit policy file {shown} is not valid YAML: {e}"))?;
        let policy = Policy::parse(&doc).map_err(|e| format!("audit policy file {shown}: {e}"))?;
        let sink = writer::Sink::open(log, rotation)
            .map_err(|e| format!("opening audit log {}: {e}", log.display()))?;
        Ok(Arc::new(Auditor {
            policy,
            sink: Mutex::new(sink),
        }))
    }

    fn emit(&self, event: &Value) {
        let line = serde_json::to_vec(event).unwrap_or_default();
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = sink.write(&line) {
            tracing::error!(error = %e, "writing the audit log");
        }
    }
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A body as the object it carries (JSON, YAML or protobuf), if it is one.
fn object(headers: &HeaderMap, bytes: &[u8], omit_managed: bool) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mut v: Value = if ctype.starts_with("application/vnd.kubernetes.protobuf") {
        minik_api::proto::decode_envelope(bytes).ok()?
    } else if ctype.contains("yaml") {
        serde_saphyr::from_str(std::str::from_utf8(bytes).ok()?).ok()?
    } else {
        serde_json::from_slice(bytes).ok()?
    };
    if omit_managed && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    Some(v)
}

fn object_ref(a: &Attributes, uri: &str) -> Value {
    let segs: Vec<&str> = uri.split('/').filter(|s| !s.is_empty()).collect();
    let api_version = match segs.as_slice() {
        ["api", v, ..] => *v,
        ["apis", _, v, ..] => *v,
        _ => "",
    };
    let mut r = json!({"resource": a.resource, "apiVersion": api_version});
    for (k, v) in [
        ("namespace", &a.namespace),
        ("name", &a.name),
        ("apiGroup", &a.group),
        ("subresource", &a.subresource),
    ] {
        if !v.is_empty() {
            r[k] = json!(v);
        }
    }
    r
}

/// Audit every request (after authentication).
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(auditor) = state.audit.clone() else {
        return next.run(req).await;
    };
    let user = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_else(UserInfo::anonymous);
    let attrs = Attributes::of(&state.registry, &req);
    let (level, omit) = auditor.policy.level(&user, &attrs);
    if level == Level::None {
        return next.run(req).await;
    }
    let omit_managed = auditor.policy.omit_managed_fields;
    let id = req
        .headers()
        .get("audit-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let uri = req.uri().to_string();
    let mut u = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        u["uid"] = json!(user.uid);
    }
    let mut event = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1",
        "level": level.as_str(), "auditID": id, "requestURI": uri, "verb": attrs.verb,
        "user": u, "requestReceivedTimestamp": now()});
    if let Some(agent) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        event["userAgent"] = json!(agent);
    }
    if let Some(ip) = req.extensions().get::<crate::tls::PeerAddr>() {
        event["sourceIPs"] = json!([ip.0.ip().to_string()]);
    }
    if let Some(who) = req
        .headers()
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
    {
        event["impersonatedUser"] = json!({"username": who});
    }
    if attrs.resource_request {
        event["objectRef"] = object_ref(&attrs, req.uri().path());
    }
    let req = if level >= Level::Request && !matches!(attrs.verb.as_str(), "get" | "list" | "watch")
    {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, crate::filters::MAX_BODY).await else {
            return axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
        };
        if let Some(o) = object(&parts.headers, &bytes, omit_managed) {
            event["requestObject"] = o;
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };
    let stage = |event: &mut Value, name: &str| {
        event["stage"] = json!(name);
        event["stageTimestamp"] = json!(now());
        if !omit.iter().any(|o| o == name) {
            auditor.emit(event);
        }
    };
    stage(&mut event, "RequestReceived");
    let streaming = attrs.verb == "watch";
    let (resp, annotations) = minik_registry::admission::collect_annotations(next.run(req)).await;
    if !annotations.is_empty() {
        event["annotations"] = annotations
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let code = resp.status().as_u16();
    event["responseStatus"] = json!({"metadata": {}, "code": code});
    let full = level == Level::RequestResponse && !streaming;
    let resp = if full || code >= 400 {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        if let Some(o) = object(&parts.headers, &bytes, omit_managed) {
            if code >= 400 {
                for k in ["status", "message", "reason"] {
                    if let Some(v) = o.get(k) {
                        event["responseStatus"][k] = v.clone();
                    }
                }
            }
            if full {
                event["responseObject"] = o;
            }
        }
        Response::from_parts(parts, Body::from(bytes))
    } else {
        resp
    };
    stage(
        &mut event,
        if streaming {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        },
    );
    let mut resp = resp;
    if let Ok(v) = id.parse() {
        resp.headers_mut().insert("audit-id", v);
    }
    resp
}
