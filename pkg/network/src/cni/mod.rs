//! A pod network through standard CNI plugins, as the kubelet gets it from containerd's
//! libcni: the network config list from the config directory, plugins run as executables
//! (ADD, DEL, CHECK with the CNI_* environment and the config on stdin), and every ADD
//! result cached per pod so DEL and CHECK work after a restart and a config change.
//!
//! - config.rs: picking and reading the config file; versions.
//! - exec.rs: running one plugin (process.rs: with a deadline). chain.rs: running a list.
//! - result.rs: addresses from results; results between versions.
//! - cache.rs: the result cache.

mod cache;
mod chain;
mod config;
mod exec;
mod process;
mod result;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cache::{Cache, Entry};
use config::NetworkList;
use exec::Runtime;

use crate::pod::{NetworkError, PodNetwork, PodRef};

/// The interface CNI creates in the pod.
const IF_NAME: &str = "eth0";

/// How long a plugin may run by default: the kubelet's runtime request timeout.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Where CNI's configuration, plugins and cache are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniOptions {
    /// Configuration directory, /etc/cni/net.d: the first file by name ending .conflist,
    /// .conf or .json is used (a .conf holds one plugin; wrapped as a list).
    pub conf_dir: PathBuf,
    /// Plugin directories searched in order (/opt/cni/bin, then Debian's /usr/lib/cni).
    pub bin_dirs: Vec<PathBuf>,
    /// Where ADD results are cached for DEL and CHECK (<data-dir>/agent/cni/results):
    /// survives restarts.
    pub cache_dir: PathBuf,
}

/// The pod network of standard CNI plugins.
#[derive(Debug, Clone)]
pub struct Cni {
    options: CniOptions,
    cache: Cache,
    timeout: Duration,
}

impl Cni {
    pub fn new(options: CniOptions) -> Cni {
        let cache = Cache::new(options.cache_dir.clone());
        Cni {
            options,
            cache,
            timeout: PLUGIN_TIMEOUT,
        }
    }

    /// Kills plugins that run longer than `timeout` (2 minutes by default); the call fails.
    pub fn with_plugin_timeout(mut self, timeout: Duration) -> Cni {
        self.timeout = timeout;
        self
    }

    /// Whether a usable network config is there (the kubelet's NetworkReady: without one,
    /// NotReady, "cni config uninitialized").
    pub fn ready(&self) -> Result<(), NetworkError> {
        config::load(&self.options.conf_dir).map(|_| ())
    }

    /// CHECK: asks the plugins that attached the pod whether its network is still as they
    /// left it. Fails if the pod was never attached; passes without asking for configs older
    /// than CNI 0.4.0 (which have no CHECK).
    pub fn check(&self, pod: &PodRef, netns: &Path) -> Result<(), NetworkError> {
        let entry = self.cache.load(&pod.uid)?.ok_or_else(|| {
            NetworkError::Failed(format!(
                "pod {}/{} has no cached CNI result to check",
                pod.namespace, pod.name
            ))
        })?;
        let list = cached_list(&entry)?;
        chain::check(&list, &self.runtime(pod, Some(netns)), &entry.result)
    }

    fn runtime<'a>(&'a self, pod: &'a PodRef, netns: Option<&'a Path>) -> Runtime<'a> {
        Runtime {
            container_id: &pod.uid,
            netns,
            if_name: IF_NAME,
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                pod.namespace, pod.name, pod.uid, pod.uid
            ),
            bin_dirs: &self.options.bin_dirs,
            timeout: self.timeout,
        }
    }

    /// DEL with the config and result a pod was attached with; the cache entry goes once
    /// every plugin succeeded.
    fn del_cached(&self, entry: &Entry, netns: Option<&Path>) -> Result<(), NetworkError> {
        let pod = entry.pod();
        let list = cached_list(entry)?;
        chain::del(&list, &self.runtime(&pod, netns), Some(&entry.result))?;
        self.cache.remove(&pod.uid)
    }

    /// Undoes a failed ADD (as containerd tears a sandbox's network down), keeping `error`.
    fn undo_add(&self, list: &NetworkList, rt: &Runtime<'_>, error: NetworkError) -> NetworkError {
        if let Err(undo) = chain::del(list, rt, None) {
            tracing::warn!(container = rt.container_id, error = %undo, "cleaning up after a failed CNI ADD");
        }
        error
    }
}

/// The config list a cache entry was made with.
fn cached_list(entry: &Entry) -> Result<NetworkList, NetworkError> {
    NetworkList::from_value(entry.config.clone()).map_err(|problem| {
        NetworkError::Failed(format!(
            "the cached CNI config of pod {}/{} is invalid: {problem}",
            entry.pod_namespace, entry.pod_name
        ))
    })
}

/// The namespace path if the namespace is still there.
fn existing(netns: Option<&Path>) -> Option<&Path> {
    netns.filter(|p| p.exists())
}

impl PodNetwork for Cni {
    fn network_ready(&self) -> Result<(), NetworkError> {
        self.ready()
    }

    fn add(&self, pod: &PodRef, netns: &Path) -> Result<Vec<IpAddr>, NetworkError> {
        if let Some(entry) = self.cache.load(&pod.uid)? {
            if entry.netns == netns {
                let addrs = result::addresses(&entry.result, &entry.if_name);
                if !addrs.is_empty() {
                    return Ok(addrs);
                }
            }
            // Attached in another (older) namespace: detach that first.
            self.del_cached(&entry, existing(Some(&entry.netns)))?;
        }
        let list = config::load(&self.options.conf_dir)?;
        let rt = self.runtime(pod, Some(netns));
        let result = chain::add(&list, &rt).map_err(|e| self.undo_add(&list, &rt, e))?;
        let addrs = result::addresses(&result, IF_NAME);
        if addrs.is_empty() {
            let e = NetworkError::Failed(format!(
                "network {:?} gave pod {}/{} no address",
                list.name, pod.namespace, pod.name
            ));
            return Err(self.undo_add(&list, &rt, e));
        }
        let entry = Entry::new(pod, netns, IF_NAME, list.raw.clone(), result);
        self.cache
            .store(&entry)
            .map_err(|e| self.undo_add(&list, &rt, e))?;
        tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), network = %list.name, ?addrs, "attached pod with CNI");
        Ok(addrs)
    }

    fn del(&self, pod: &PodRef, netns: Option<&Path>) -> Result<(), NetworkError> {
        let netns = existing(netns);
        if let Some(entry) = self.cache.load(&pod.uid)? {
            let netns = netns.or_else(|| existing(Some(&entry.netns)));
            return self.del_cached(&entry, netns);
        }
        // Not cached: ADD may have stopped half-way (a crash before the cache was written);
        // plugins must accept a DEL for what they do not know.
        match config::load(&self.options.conf_dir) {
            Ok(list) => chain::del(&list, &self.runtime(pod, netns), None)?,
            Err(NetworkError::NotReady(_)) => {}
            Err(e) => return Err(e),
        }
        // An unreadable cache file may be left: it goes with the pod.
        self.cache.remove(&pod.uid)
    }

    fn gc(&self, live: &HashSet<String>) -> Result<(), NetworkError> {
        let mut first_error = None;
        for uid in self.cache.uids()? {
            if live.contains(&uid) {
                continue;
            }
            let outcome = match self.cache.load(&uid) {
                Ok(Some(entry)) => self.del_cached(&entry, existing(Some(&entry.netns))),
                // Unreadable: DEL with the current config, as for a pod never cached.
                Ok(None) => self.del(
                    &PodRef {
                        uid: uid.clone(),
                        namespace: String::new(),
                        name: String::new(),
                        ports: Vec::new(),
                    },
                    None,
                ),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                tracing::warn!(pod_uid = %uid, error = %e, "releasing a gone pod's CNI network");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
