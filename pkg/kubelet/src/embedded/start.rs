//! Starting one run of a container, as kubelet's startContainer does: make sure its image
//! is there (per imagePullPolicy, with the pod's pull secrets, backing off after failures),
//! make its config (argv, environment, mounts, user, cgroup values; an ephemeral
//! container's target PID namespace), create and start it. A failure says the container's
//! waiting reason and message.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container as Spec, Pod, Secret};
use minik_controllers::events::Kind;
use minik_runtime::{ContainerConfig, ContainerState, Image};

use super::api::Lookups;
use super::env::{self, Inputs};
use super::fieldpath::Addresses;
use super::volumes::Volumes;
use super::{EmbeddedRuntime, expand, labels, links, mounts, pull, resources, security};
use crate::probes::action::Target;

/// Why a container could not start: its Waiting reason and message, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Failure {
    pub reason: String,
    pub message: String,
    pub retry: Duration,
}

/// What a container is to its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    App,
    /// An init container (sidecars too).
    Init,
    /// An ephemeral container: it joins the PID namespace of the container its
    /// targetContainerName names, if any.
    Ephemeral,
}

/// CreateContainerConfigError and friends are retried at the pod worker's pace.
const RETRY: Duration = Duration::from_secs(10);
/// After a failed pull: soon, then ImagePullBackOff until the back-off ends.
const PULL_FAILED: Duration = Duration::from_secs(1);

fn failure(reason: &str, message: impl Into<String>) -> Failure {
    Failure {
        reason: reason.into(),
        message: message.into(),
        retry: RETRY,
    }
}

/// 64 random hex characters.
fn new_id() -> String {
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        // Unique enough without randomness: time and a counter.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return format!("{t:032x}{n:032x}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The image of `spec`, pulled if its policy says so.
async fn ensure_image(
    rt: &EmbeddedRuntime,
    pod: &Pod,
    spec: &Spec,
    lookups: &mut Lookups,
) -> Result<Image, Failure> {
    let requested = spec.image.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let policy = pull::policy(spec);
    let present = rt.runtime.image(&requested);
    let event = |kind, reason: &str, message: &str| rt.recorder.event(pod, kind, reason, message);
    match (policy.as_str(), present) {
        ("Never", Some(image)) | ("IfNotPresent", Some(image)) => {
            event(
                Kind::Normal,
                "Pulled",
                &format!("Container image {requested:?} already present on machine"),
            );
            return Ok(image);
        }
        ("Never", None) => {
            let message =
                format!("Container image {requested:?} is not present with pull policy of Never");
            event(Kind::Warning, "ErrImageNeverPull", &message);
            return Err(failure("ErrImageNeverPull", message));
        }
        _ => {}
    }
    let image = pull::with_default_tag(&requested);
    if let Some((message, left)) = rt.pulls().waiting(&uid, &image, Instant::now()) {
        event(
            Kind::Normal,
            "BackOff",
            &format!("Back-off pulling image {image:?}"),
        );
        event(Kind::Warning, "Failed", "Error: ImagePullBackOff");
        return Err(Failure {
            reason: "ImagePullBackOff".into(),
            message,
            retry: left,
        });
    }
    let mut secrets: Vec<Secret> = Vec::new();
    for r in pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
    {
        match lookups.secret(&r.name).await {
            Ok(Some(s)) => secrets.push(s.clone()),
            Ok(None) | Err(_) => {
                tracing::info!(secret = r.name, "pull secret not found; pulling without it")
            }
        }
    }
    let normalized = minik_runtime::normalize(&requested);
    let credentials = pull::credentials(&secrets, &normalized);
    event(Kind::Normal, "Pulling", &format!("Pulling image {image:?}"));
    let started = Instant::now();
    let mut result = Err(minik_runtime::Error::Failed("no pull attempted".into()));
    let attempts: Vec<Option<&minik_runtime::Auth>> = if credentials.is_empty() {
        vec![None]
    } else {
        credentials.iter().map(Some).collect()
    };
    for auth in attempts {
        result = rt.runtime.pull(&requested, auth).await;
        if result.is_ok() {
            break;
        }
    }
    match result {
        Ok(pulled) => {
            rt.pulls().succeeded(&uid, &image);
            let took = minik_api::quantity::go_duration(started.elapsed());
            event(
                Kind::Normal,
                "Pulled",
                &format!(
                    "Successfully pulled image {image:?} in {took} ({took} including waiting). Image size: {} bytes.",
                    pulled.size
                ),
            );
            Ok(pulled)
        }
        Err(e) => {
            let message = match &e {
                minik_runtime::Error::Pull { message, .. } => {
                    format!("failed to pull and unpack image {normalized:?}: {message}")
                }
                other => other.to_string(),
            };
            rt.pulls().failed(&uid, &image, &message, Instant::now());
            event(
                Kind::Warning,
                "Failed",
                &format!("Failed to pull image {image:?}: {message}"),
            );
            event(Kind::Warning, "Failed", "Error: ErrImagePull");
            // Looked at again soon, to report ImagePullBackOff while the back-off runs.
            Err(Failure {
                retry: PULL_FAILED,
                ..failure("ErrImagePull", message)
            })
        }
    }
}

/// The runtime id of the latest run of `target`, whose PID namespace an ephemeral container
/// joins: as kubelet's getTargetID, it must have been created (the runtime refuses one
/// that is not running, and the start is tried again).
fn target_id(rt: &EmbeddedRuntime, uid: &str, target: &str) -> Result<String, String> {
    rt.containers_of(uid)
        .into_iter()
        .filter(|c| c.config.name == target)
        .max_by_key(|c| c.config.attempt)
        .map(|c| c.config.id)
        .ok_or_else(|| format!("unable to find target container {target}"))
}

/// Run the container's postStart hook; when it fails, stop the container (its preStop
/// hook first), as kubelet does, and the pod worker restarts it per restartPolicy.
async fn post_start(rt: &EmbeddedRuntime, pod: &Pod, spec: &Spec, uid: &str, id: &str) {
    let endpoint = super::hooks::endpoint(rt, uid);
    let target = Target {
        runtime: rt.runtime.as_ref(),
        container_id: id,
        spec,
        endpoint: &endpoint,
    };
    let Err(message) = super::hooks::post_start(&target, pod, &rt.recorder).await else {
        return;
    };
    tracing::info!(pod = ?pod.metadata.name, container = spec.name, message, "postStart hook failed");
    let grace = crate::runtime::termination_grace(pod);
    let left = super::hooks::pre_stop(&target, pod, &rt.recorder, grace).await;
    if let Err(e) = rt.runtime.stop_container(id, left).await {
        tracing::warn!(container = id, error = %e, "stopping a container whose postStart hook failed");
    }
}

/// Start run `attempt` of container `spec` of the pod.
pub(super) async fn start(
    rt: &EmbeddedRuntime,
    pod: &Pod,
    spec: &Spec,
    role: Role,
    attempt: u32,
    volumes: &Volumes,
    pod_ip: Option<String>,
) -> Result<(), Failure> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut lookups = Lookups::new(rt.client.clone(), &namespace);
    let image = ensure_image(rt, pod, spec, &mut lookups).await?;
    let pod_spec = pod.spec.clone().unwrap_or_default();
    let host_network = pod_spec.host_network.unwrap_or(false);
    let facts = match rt.node.facts().await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "reading the node; the downward API may lack its addresses");
            rt.node.known().unwrap_or_default()
        }
    };
    let addresses = Addresses {
        host_ips: facts.addresses.clone(),
        pod_ips: if host_network {
            facts.addresses.clone()
        } else {
            pod_ip.into_iter().collect()
        },
    };
    let links = pod_spec.enable_service_links.unwrap_or(true);
    let services = rt.services.services(&namespace, links).await.map_err(|e| {
        failure(
            "CreateContainerConfigError",
            format!("failed to list services when setting up env vars: {e}"),
        )
    })?;
    let services = links::service_env(&services);
    let input = Inputs {
        pod,
        container: spec,
        addresses: &addresses,
        allocatable: &facts.allocatable,
        services: &services,
    };
    let config_error = |m: String| {
        rt.recorder
            .event(pod, Kind::Warning, "Failed", &format!("Error: {m}"));
        failure("CreateContainerConfigError", m)
    };
    let target_pid_ns = match crate::ephemeral::target(pod, &spec.name) {
        Some(target) if role == Role::Ephemeral => {
            Some(target_id(rt, &uid, target).map_err(config_error)?)
        }
        _ => None,
    };
    let env = env::build(&mut lookups, &input)
        .await
        .map_err(config_error)?;
    let create_error = |e: String| {
        rt.recorder
            .event(pod, Kind::Warning, "Failed", &format!("Error: {e}"));
        failure("CreateContainerError", e)
    };
    let image_config = rt
        .runtime
        .image_config(&image.id)
        .await
        .map_err(|e| create_error(e.to_string()))?;
    let layers = rt
        .runtime
        .layers(&image.id)
        .map_err(|e| create_error(e.to_string()))?;
    let security = security::resolve(pod, spec, image_config.user.as_deref(), &layers)
        .map_err(config_error)?;
    let lookup = |n: &str| env.get(n).map(str::to_string);
    let command = spec.command.clone().unwrap_or_default();
    let args = spec.args.clone().unwrap_or_default();
    let argv = expand::argv(
        &image_config.entrypoint,
        &image_config.cmd,
        &command,
        &args,
        &lookup,
    );
    if argv.is_empty() {
        return Err(create_error("no command specified".into()));
    }
    let id = new_id();
    let mounts = mounts::build(&rt.layout, &uid, spec, &id, volumes, &env).map_err(config_error)?;
    let (shown, reference) = pull::status_names(&image, spec.image.as_deref().unwrap_or_default());
    let message_path = spec
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let container_labels: BTreeMap<String, String> = [
        (labels::POD_NAME, name.clone()),
        (labels::POD_NAMESPACE, namespace.clone()),
        (labels::POD_UID, uid.clone()),
        (labels::CONTAINER_NAME, spec.name.clone()),
        (labels::INIT, (role == Role::Init).to_string()),
        (labels::EPHEMERAL, (role == Role::Ephemeral).to_string()),
        (labels::IMAGE, shown),
        (labels::IMAGE_REF, reference),
        (labels::MESSAGE_PATH, message_path),
        (
            labels::MESSAGE_POLICY,
            spec.termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let working_dir = spec
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or(image_config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let config = ContainerConfig {
        id: id.clone(),
        sandbox_id: uid.clone(),
        name: spec.name.clone(),
        image_id: image.id.clone(),
        image_ref: spec.image.clone().unwrap_or_default(),
        layers,
        args: argv,
        env: expand::merge_env(&[&image_config.env, &env.entries()]),
        working_dir,
        mounts,
        resources: resources::cgroup(spec),
        security,
        tty: spec.tty.unwrap_or(false),
        stdin: spec.stdin.unwrap_or(false),
        log_path: rt
            .layout
            .log_file((&namespace, &name, &uid), &spec.name, attempt),
        attempt,
        labels: container_labels,
        target_pid_ns,
    };
    if let Err(e) = rt.runtime.lease(&id, &image.id) {
        tracing::warn!(container = id, error = %e, "leasing the container's image");
    }
    let started = match rt.runtime.start_container(config).await {
        Ok(c) => c,
        Err(e) => {
            let _ = rt.runtime.release(&id);
            return Err(create_error(e.to_string()));
        }
    };
    rt.index_add(&uid, &id);
    rt.recorder.event(
        pod,
        Kind::Normal,
        "Created",
        &format!("Created container: {}", spec.name),
    );
    match &started.state {
        ContainerState::Exited {
            reason, message, ..
        } if reason == "StartError" => {
            let why = message.clone().unwrap_or_else(|| reason.clone());
            rt.recorder
                .event(pod, Kind::Warning, "Failed", &format!("Error: {why}"));
        }
        _ => {
            rt.recorder.event(
                pod,
                Kind::Normal,
                "Started",
                &format!("Started container {}", spec.name),
            );
            post_start(rt, pod, spec, &uid, &id).await;
        }
    }
    tracing::info!(
        pod = name,
        namespace,
        container = spec.name,
        id,
        attempt,
        "container started"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_characters() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
