//! The generic resource handlers: one set of functions for every resource.

use axum::body::Bytes;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minik_registry::patch::PatchType;
use minik_registry::{
    ApiError, DeleteParams, ListParams, Propagation, ResourceVersionMatch, Selector, WriteParams,
};
use serde_json::{Value, json};

mod subresource;
mod token;
mod watch;

use subresource::subresource;
use watch::watch;

use crate::AppState;
use crate::metrics::{RequestLabels, RequestTimer};
use crate::path::{self, Target};
use crate::status::{Failure, json_response};
use crate::view::View;

type Params = Query<Vec<(String, String)>>;

struct Request {
    method: Method,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    /// Set when the client asked to upgrade to a WebSocket (watch over WebSocket).
    ws: Option<WebSocketUpgrade>,
    /// Who asks (set by authentication).
    user: Option<crate::authn::UserInfo>,
    /// Whether the server's own components ask (through the in-process client).
    in_process: bool,
}

type Ws = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

impl Request {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn accept(&self) -> Option<&str> {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
    }
}

/// The parts of a resource request every handler takes.
pub struct Parts {
    method: Method,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    ws: Option<WebSocketUpgrade>,
    user: Option<crate::authn::UserInfo>,
    in_process: bool,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Parts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let params = Params::from_request_parts(parts, state)
            .await
            .map(|Query(p)| p)
            .unwrap_or_default();
        let ws: Ws = WebSocketUpgrade::from_request_parts(parts, state).await;
        Ok(Parts {
            method: parts.method.clone(),
            params,
            headers: parts.headers.clone(),
            ws: ws.ok(),
            user: parts.extensions.get::<crate::authn::UserInfo>().cloned(),
            in_process: parts
                .extensions
                .get::<crate::authn::LocalIdentity>()
                .is_some(),
        })
    }
}

fn request(p: Parts, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Request {
    Request {
        method: p.method,
        params: p.params,
        headers: p.headers,
        body,
        ws: p.ws,
        user: p.user,
        in_process: p.in_process,
    }
}

/// `/api/<version>/...`
pub async fn core(
    State(state): State<AppState>,
    Path((version, rest)): Path<(String, String)>,
    req: axum::extract::Request,
) -> Response {
    serve_raw(&state, "", &version, &rest, req).await
}

/// `/apis/<group>/<version>/...`
pub async fn grouped(
    State(state): State<AppState>,
    Path((group, version, rest)): Path<(String, String, String)>,
    req: axum::extract::Request,
) -> Response {
    serve_raw(&state, &group, &version, &rest, req).await
}

/// Connect subresources (exec, attach, port-forward, proxy) get the request as it came (its
/// connection may be upgraded); the rest get its parts and body.
async fn serve_raw(
    state: &AppState,
    group: &str,
    version: &str,
    rest: &str,
    req: axum::extract::Request,
) -> Response {
    use axum::extract::{FromRequest, FromRequestParts};
    let target = path::parse(&state.registry, group, version, rest);
    if let Some(t) = &target
        && t.name.is_some()
        && let Some(sub) = t.subresource.as_deref()
        && crate::proxy::is_connect(sub)
        && crate::discovery::served_subresource(t.info, sub).is_some()
    {
        return match crate::proxy::serve(state, t, rest, req).await {
            Ok(resp) => resp,
            Err(e) => Failure(e).into_response(),
        };
    }
    let (mut parts, body) = req.into_parts();
    let Ok(p) = Parts::from_request_parts(&mut parts, state).await;
    let body = Bytes::from_request(axum::extract::Request::from_parts(parts, body), state).await;
    serve(state, (group, version, rest), target, request(p, body)).await
}

/// A resource request whose path parsed to `target` (None: no resource there).
async fn serve(
    state: &AppState,
    (group, version, rest): (&str, &str, &str),
    target: Option<Target>,
    req: Request,
) -> Response {
    let Some(target) = target else {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        return crate::status::not_found_path(
            format!("{prefix}/{rest}").parse().unwrap_or_default(),
        )
        .await;
    };
    let watch = req.flag("watch") && target.name.is_none();
    let labels = RequestLabels {
        verb: path::verb(&req.method, target.name.is_some(), watch).to_ascii_uppercase(),
        group: group.to_string(),
        version: version.to_string(),
        resource: target.info.plural.to_string(),
        subresource: target.subresource.clone().unwrap_or_default(),
        scope: match (&target.namespace, &target.name) {
            (_, Some(_)) => "resource",
            (Some(_), None) => "namespace",
            (None, None) => "cluster",
        }
        .into(),
        code: String::new(),
    };
    let timer = RequestTimer::start(&state.metrics, labels);
    let mut resp = match dispatch(state, &target, req).await {
        Ok(resp) => resp,
        Err(e) => Failure(e).into_response(),
    };
    if let Some(msg) = target.info.deprecated
        && let Some(v) = crate::status::warning(msg)
    {
        resp.headers_mut().append(axum::http::header::WARNING, v);
    }
    timer.finish(resp.status().as_u16());
    resp
}

async fn dispatch(state: &AppState, t: &Target, req: Request) -> Result<Response, ApiError> {
    let reg = &state.registry;
    let ns = t.namespace.as_deref();
    let sub = t.subresource.as_deref();
    if let Some(s) = sub {
        let served = crate::discovery::served_subresource(t.info, s).is_some();
        if !served || t.name.is_none() {
            return Err(ApiError::NotFound {
                group: t.info.group.into(),
                resource: format!("{}/{s}", t.info.plural),
                name: t.name.clone().unwrap_or_default(),
            });
        }
        if s != "status" {
            return subresource(state, t, s, &req).await;
        }
    }
    if !t.info.verbs.contains(&path::verb(
        &req.method,
        t.name.is_some(),
        req.flag("watch"),
    )) {
        return Err(ApiError::MethodNotAllowed);
    }
    match (&req.method, t.name.as_deref()) {
        (&Method::GET, None) if req.flag("watch") => watch(state, t, req).await,
        (&Method::GET, None) => {
            let list = reg.list(t.info, ns, &list_params(&req)?).await?;
            Ok(respond_list(t, &req, list))
        }
        (&Method::GET, Some(name)) => {
            let obj = reg.get(t.info, ns, name).await?;
            Ok(respond_object(t, &req, StatusCode::OK, obj, &[]))
        }
        (&Method::POST, None) => {
            let (obj, warnings) = reg
                .create(t.info, ns, body(&req)?, &write_params(&req))
                .await?;
            Ok(respond_object(t, &req, StatusCode::CREATED, obj, &warnings))
        }
        (&Method::PUT, Some(name)) => {
            let status = sub == Some("status");
            let (obj, warnings) = reg
                .update(t.info, ns, name, body(&req)?, status, &write_params(&req))
                .await?;
            Ok(respond_object(t, &req, StatusCode::OK, obj, &warnings))
        }
        (&Method::DELETE, Some(name)) => {
            let (obj, gone) = reg.delete(t.info, ns, name, &delete_params(&req)?).await?;
            if !gone {
                return Ok(respond_object(t, &req, StatusCode::OK, obj, &[]));
            }
            let details = json!({"name": name, "group": t.info.group, "kind": t.info.plural,
                "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)});
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "details": details});
            Ok(json_response(StatusCode::OK, &body, &[]))
        }
        (&Method::DELETE, None) => delete_collection(state, t, &req).await,
        (&Method::PATCH, Some(_)) => patch(state, t, &req).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// PATCH of an object or of a subresource.
async fn patch(state: &AppState, t: &Target, req: &Request) -> Result<Response, ApiError> {
    let ctype = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = PatchType::from_content_type(ctype)?;
    let bytes = body_bytes(req)?;
    let target = minik_registry::patch::Target {
        info: t.info,
        ns: t.namespace.as_deref(),
        name: t.name.as_deref().unwrap_or_default(),
        sub: t.subresource.as_deref(),
    };
    if kind == PatchType::Apply {
        let mut params = write_params(req);
        params.field_manager = req.param("fieldManager").map(str::to_string);
        let ((obj, warnings), created) = state
            .registry
            .apply(&target, bytes, req.flag("force"), &params)
            .await?;
        let code = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok(respond_object(t, req, code, obj, &warnings));
    }
    let (obj, warnings) = state
        .registry
        .patch(&target, kind, bytes, &write_params(req))
        .await?;
    Ok(respond_object(t, req, StatusCode::OK, obj, &warnings))
}

/// The request body as it came; 413 when it is over the limit.
fn body_bytes(req: &Request) -> Result<&Bytes, ApiError> {
    match &req.body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::RequestEntityTooLarge(format!(
                "the request body is larger than {} bytes",
                crate::filters::MAX_BODY
            )))
        }
        Err(e) => Err(ApiError::BadRequest(e.to_string())),
    }
}

fn body(req: &Request) -> Result<Value, ApiError> {
    let bytes = body_bytes(req)?;
    let ctype = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let value: Value = if ctype.starts_with("application/json") || ctype.is_empty() {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON body: {e}")))?
    } else if ctype.starts_with("application/vnd.kubernetes.protobuf") {
        minik_api::proto::decode_envelope(bytes)
            .map_err(|e| ApiError::BadRequest(format!("error decoding protobuf body: {e}")))?
    } else if ctype.starts_with("application/yaml") || ctype.starts_with("application/x-yaml") {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::BadRequest("the YAML body is not UTF-8".into()))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML body: {e}")))?
    } else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ctype})"
        )));
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(value)
}

fn write_params(req: &Request) -> WriteParams {
    WriteParams {
        field_validation: req.param("fieldValidation").map(str::to_string),
        dry_run: req.param("dryRun") == Some("All"),
        field_manager: Some(field_manager(req)),
        user: req.user.clone(),
        ..Default::default()
    }
}

/// `fieldManager`, else what the User-Agent names before its first '/' (as kube-apiserver).
fn field_manager(req: &Request) -> String {
    if let Some(m) = req.param("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let agent = req
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match agent.split('/').next().map(str::trim) {
        Some(a) if !a.is_empty() => a.chars().take(128).collect(),
        _ => "unknown".into(),
    }
}

fn selectors(req: &Request) -> Result<(Selector, Selector), ApiError> {
    Ok((
        Selector::labels(req.param("labelSelector").unwrap_or(""))?,
        Selector::fields(req.param("fieldSelector").unwrap_or(""))?,
    ))
}

fn list_params(req: &Request) -> Result<ListParams, ApiError> {
    let (label_selector, field_selector) = selectors(req)?;
    let limit = match req.param("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))?
            .max(0) as usize,
    };
    let resource_version_match = match req.param("resourceVersionMatch") {
        None | Some("") => ResourceVersionMatch::Unset,
        Some("NotOlderThan") => ResourceVersionMatch::NotOlderThan,
        Some("Exact") => ResourceVersionMatch::Exact,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
    };
    Ok(ListParams {
        label_selector,
        field_selector,
        limit,
        continue_token: req
            .param("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        resource_version: req.param("resourceVersion").map(str::to_string),
        resource_version_match,
    })
}

fn delete_params(req: &Request) -> Result<DeleteParams, ApiError> {
    let mut p =
        DeleteParams {
            dry_run: req.param("dryRun") == Some("All"),
            grace_period_seconds: match req.param("gracePeriodSeconds") {
                Some(g) => Some(g.parse().map_err(|_| {
                    ApiError::BadRequest(format!("invalid gracePeriodSeconds {g:?}"))
                })?),
                None => None,
            },
            propagation: req
                .param("propagationPolicy")
                .map(propagation)
                .transpose()?,
            user: req.user.clone(),
            ..Default::default()
        };
    if let Ok(b) = &req.body
        && !b.is_empty()
    {
        let opts = body(req)?;
        p.uid = opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        p.resource_version = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(g) = opts.get("gracePeriodSeconds").and_then(Value::as_i64) {
            p.grace_period_seconds = Some(g);
        }
        if let Some(policy) = opts.get("propagationPolicy").and_then(Value::as_str) {
            p.propagation = Some(propagation(policy)?);
        }
        if opts.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            if p.propagation.is_some_and(|x| x != Propagation::Orphan) {
                return Err(ApiError::invalid_options(
                    "propagationPolicy",
                    "orphanDependents and propagationPolicy cannot both be set",
                ));
            }
            p.propagation = Some(Propagation::Orphan);
        }
        if opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty())
        {
            p.dry_run = true;
        }
    }
    Ok(p)
}

fn propagation(policy: &str) -> Result<Propagation, ApiError> {
    match policy {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        other => Err(ApiError::invalid_options(
            "propagationPolicy",
            &format!(
                "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ),
        )),
    }
}

fn view(t: &Target, req: &Request) -> View {
    View::from_accept(req.accept(), req.param("includeObject")).with_printer(&t.printer)
}

fn respond_object(
    t: &Target,
    req: &Request,
    code: StatusCode,
    obj: Value,
    warnings: &[String],
) -> Response {
    let shown = view(t, req).object(t.info, &obj);
    // The server's own components get objects without managedFields, as their watches do.
    match req.in_process {
        true => json_response(code, &minik_registry::Lean(&shown), warnings),
        false => json_response(code, &*shown, warnings),
    }
}

fn respond_list(t: &Target, req: &Request, list: minik_registry::ObjectList) -> Response {
    json_response(StatusCode::OK, &view(t, req).list(t.info, list), &[])
}

async fn delete_collection(
    state: &AppState,
    t: &Target,
    req: &Request,
) -> Result<Response, ApiError> {
    let ns = t.namespace.as_deref();
    let list = state.registry.list(t.info, ns, &list_params(req)?).await?;
    let params = delete_params(req)?;
    let mut deleted = Vec::new();
    for item in &list.items {
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let item_ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
        match state
            .registry
            .delete(t.info, item_ns.or(ns), name, &params)
            .await
        {
            Ok((obj, _)) => deleted.push(obj),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({"kind": t.info.list_kind, "apiVersion": t.info.api_version(),
        "metadata": {"resourceVersion": list.resource_version()}, "items": deleted});
    Ok(json_response(StatusCode::OK, &body, &[]))
}
