//! Auto-deploy: manifests in `<data-dir>/server/manifests/` applied at start and on change.
//!
//! As k3s's deploy controller: the embedded manifests are written there at start (disabled
//! ones removed); every manifest file is applied with server-side apply at start and again
//! when its content changes (the directory is polled); objects that leave a file, or whose
//! file is deleted, are deleted. What each file applied is kept in a ConfigMap (state.rs).
//! A bad file is logged (and reported as an Event on that ConfigMap) and retried; it does
//! not stop the others.

mod apply;
mod embedded;
mod files;
mod objects;
mod state;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::ConfigMap;
use minik_controllers::events::{Kind, Recorder};
use tokio_util::sync::CancellationToken;

use apply::{Applier, ApplyError};
use objects::ObjRef;
use state::Applied;

pub use embedded::EMBEDDED;

/// How often the directory is looked at.
const POLL: Duration = Duration::from_secs(2);
/// A file changed more recently than this may still be being written: it waits a poll.
const SETTLE: Duration = Duration::from_secs(1);
/// Within one pass, objects whose kind or namespace is not there yet are tried this many
/// more times, a second apart (a CRD or Namespace earlier in the file being made).
const SOON_ATTEMPTS: usize = 3;
/// The longest wait between attempts at a file that failed.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the deployer applies.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// `<data-dir>/server/manifests`.
    pub dir: PathBuf,
    /// `--disable` names: embedded manifests not written (and their objects removed).
    pub disabled: Vec<String>,
}

/// Apply the manifests until `shutdown`.
pub async fn run(client: kube::Client, options: DeployOptions, shutdown: CancellationToken) {
    if let Err(e) = embedded::write(&options.dir, &options.disabled) {
        tracing::error!(dir = %options.dir.display(), error = %e, "writing the embedded manifests");
    }
    let mut deployer = Deployer {
        recorder: Recorder::new(client.clone(), "minik-deploy"),
        applier: Applier::new(client.clone()),
        client,
        dir: options.dir,
        record: None,
        seen: HashMap::new(),
        retry: HashMap::new(),
        first: true,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = deployer.pass() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// When a failed file is tried again.
struct Retry {
    at: Instant,
    backoff: Duration,
}

struct Deployer {
    client: kube::Client,
    dir: PathBuf,
    applier: Applier,
    recorder: Recorder,
    /// What each file applied, and its ConfigMap (events are about it); None until read.
    record: Option<(Applied, Option<ConfigMap>)>,
    /// File name -> hash of the content last deployed (or found bad).
    seen: HashMap<String, u64>,
    /// Files that failed, and when to try them again.
    retry: HashMap<String, Retry>,
    /// The first pass (at start): files are not waited on to settle.
    first: bool,
}

impl Deployer {
    /// Look at the directory once: deploy new and changed files, clean up deleted ones.
    async fn pass(&mut self) {
        let (mut applied, mut configmap) = match self.record.take() {
            Some(r) => r,
            None => match state::load(&self.client).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "reading what the manifests applied");
                    return;
                }
            },
        };
        let before = applied.clone();
        let mut failures = Vec::new();
        match files::scan(&self.dir) {
            Ok(scan) => {
                for (name, path) in &scan.files {
                    if let Some(failure) = self.file(name, path, &mut applied).await {
                        failures.push(failure);
                    }
                }
                let gone: Vec<String> = applied
                    .keys()
                    .filter(|n| !scan.files.iter().any(|(f, _)| f == *n))
                    .filter(|n| !scan.skipped.contains(*n))
                    .cloned()
                    .collect();
                for name in gone {
                    tracing::info!(manifest = %name, "file removed: deleting its objects");
                    let objs = applied.remove(&name).unwrap_or_default();
                    self.delete(&name, &objects::removed(&objs, &[])).await;
                    self.seen.remove(&name);
                    self.retry.remove(&name);
                }
            }
            // Nothing is deleted when the directory cannot be read.
            Err(e) => tracing::warn!(dir = %self.dir.display(), error = %e, "reading manifests"),
        }
        if applied != before || configmap.is_none() {
            match state::save(&self.client, &applied).await {
                Ok(cm) => configmap = Some(cm),
                Err(e) => tracing::warn!(error = %e, "recording what the manifests applied"),
            }
        }
        if let Some(cm) = &configmap {
            for (name, reason) in &failures {
                let message = format!("{name}: {reason}");
                self.recorder
                    .event(cm, Kind::Warning, "ApplyFailed", &message);
            }
        }
        self.record = Some((applied, configmap));
        self.first = false;
    }

    /// Deploy one file if it is new, changed or due for a retry; (name, reason) if it failed.
    async fn file(
        &mut self,
        name: &str,
        path: &std::path::Path,
        applied: &mut Applied,
    ) -> Option<(String, String)> {
        let content = match std::fs::read(path) {
            Ok(c) => c,
            Err(e) => return Some(self.failed(name, None, format!("reading it: {e}"))),
        };
        let mut h = DefaultHasher::new();
        content.hash(&mut h);
        let hash = h.finish();
        let changed = self.seen.get(name) != Some(&hash);
        let due = self.retry.get(name).is_some_and(|r| r.at <= Instant::now());
        if !changed && !due {
            return None;
        }
        if changed && !self.first && recently_modified(path) {
            return None;
        }
        self.seen.insert(name.to_string(), hash);
        let text = String::from_utf8_lossy(&content);
        let objs = match files::parse(name, &text) {
            Ok(o) => o,
            // What it applied before stays until the file is fixed.
            Err(reason) => return Some(self.failed(name, None, reason)),
        };
        let (done, errors) = self.apply_all(&objs).await;
        let old = applied.get(name).cloned().unwrap_or_default();
        if !errors.is_empty() {
            applied.insert(name.to_string(), objects::union(&old, &done));
            let reason = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Some(self.failed(name, Some(hash), reason));
        }
        self.retry.remove(name);
        tracing::info!(manifest = %name, objects = done.len(), "applied");
        self.delete(name, &objects::removed(&old, &done)).await;
        applied.insert(name.to_string(), done);
        None
    }

    /// Apply `objs` in order, trying those whose kind or namespace is not there yet again
    /// a little later; the objects applied and the errors left.
    async fn apply_all(&mut self, objs: &[serde_json::Value]) -> (Vec<ObjRef>, Vec<ApplyError>) {
        let mut done = Vec::new();
        let mut pending: Vec<&serde_json::Value> = objs.iter().collect();
        let mut errors = Vec::new();
        for attempt in 0..=SOON_ATTEMPTS {
            if attempt > 0 {
                if !errors.iter().any(ApplyError::may_pass_soon) {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            errors.clear();
            let mut left = Vec::new();
            for obj in pending {
                match self.applier.apply(obj).await {
                    Ok(r) => done.push(r),
                    Err(e) => {
                        errors.push(e);
                        left.push(obj);
                    }
                }
            }
            pending = left;
            if pending.is_empty() {
                break;
            }
        }
        (done, errors)
    }

    /// Delete objects a file no longer has (errors are logged; the object is let go).
    async fn delete(&mut self, name: &str, objs: &[ObjRef]) {
        for obj in objs {
            match self.applier.delete(obj).await {
                Ok(()) => tracing::info!(manifest = %name, object = %obj, "deleted"),
                Err(e) => tracing::warn!(manifest = %name, error = %e, "deleting"),
            }
        }
    }

    /// Log a failure of `name` and schedule a retry (only when `hash` is given: a file
    /// that does not parse waits for its next change).
    fn failed(&mut self, name: &str, hash: Option<u64>, reason: String) -> (String, String) {
        tracing::warn!(manifest = %name, %reason, "manifest not applied");
        if hash.is_some() {
            let backoff = self
                .retry
                .get(name)
                .map_or(POLL, |r| (r.backoff * 2).min(MAX_BACKOFF));
            let at = Instant::now() + backoff;
            self.retry.insert(name.to_string(), Retry { at, backoff });
        } else {
            self.retry.remove(name);
        }
        (name.to_string(), reason)
    }
}

/// Whether `path` was modified within `SETTLE` (it may still be being written).
fn recently_modified(path: &std::path::Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < SETTLE)
}
