//! The result cache: one JSON file per attached pod, named by its uid, holding the pod,
//! its namespace path, the network config that attached it and the ADD result. DEL and
//! CHECK use it (so they work after a restart and after the config changed); gc lists it.
//! Files are written to a temporary name and renamed, so a crash leaves the old one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pod::{NetworkError, PodRef};

/// What a cache file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub kind: String,
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub netns: PathBuf,
    pub if_name: String,
    /// The network config list that attached the pod.
    pub config: Value,
    /// The final ADD result.
    pub result: Value,
}

const KIND: &str = "minikCniResultV1";

impl Entry {
    pub fn new(pod: &PodRef, netns: &Path, if_name: &str, config: Value, result: Value) -> Entry {
        Entry {
            kind: KIND.into(),
            pod_uid: pod.uid.clone(),
            pod_namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            netns: netns.to_path_buf(),
            if_name: if_name.into(),
            config,
            result,
        }
    }

    pub fn pod(&self) -> PodRef {
        PodRef {
            uid: self.pod_uid.clone(),
            namespace: self.pod_namespace.clone(),
            name: self.pod_name.clone(),
            ports: Vec::new(),
        }
    }
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    fn path(&self, uid: &str) -> Result<PathBuf, NetworkError> {
        let ok = !uid.is_empty()
            && !uid.starts_with('.')
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(NetworkError::Failed(format!("invalid pod uid {uid:?}")));
        }
        Ok(self.dir.join(format!("{uid}.json")))
    }

    /// The pod's entry; None if there is none (or it is unreadable, which is logged).
    pub fn load(&self, uid: &str) -> Result<Option<Entry>, NetworkError> {
        let path = self.path(uid)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NetworkError::io(format!("reading {}", path.display()))(e)),
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry) if entry.kind == KIND => Ok(Some(entry)),
            Ok(entry) => {
                tracing::warn!(file = %path.display(), kind = %entry.kind, "ignoring CNI cache file of unknown kind");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable CNI cache file");
                Ok(None)
            }
        }
    }

    /// Writes the entry (atomically).
    pub fn store(&self, entry: &Entry) -> Result<(), NetworkError> {
        let path = self.path(&entry.pod_uid)?;
        fs::create_dir_all(&self.dir)
            .map_err(NetworkError::io(format!("creating {}", self.dir.display())))?;
        let bytes = serde_json::to_vec_pretty(entry)
            .map_err(|e| NetworkError::Failed(format!("encoding the CNI cache: {e}")))?;
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(NetworkError::io(format!("writing {}", path.display())))
    }

    /// Removes the pod's entry; no entry is fine.
    pub fn remove(&self, uid: &str) -> Result<(), NetworkError> {
        let path = self.path(uid)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(NetworkError::io(format!("removing {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// The uids of every cached pod.
    pub fn uids(&self) -> Result<Vec<String>, NetworkError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(NetworkError::io(format!("reading {}", self.dir.display()))(
                    e,
                ));
            }
        };
        let mut uids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect();
        uids.sort();
        Ok(uids)
    }
}
