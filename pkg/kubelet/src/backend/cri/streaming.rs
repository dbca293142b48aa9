//! Streaming through a CRI runtime. Port-forward is done as containerd's PortForward does
//! it, without the runtime's streaming server: a connection to localhost:<port> made in the
//! sandbox's network namespace, whose path the sandbox's verbose status gave (info.rs;
//! none with the node's network). Exec and attach would go through the runtime's own
//! streaming server (the URL its Exec and Attach calls return): not done yet, so they are
//! refused with an error that says so.

use minik_runtime::{Error, Result};
use minik_streaming::Duplex;

use super::super::duplex;
use super::Cri;

/// The error for a streaming call the CRI backend does not do.
pub(super) fn unsupported(what: &str, id: &str) -> Error {
    Error::Failed(format!(
        "{what} into container {id}: streaming through an external CRI runtime \
         (--container-runtime-endpoint) is not supported yet"
    ))
}

impl Cri {
    /// A connection to localhost:`port` in pod `uid`'s sandbox.
    pub(super) async fn forward(&self, uid: &str, port: u16) -> Result<Box<dyn Duplex>> {
        let (cri_id, sandbox) = self
            .lock()
            .sandbox(uid)
            .map(|(cri_id, e)| (cri_id.clone(), e.sandbox.clone()))
            .ok_or_else(|| Error::SandboxNotFound(uid.to_string()))?;
        if sandbox.netns.is_none() && !sandbox.config.host_network {
            return Err(Error::Failed(format!(
                "sandbox {uid} ({cri_id}): the runtime did not say where its network namespace is"
            )));
        }
        duplex(minik_runtime::dial(sandbox.netns, &cri_id, port).await?)
    }
}
