//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log as kubelet serves
//! it (what `kubectl logs` reaches through the API server's pods/log), with the
//! PodLogOptions query parameters (logs/). The run served is the container's latest
//! (`previous`: the one before), by the attempt numbers of its files under
//! /var/log/pods/<namespace>_<pod>_<uid>/<container>/<attempt>.log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use super::{Context, text};
use crate::local::static_pods::mirror::runtime_uid;
use crate::logs::{self, Options};
use crate::runtime::{ContainerRuntime, State as ContainerState};

/// Whether the pod's spec has a container (init and ephemeral ones too) of that name.
pub fn has_container(pod: &Pod, name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.containers.iter().any(|c| c.name == name)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
}

/// Why the container is waiting, as the pod's status says.
fn waiting_reason(pod: &Pod, name: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten())
        .find(|c| c.name == name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

/// The attempts whose log files are in `dir`, oldest first.
pub fn attempts(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let n = name.strip_suffix(".log")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort();
    out
}

pub async fn container_logs<R: ContainerRuntime>(
    State(ctx): State<Arc<Context<R>>>,
    UrlPath((namespace, name, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let opts = match Options::from_query(&query, chrono::Utc::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let Some(pod) = ctx.pods.get(&ObjectRef::new(&name).within(&namespace)) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {name:?} does not exist\n"),
        );
    };
    if !has_container(&pod, &container) {
        return text(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {name:?}\n"),
        );
    }
    let uid = runtime_uid(&pod);
    let dir = ctx
        .log_dir
        .join(format!("{namespace}_{name}_{uid}"))
        .join(&container);
    let runs = attempts(&dir);
    let chosen = if opts.previous {
        runs.iter().rev().nth(1)
    } else {
        runs.last()
    };
    let Some((_, path)) = chosen.cloned() else {
        let message = if opts.previous {
            format!("previous terminated container {container:?} in pod {name:?} not found")
        } else {
            let reason =
                waiting_reason(&pod, &container).unwrap_or_else(|| "ContainerCreating".into());
            format!("container {container:?} in pod {name:?} is waiting to start: {reason}")
        };
        return text(StatusCode::BAD_REQUEST, message);
    };
    let (runtime, previous) = (ctx.runtime.clone(), opts.previous);
    let running = move || {
        !previous
            && runtime.pod_state(&uid).is_some_and(|p| {
                p.init_containers.iter().chain(&p.containers).any(|c| {
                    c.name == container && matches!(c.state, ContainerState::Running { .. })
                })
            })
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(logs::stream(path, opts, running, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_the_numbered_log_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "0.log",
            "10.log",
            "2.log",
            "2.log.20240101-000000.gz",
            "x.log",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let numbers: Vec<u32> = attempts(dir.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [0, 2, 10]);
        assert!(attempts(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn containers_of_every_kind_count() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app"}], "initContainers": [{"name": "init"}],
                "ephemeralContainers": [{"name": "debug"}]},
        }))
        .unwrap();
        for name in ["app", "init", "debug"] {
            assert!(has_container(&pod, name), "{name}");
        }
        assert!(!has_container(&pod, "other"));
    }
}
