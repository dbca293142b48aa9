//! `GET pods/<name>/log`: kube-apiserver's LogREST. The options are checked
//! (PodLogOptions), the container chosen (the only one, the
//! `kubectl.kubernetes.io/default-container` annotation's, or the one asked for), and the
//! request sent on to the kubelet of the pod's node (`/containerLogs/...` on its
//! daemonEndpoints port at its InternalIP, over TLS with the API server's kubelet client
//! certificate, the kubelet's certificate checked against the cluster's server CA). The
//! kubelet's answer is streamed back as it comes (`follow`), and its refusals become
//! Statuses with their code.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use minik_registry::ApiError;
use serde_json::Value;

use crate::AppState;
use crate::proxy::kubelet::{self, encode};

/// The annotation naming the container `kubectl logs` and `exec` default to.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// The container a log request is for, as kube-apiserver picks it.
pub fn container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let (apps, init, ephemeral) = (
        names(pod, "containers"),
        names(pod, "initContainers"),
        names(pod, "ephemeralContainers"),
    );
    if let Some(c) = asked {
        if apps.iter().chain(&init).chain(&ephemeral).any(|n| n == c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if let Some(d) = pod["metadata"]["annotations"][DEFAULT_CONTAINER].as_str()
        && apps.iter().any(|n| n == d)
    {
        return Ok(d.to_string());
    }
    if apps.len() == 1 {
        return Ok(apps[0].clone());
    }
    let mut message = format!(
        "a container name must be specified for pod {name}, choose one of: [{}]",
        apps.join(" ")
    );
    if !init.is_empty() {
        message.push_str(&format!(
            " or one of the init containers: [{}]",
            init.join(" ")
        ));
    }
    if !ephemeral.is_empty() {
        message.push_str(&format!(
            " or one of the ephemeral containers: [{}]",
            ephemeral.join(" ")
        ));
    }
    Err(ApiError::BadRequest(message))
}

fn text_response(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Serve pods/<name>/log of `ns` with the request's query parameters.
pub async fn logs(
    state: &AppState,
    ns: &str,
    name: &str,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let query: HashMap<String, String> = params.iter().cloned().collect();
    let opts = minik_api::pod_log::Options::from_query(&query, chrono::Utc::now())
        .map_err(|e| ApiError::Unprocessable(format!("PodLogOptions {name:?} is invalid: {e}")))?;
    let pods = minik_api::builtin("", "v1", "pods");
    let pod = state.registry.get(pods, Some(ns), name).await?;
    let container = container(&pod, name, opts.container.as_deref())?;
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        // Not scheduled: nothing has run, and there is nothing to show.
        return Ok(text_response(StatusCode::OK, Body::empty()));
    };
    let mut forwarded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "container")
        .cloned()
        .collect();
    forwarded.sort();
    let query = forwarded
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let path = format!(
        "/containerLogs/{}/{}/{}?{query}",
        encode(ns),
        encode(name),
        encode(&container)
    );
    let (mut sender, addr) =
        kubelet::connect::<http_body_util::Empty<bytes::Bytes>>(state, node_name).await?;
    let failed = |e: String| ApiError::Internal(format!("Get \"https://{addr}{path}\": {e}"));
    let req = http::Request::get(&path)
        .header(header::HOST, addr.to_string())
        .body(http_body_util::Empty::new())
        .map_err(|e| failed(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = resp.status();
    if status == StatusCode::OK {
        return Ok(text_response(StatusCode::OK, Body::new(resp.into_body())));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
    Err(match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(body),
        other => ApiError::Denied {
            code: other.as_u16(),
            message: body,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(annotation: Option<&str>, apps: &[&str], init: &[&str]) -> Value {
        let list = |n: &[&str]| n.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        let mut p = json!({"metadata": {"name": "p"},
            "spec": {"containers": list(apps), "initContainers": list(init)}});
        if let Some(a) = annotation {
            p["metadata"]["annotations"] = json!({DEFAULT_CONTAINER: a});
        }
        p
    }

    #[test]
    fn the_container_is_chosen_as_kube_apiserver_does() {
        assert_eq!(container(&pod(None, &["a"], &[]), "p", None).unwrap(), "a");
        assert_eq!(
            container(&pod(Some("b"), &["a", "b"], &[]), "p", None).unwrap(),
            "b"
        );
        assert_eq!(
            container(&pod(None, &["a"], &["i"]), "p", Some("i")).unwrap(),
            "i"
        );
        let many = container(&pod(None, &["a", "b"], &["i"]), "p", None).unwrap_err();
        assert_eq!(
            many.to_string(),
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let wrong = container(&pod(None, &["a"], &[]), "p", Some("x")).unwrap_err();
        assert_eq!(wrong.to_string(), "container x is not valid for pod p");
    }
}
