//! A pod's state read back from the runtime (files only, no processes): each container's
//! (init, app and ephemeral) latest run and the one before it, restart counts, waiting
//! reasons of containers that could not be created, and termination messages
//! (terminationMessagePath, or the log's tail with FallbackToLogsOnError), as the kubelet
//! reads them after a container exits.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use k8s_openapi::api::core::v1::Container as Spec;
use minik_runtime::ContainerState;

use super::{EmbeddedRuntime, Shared, labels, timestamp};
use crate::runtime::{Container, PodState, State};

/// At most this much of a termination message file is read (its end).
const MAX_MESSAGE: u64 = 4096;
/// FallbackToLogsOnError: the last lines of the log, and at most this many bytes of them.
const LOG_LINES: usize = 80;
const LOG_BYTES: usize = 2048;

/// The last `max` bytes of a file.
fn tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// The contents of the last lines of a CRI log ("<time> <stream> <P|F> <content>"),
/// partial lines joined, cut to the last `LOG_BYTES`.
pub fn log_tail(path: &Path) -> String {
    let Ok(raw) = tail(path, 256 * 1024) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&raw);
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    for line in text.lines() {
        let mut fields = line.splitn(4, ' ');
        let (Some(_time), Some(_stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        partial.push_str(fields.next().unwrap_or_default());
        if tag != "P" {
            partial.push('\n');
            lines.push(std::mem::take(&mut partial));
        }
    }
    let start = lines.len().saturating_sub(LOG_LINES);
    let joined: String = lines[start..].concat();
    let cut = joined.len().saturating_sub(LOG_BYTES);
    let mut at = cut;
    while !joined.is_char_boundary(at) {
        at += 1;
    }
    joined[at..].to_string()
}

/// The message of an exited run: the runtime's, then what the container wrote to its
/// termination message file (or its log's tail, per policy).
fn message(
    rt: &EmbeddedRuntime,
    uid: &str,
    c: &minik_runtime::Container,
    exit_code: i32,
    runtime: Option<&str>,
) -> Option<String> {
    let policy = c
        .config
        .labels
        .get(labels::MESSAGE_POLICY)
        .map(String::as_str);
    let has_file = c
        .config
        .labels
        .get(labels::MESSAGE_PATH)
        .is_some_and(|p| !p.is_empty());
    let mut written = if has_file {
        let file = rt.layout.termination_log(uid, &c.config.name, &c.config.id);
        match tail(&file, MAX_MESSAGE) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => format!("Error on reading termination log {}: {e}", file.display()),
        }
    } else {
        String::new()
    };
    if written.is_empty() && exit_code != 0 && policy == Some("FallbackToLogsOnError") {
        written = log_tail(&c.config.log_path);
    }
    let mut out = runtime.unwrap_or_default().to_string();
    if !written.is_empty() {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&written);
    }
    (!out.is_empty()).then_some(out)
}

/// A run's state as the kubelet reports it.
fn state_of(
    rt: &EmbeddedRuntime,
    uid: &str,
    c: &minik_runtime::Container,
    shared: &mut Shared,
) -> State {
    match &c.state {
        ContainerState::Created => State::waiting("ContainerCreating"),
        ContainerState::Running { started, .. } => State::Running {
            started: timestamp(*started),
        },
        ContainerState::Exited {
            exit_code,
            reason,
            message: runtime,
            started,
            finished,
        } => {
            let message = shared
                .messages
                .entry(c.config.id.clone())
                .or_insert_with(|| message(rt, uid, c, *exit_code, runtime.as_deref()))
                .clone();
            State::Terminated {
                exit_code: *exit_code,
                reason: reason.clone(),
                message,
                started: timestamp(started.unwrap_or(*finished)),
                finished: timestamp(*finished),
            }
        }
    }
}

/// One container of the pod: its latest run, the one before, or what keeps it waiting.
fn container(
    rt: &EmbeddedRuntime,
    uid: &str,
    spec: &Spec,
    runs: &[&minik_runtime::Container],
    default_reason: &str,
    shared: &mut Shared,
) -> Container {
    let latest = runs.last().copied();
    let mut state = latest.map_or_else(
        || State::waiting(default_reason),
        |c| state_of(rt, uid, c, shared),
    );
    let previous = runs.len().checked_sub(2).map(|i| runs[i]);
    let mut last_id = previous
        .map(|c| rt.runtime.container_uri(&c.config.id))
        .unwrap_or_default();
    let mut last = previous.map(|c| state_of(rt, uid, c, shared));
    if let Some(w) = shared.waiting.get(&spec.name) {
        if matches!(state, State::Terminated { .. }) {
            last = Some(state);
            last_id = latest
                .map(|c| rt.runtime.container_uri(&c.config.id))
                .unwrap_or_default();
        }
        state = State::Waiting {
            reason: w.reason.clone(),
            message: w.message.clone(),
        };
    }
    let label = |key: &str| latest.and_then(|c| c.config.labels.get(key).cloned());
    Container {
        name: spec.name.clone(),
        image: label(labels::IMAGE).unwrap_or_else(|| spec.image.clone().unwrap_or_default()),
        image_id: label(labels::IMAGE_REF).unwrap_or_default(),
        id: latest
            .map(|c| rt.runtime.container_uri(&c.config.id))
            .unwrap_or_default(),
        state,
        last,
        last_id,
        restart_count: latest.map_or(0, |c| i32::try_from(c.config.attempt).unwrap_or(i32::MAX)),
    }
}

/// The pod's state; None when the runtime has neither its sandbox nor a record of it.
pub(super) fn pod_state(rt: &EmbeddedRuntime, uid: &str) -> Option<PodState> {
    let sandbox = rt.runtime.sandbox(uid);
    let entry = rt.entry(uid);
    if sandbox.is_none() && entry.is_none() {
        return None;
    }
    let runs = rt.containers_of(uid);
    let mut by_name: BTreeMap<&str, Vec<&minik_runtime::Container>> = BTreeMap::new();
    for c in &runs {
        by_name.entry(c.config.name.as_str()).or_default().push(c);
    }
    for list in by_name.values_mut() {
        list.sort_by_key(|c| (c.config.attempt, c.created));
    }
    let host_network = sandbox.as_ref().is_some_and(|s| s.config.host_network);
    let node_ip = || rt.node.known().and_then(|f| f.addresses.first().cloned());
    let Some(entry) = entry else {
        // Found after a restart, before its first sync: what the runtime has.
        let is = |c: &minik_runtime::Container, label: &str| {
            c.config.labels.get(label).is_some_and(|v| v == "true")
        };
        let (ephemeral, others): (Vec<&minik_runtime::Container>, Vec<_>) =
            runs.iter().partition(|c| is(c, labels::EPHEMERAL));
        let (init, apps): (Vec<_>, Vec<_>) = others.into_iter().partition(|c| is(c, labels::INIT));
        let mut scratch = Shared {
            pod: Default::default(),
            ip: None,
            waiting: Default::default(),
            messages: Default::default(),
            stopping: Default::default(),
        };
        let mut list = |cs: Vec<&minik_runtime::Container>| {
            let mut names: Vec<&str> = cs.iter().map(|c| c.config.name.as_str()).collect();
            names.dedup();
            names
                .into_iter()
                .map(|n| {
                    let spec = Spec {
                        name: n.into(),
                        ..Default::default()
                    };
                    container(
                        rt,
                        uid,
                        &spec,
                        by_name.get(n).map_or(&[][..], |v| v),
                        "ContainerCreating",
                        &mut scratch,
                    )
                })
                .collect::<Vec<_>>()
        };
        let init_containers = list(init);
        let containers = list(apps);
        let ephemeral_containers = list(ephemeral);
        return Some(PodState {
            probes: Default::default(),
            ip: if host_network { node_ip() } else { None },
            sandbox_ready: sandbox.is_some(),
            init_containers,
            containers,
            ephemeral_containers,
        });
    };
    let mut shared = entry.shared();
    let spec = shared.pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let default_reason = if init_specs.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let make = |s: &Spec, shared: &mut Shared| {
        container(
            rt,
            uid,
            s,
            by_name.get(s.name.as_str()).map_or(&[][..], |v| v),
            default_reason,
            shared,
        )
    };
    let init_containers = init_specs.iter().map(|s| make(s, &mut shared)).collect();
    let containers = spec
        .containers
        .iter()
        .map(|s| make(s, &mut shared))
        .collect();
    let ephemeral_containers = crate::ephemeral::specs(&shared.pod)
        .iter()
        .map(|s| make(s, &mut shared))
        .collect();
    let ip = if host_network || spec.host_network.unwrap_or(false) {
        node_ip()
    } else {
        shared.ip.clone()
    };
    Some(PodState {
        probes: super::probing::results(rt, &runs),
        ip,
        sandbox_ready: sandbox.is_some(),
        init_containers,
        containers,
        ephemeral_containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_joins_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!(
                "2024-01-01T00:00:00.000000000Z stdout F line {i}\n"
            ));
        }
        text.push_str("2024-01-01T00:00:00.000000000Z stderr P par\n");
        text.push_str("2024-01-01T00:00:00.000000000Z stderr F tial\n");
        fs::write(&path, &text).unwrap();
        let t = log_tail(&path);
        assert!(t.ends_with("line 99\npartial\n"), "{t}");
        assert!(t.starts_with("line 21\n"), "{t}");
        fs::write(
            &path,
            "2024-01-01T00:00:00Z stdout F ".to_string() + &"x".repeat(5000) + "\n",
        )
        .unwrap();
        assert_eq!(log_tail(&path).len(), 2048);
    }
}
