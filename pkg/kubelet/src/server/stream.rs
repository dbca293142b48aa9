//! `/exec/{namespace}/{pod}/{container}`, `/attach/...` and `/portForward/{namespace}/{pod}`:
//! what the API server's pods/exec, pods/attach and pods/portforward reach. The pod is found
//! among the node's pods, and the wire protocols (WebSocket channels or SPDY) are spoken by
//! minik-streaming, the container side given by the runtime; a CRI runtime's own streaming
//! server gets exec and attach connections sent on to it.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Request, State};
use axum::response::Response;
use http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use minik_streaming::{BoxFuture, CommandOptions, Duplex, Streams};

use super::logs::has_container;
use super::{Context, text};
use crate::local::static_pods::mirror::runtime_uid;
use crate::runtime::ContainerRuntime;

/// The node's pod `namespace/name`.
fn find<R: ContainerRuntime>(ctx: &Context<R>, namespace: &str, name: &str) -> Option<Arc<Pod>> {
    ctx.pods.get(&ObjectRef::new(name).within(namespace))
}

/// The kubelet's answer for a pod it does not have.
fn no_pod(name: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("pod {name:?} does not exist\n"),
    )
}

/// exec or attach: which one.
#[derive(Clone, Copy)]
enum Kind {
    Exec,
    Attach,
}

async fn command<R: ContainerRuntime>(
    ctx: Arc<Context<R>>,
    (namespace, name, container): (String, String, String),
    req: Request,
    kind: Kind,
) -> Response {
    let opts = match CommandOptions::from_query(req.uri().query().unwrap_or("")) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let Some(pod) = find(&ctx, &namespace, &name) else {
        return no_pod(&name);
    };
    if !has_container(&pod, &container) {
        return text(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {name:?}\n"),
        );
    }
    let uid = runtime_uid(&pod);
    let attach = matches!(kind, Kind::Attach);
    match ctx
        .runtime
        .stream_url(&uid, &container, &opts, attach)
        .await
    {
        Ok(Some(url)) => return send_on(req, &url).await,
        Ok(None) => {}
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
    let runtime = ctx.runtime.clone();
    let start = move |opts: CommandOptions| -> BoxFuture<'static, Result<Streams, String>> {
        Box::pin(async move {
            // The kubelet's words around the runtime's reason.
            match kind {
                Kind::Exec => runtime
                    .exec(&uid, &container, opts)
                    .await
                    .map_err(|e| format!("error executing command in container: {e}")),
                Kind::Attach => runtime
                    .attach(&uid, &container, opts)
                    .await
                    .map_err(|e| format!("error attaching to container: {e}")),
            }
        })
    };
    minik_streaming::serve_command(req, opts, start).await
}

/// Send the client's connection on to a runtime's streaming server at `url`
/// (http://host:port/path).
async fn send_on(req: Request, url: &str) -> Response {
    let failed = |e: String| text(StatusCode::INTERNAL_SERVER_ERROR, e);
    let Ok(uri) = url.parse::<http::Uri>() else {
        return failed(format!("the runtime's streaming URL {url:?} is not a URL"));
    };
    let Some(addr) = uri
        .authority()
        .and_then(|a| a.as_str().parse::<std::net::SocketAddr>().ok())
    else {
        return failed(format!(
            "the runtime's streaming URL {url:?} has no address"
        ));
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let sender = match minik_streaming::proxy::connect(addr).await {
        Ok(s) => s,
        Err(e) => return failed(format!("the runtime's streaming server: {e}")),
    };
    match minik_streaming::proxy::forward(sender, req, &path, &addr.to_string()).await {
        Ok(r) => r,
        Err(e) => failed(e.to_string()),
    }
}

pub async fn exec<R: ContainerRuntime>(
    State(ctx): State<Arc<Context<R>>>,
    UrlPath(path): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    command(ctx, path, req, Kind::Exec).await
}

pub async fn attach<R: ContainerRuntime>(
    State(ctx): State<Arc<Context<R>>>,
    UrlPath(path): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    command(ctx, path, req, Kind::Attach).await
}

pub async fn port_forward<R: ContainerRuntime>(
    State(ctx): State<Arc<Context<R>>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    req: Request,
) -> Response {
    let Some(pod) = find(&ctx, &namespace, &name) else {
        return no_pod(&name);
    };
    let uid = runtime_uid(&pod);
    let runtime = ctx.runtime.clone();
    let dial = move |port: u16| -> BoxFuture<'static, std::io::Result<Box<dyn Duplex>>> {
        let (runtime, uid, name) = (runtime.clone(), uid.clone(), name.clone());
        Box::pin(async move {
            runtime.port_forward(&uid, port).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("error forwarding port {port} to pod {name}, uid {uid}: {e}"),
                )
            })
        })
    };
    minik_streaming::serve_port_forward(req, dial).await
}
