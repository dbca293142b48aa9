//! A pod's volumes, set up as the kubelet's volume plugins do before its containers start,
//! and refreshed while it runs: emptyDir (a tmpfs for medium Memory), hostPath (with its
//! type check), configMap, secret, downwardAPI and projected (written atomically; secret
//! and projected on a tmpfs), persistentVolumeClaim and ephemeral (the bound volume's
//! hostPath or local path); fsGroup ownership where the kubelet applies it.

pub mod fs;
pub mod projection;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Volume as Spec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::api::{self, Lookups};
use super::atomic::{self, Payload};
use super::fieldpath::Addresses;
use super::layout::{Layout, Plugin, safe_component};
use projection::{Context, DEFAULT_MODE, Tokens};

/// A volume ready to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub path: PathBuf,
    /// Always read-only (configMap, secret, downwardAPI, projected, readOnly claims).
    pub read_only: bool,
}

/// Volume name -> where it is.
pub type Volumes = BTreeMap<String, Ready>;

/// A volume that could not be set up, with the kubelet's FailedMount wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct MountError {
    pub volume: String,
    pub message: String,
}

/// What setting up a pod's volumes needs.
pub struct SetUp<'a> {
    pub layout: &'a Layout,
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub addresses: &'a Addresses,
    pub allocatable: &'a BTreeMap<String, Quantity>,
    pub tokens: &'a mut Tokens,
}

/// The user every container runs as, when they all name the same one (kubelet's FsUserFrom).
fn fs_user(pod: &Pod) -> Option<u32> {
    let spec = pod.spec.as_ref()?;
    let pod_user = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    let mut users = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.run_as_user)
                .or(pod_user)
        });
    let first = users.next()??;
    users
        .all(|u| u == Some(first))
        .then(|| u32::try_from(first).ok())?
}

/// (fsGroup, whether fsGroupChangePolicy is OnRootMismatch).
fn fs_group(pod: &Pod) -> (Option<u32>, bool) {
    let sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let gid = sc
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let on_mismatch =
        sc.and_then(|s| s.fs_group_change_policy.as_deref()) == Some("OnRootMismatch");
    (gid, on_mismatch)
}

fn io_err(e: std::io::Error) -> String {
    e.to_string()
}

impl SetUp<'_> {
    fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }

    /// Set up (or refresh) every volume of the pod.
    pub async fn run(&mut self, lookups: &mut Lookups) -> Result<Volumes, MountError> {
        let mut ready = Volumes::new();
        let specs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for spec in &specs {
            let r = self
                .one(lookups, spec)
                .await
                .map_err(|message| MountError {
                    volume: spec.name.clone(),
                    message,
                })?;
            ready.insert(spec.name.clone(), r);
        }
        Ok(ready)
    }

    /// Write `payload` atomically into the volume dir, with fsGroup ownership.
    fn publish(&self, dir: &Path, payload: &Payload) -> Result<(), String> {
        let (gid, _) = fs_group(self.pod);
        let set_perms = |_: &Path| match gid {
            Some(g) => fs::set_ownership(dir, g, true, false),
            None => Ok(()),
        };
        let changed = atomic::write(dir, payload, &set_perms).map_err(io_err)?;
        if changed {
            tracing::debug!(dir = %dir.display(), files = payload.len(), "volume contents written");
        }
        Ok(())
    }

    fn plugin_dir(&self, plugin: Plugin, name: &str, memory: bool) -> Result<PathBuf, String> {
        if !safe_component(name) {
            return Err(format!("invalid volume name {name:?}"));
        }
        let dir = self.layout.volume(self.uid(), plugin, name);
        if memory {
            fs::mount_tmpfs(&dir, None)
                .map_err(|e| format!("mounting a tmpfs at {}: {e}", dir.display()))?;
        } else {
            std::fs::create_dir_all(&dir).map_err(io_err)?;
        }
        Ok(dir)
    }

    async fn one(&mut self, lookups: &mut Lookups, spec: &Spec) -> Result<Ready, String> {
        let (gid, on_mismatch) = fs_group(self.pod);
        let ro = |path: PathBuf| Ready {
            path,
            read_only: true,
        };
        if let Some(e) = &spec.empty_dir {
            let medium = e.medium.as_deref().unwrap_or_default();
            let dir = match medium {
                "" => self.plugin_dir(Plugin::EmptyDir, &spec.name, false)?,
                "Memory" => {
                    let dir = self.layout.volume(self.uid(), Plugin::EmptyDir, &spec.name);
                    let size = e
                        .size_limit
                        .as_ref()
                        .and_then(|q| minik_api::quantity::parse(&q.0))
                        .and_then(|m| u64::try_from(m / 1000).ok())
                        .filter(|s| *s > 0);
                    fs::mount_tmpfs(&dir, size)
                        .map_err(|e| format!("mounting a tmpfs at {}: {e}", dir.display()))?;
                    dir
                }
                other => {
                    return Err(format!(
                        "emptyDir medium {other:?} is not supported on this node"
                    ));
                }
            };
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(io_err)?;
            if let Some(g) = gid {
                fs::set_ownership(&dir, g, false, on_mismatch).map_err(io_err)?;
            }
            return Ok(Ready {
                path: dir,
                read_only: false,
            });
        }
        if let Some(h) = &spec.host_path {
            let path = PathBuf::from(&h.path);
            fs::host_path(&path, h.type_.as_deref())?;
            return Ok(Ready {
                path,
                read_only: false,
            });
        }
        if let Some(c) = &spec.config_map {
            let optional = c.optional.unwrap_or(false);
            let data = lookups
                .config_map_data(&c.name, optional)
                .await
                .map_err(|e| e.to_string())?;
            let default_mode = c.default_mode.unwrap_or(DEFAULT_MODE);
            let payload = projection::items_payload(
                &data.unwrap_or_default(),
                c.items.as_deref(),
                default_mode,
                optional,
                "configmap",
            )?;
            let dir = self.plugin_dir(Plugin::ConfigMap, &spec.name, false)?;
            self.publish(&dir, &payload)?;
            return Ok(ro(dir));
        }
        if let Some(s) = &spec.secret {
            let optional = s.optional.unwrap_or(false);
            let name = s.secret_name.clone().unwrap_or_default();
            let data = lookups
                .secret_data(&name, optional)
                .await
                .map_err(|e| e.to_string())?;
            let default_mode = s.default_mode.unwrap_or(DEFAULT_MODE);
            let payload = projection::items_payload(
                &data.unwrap_or_default(),
                s.items.as_deref(),
                default_mode,
                optional,
                "secret",
            )?;
            let dir = self.plugin_dir(Plugin::Secret, &spec.name, true)?;
            self.publish(&dir, &payload)?;
            return Ok(ro(dir));
        }
        if let Some(d) = &spec.downward_api {
            let default_mode = d.default_mode.unwrap_or(DEFAULT_MODE);
            let items = d.items.as_deref().unwrap_or_default();
            let payload = projection::downward_payload(
                self.pod,
                items,
                default_mode,
                self.addresses,
                self.allocatable,
            )?;
            let dir = self.plugin_dir(Plugin::DownwardApi, &spec.name, false)?;
            self.publish(&dir, &payload)?;
            return Ok(ro(dir));
        }
        if let Some(p) = &spec.projected {
            let ctx = Context {
                client: self.client,
                pod: self.pod,
                addresses: self.addresses,
                allocatable: self.allocatable,
                fs_user: fs_user(self.pod),
                fs_group: gid,
            };
            let payload =
                projection::projected_payload(&ctx, lookups, self.tokens, &spec.name, p).await?;
            let dir = self.plugin_dir(Plugin::Projected, &spec.name, true)?;
            self.publish(&dir, &payload)?;
            return Ok(ro(dir));
        }
        let claim = if let Some(c) = &spec.persistent_volume_claim {
            Some((c.claim_name.clone(), c.read_only.unwrap_or(false)))
        } else {
            // A generic ephemeral volume's claim is named after the pod and the volume.
            spec.ephemeral.as_ref().map(|_| {
                let pod = self.pod.metadata.name.as_deref().unwrap_or_default();
                (format!("{pod}-{}", spec.name), false)
            })
        };
        if let Some((name, read_only)) = claim {
            let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
            let found = api::claim(self.client, namespace, &name)
                .await
                .map_err(|e| e.to_string())?;
            if found.local {
                if !found.path.is_dir() {
                    return Err(format!(
                        "path {:?} does not exist",
                        found.path.display().to_string()
                    ));
                }
                if let Some(g) = gid {
                    fs::set_ownership(&found.path, g, read_only, on_mismatch).map_err(io_err)?;
                }
            } else {
                fs::host_path(&found.path, found.host_path_type.as_deref())?;
            }
            return Ok(Ready {
                path: found.path,
                read_only,
            });
        }
        Err("this volume type is not supported on this node".into())
    }
}

/// Undo a pod's volumes: unmount every tmpfs under its directory. Data of hostPath and
/// claims is never under it, so the directory can then go.
pub fn tear_down(layout: &Layout, uid: &str) -> std::io::Result<()> {
    fs::unmount_all(&layout.pod(uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSecurityContext, PodSpec, SecurityContext};

    #[test]
    fn fs_user_is_the_one_user_all_containers_share() {
        let c = |user: Option<i64>| Container {
            security_context: user.map(|u| SecurityContext {
                run_as_user: Some(u),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = |users: Vec<Option<i64>>, pod_user: Option<i64>| Pod {
            spec: Some(PodSpec {
                containers: users.into_iter().map(c).collect(),
                security_context: Some(PodSecurityContext {
                    run_as_user: pod_user,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(fs_user(&pod(vec![Some(5), Some(5)], None)), Some(5));
        assert_eq!(fs_user(&pod(vec![Some(5), None], Some(5))), Some(5));
        assert_eq!(fs_user(&pod(vec![Some(5), Some(6)], None)), None);
        assert_eq!(fs_user(&pod(vec![Some(5), None], None)), None);
    }
}
