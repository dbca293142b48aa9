//! Streaming through a CRI runtime. Port-forward is done as containerd's PortForward does
//! it, without the runtime's streaming server: a connection to localhost:<port> made in the
//! sandbox's network namespace, whose path the sandbox's verbose status gave (info.rs;
//! none with the node's network). Exec and attach go through the runtime's own streaming
//! server: its Exec and Attach calls give the URL the kubelet sends the client's upgraded
//! connection on, as kubelet does with a CRI runtime.

use minik_cri::proto::{AttachRequest, ExecRequest};
use minik_runtime::{Error, Result};
use minik_streaming::{CommandOptions, Duplex};

use super::super::duplex;
use super::Cri;

impl Cri {
    /// The streaming server's URL for an exec (`opts.command`) or, with `attach`, an
    /// attachment to container `id`.
    pub(super) async fn stream_url(
        &self,
        id: &str,
        opts: &CommandOptions,
        attach: bool,
    ) -> Result<String> {
        let container_id = self.cri_id(id)?;
        let stderr = opts.stderr && !opts.tty;
        let url = if attach {
            let req = AttachRequest {
                container_id,
                stdin: opts.stdin,
                tty: opts.tty,
                stdout: opts.stdout,
                stderr,
            };
            self.client.attach(req).await
        } else {
            let req = ExecRequest {
                container_id,
                cmd: opts.command.clone(),
                tty: opts.tty,
                stdin: opts.stdin,
                stdout: opts.stdout,
                stderr,
            };
            self.client.exec(req).await
        };
        let what = if attach { "attach to" } else { "exec in" };
        url.map_err(|e| super::cri_error(format!("{what} container {id}"), e))
    }

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
