//! Tests of the CNI pod network: units (versions, results, config files), fake plugins
//! (shell scripts that record what they were given), and the real Debian plugins (bridge +
//! host-local) in network namespaces the tests make.

mod bridge;
mod fake;
mod units;

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Cni, CniOptions};
use crate::pod::PodRef;

/// A temporary CNI setup: config dir, a plugin dir for fake plugins, a cache dir.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl Setup {
    pub fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let conf_dir = tmp.path().join("net.d");
        let bin_dir = tmp.path().join("bin");
        let cache_dir = tmp.path().join("results");
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::create_dir_all(&bin_dir).unwrap();
        Setup {
            tmp,
            conf_dir,
            bin_dir,
            cache_dir,
        }
    }

    /// A Cni looking for plugins in `bin_dirs`.
    pub fn cni_with(&self, bin_dirs: Vec<PathBuf>) -> Cni {
        Cni::new(CniOptions {
            conf_dir: self.conf_dir.clone(),
            bin_dirs,
            cache_dir: self.cache_dir.clone(),
        })
    }

    /// Writes a config file into the config dir.
    pub fn write_conf(&self, file: &str, conf: &Value) {
        std::fs::write(self.conf_dir.join(file), serde_json::to_vec(conf).unwrap()).unwrap();
    }

    /// The cache file of a pod.
    pub fn cache_file(&self, uid: &str) -> PathBuf {
        self.cache_dir.join(format!("{uid}.json"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

pub fn pod(uid: &str) -> PodRef {
    PodRef {
        uid: uid.into(),
        namespace: "default".into(),
        name: format!("pod-{uid}"),
        ports: Vec::new(),
    }
}

/// A random number, different in every test process.
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Writes an executable script.
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
