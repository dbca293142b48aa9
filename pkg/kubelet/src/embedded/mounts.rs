//! A container's bind mounts, as kubelet's makeMounts makes them: its volumeMounts (subPath
//! and subPathExpr resolved inside the volume, never out of it), the pod's /etc/hosts and
//! /etc/resolv.conf, and the file behind terminationMessagePath.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::Container;
use minik_runtime::Mount;

use super::env::Env;
use super::expand::expand;
use super::layout::Layout;
use super::volumes::Volumes;

/// The path a subPath or subPathExpr names in its volume ("" for none); errors are
/// CreateContainerConfigError messages.
pub fn sub_path(sub: Option<&str>, expr: Option<&str>, env: &Env) -> Result<String, String> {
    let sub = match expr.filter(|e| !e.is_empty()) {
        Some(expr) => {
            let missing = std::cell::RefCell::new(Vec::new());
            let expanded = expand(expr, &|name| match env.get(name) {
                Some(v) if !v.is_empty() => Some(v.to_string()),
                _ => {
                    missing.borrow_mut().push(name.to_string());
                    Some(String::new())
                }
            });
            let mut missing = missing.into_inner();
            if !missing.is_empty() {
                missing.sort();
                missing.dedup();
                return Err(format!("missing value for {}", missing.join(", ")));
            }
            expanded
        }
        None => sub.unwrap_or_default().to_string(),
    };
    if sub.is_empty() {
        return Ok(sub);
    }
    let p = Path::new(&sub);
    if p.is_absolute() {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    Ok(sub)
}

/// The mounts of container `c` (run `id`) of pod `uid`.
pub fn build(
    layout: &Layout,
    uid: &str,
    c: &Container,
    id: &str,
    volumes: &Volumes,
    env: &Env,
) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let vol = volumes.get(&vm.name).ok_or_else(|| {
            format!(
                "cannot find volume {:?} to mount into container {:?}",
                vm.name, c.name
            )
        })?;
        let sub = sub_path(vm.sub_path.as_deref(), vm.sub_path_expr.as_deref(), env)?;
        let source = if sub.is_empty() {
            vol.path.clone()
        } else {
            let prepare = || {
                format!(
                    "failed to prepare subPath for volumeMount {:?} of container {:?}",
                    vm.name, c.name
                )
            };
            let path = vol.path.join(&sub);
            if fs::symlink_metadata(&path).is_err() {
                let mode = fs::metadata(&vol.path)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0o755);
                fs::create_dir_all(&path).map_err(|_| prepare())?;
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode));
            }
            // Symlinks may not lead out of the volume.
            let (real, root) = (fs::canonicalize(&path), fs::canonicalize(&vol.path));
            match (real, root) {
                (Ok(real), Ok(root)) if real.starts_with(&root) => real,
                _ => return Err(prepare()),
            }
        };
        mounts.push(Mount {
            source,
            destination: vm.mount_path.clone(),
            readonly: vm.read_only.unwrap_or(false) || vol.read_only,
        });
    }
    let taken = |mounts: &[Mount], dest: &str| mounts.iter().any(|m| m.destination == dest);
    if !taken(&mounts, "/etc/hosts") {
        mounts.push(Mount {
            source: layout.etc_hosts(uid),
            destination: "/etc/hosts".into(),
            readonly: false,
        });
    }
    if !taken(&mounts, "/etc/resolv.conf") {
        mounts.push(Mount {
            source: layout.resolv_conf(uid),
            destination: "/etc/resolv.conf".into(),
            readonly: false,
        });
    }
    let message_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    if !message_path.is_empty() && !taken(&mounts, &message_path) {
        let file = layout.termination_log(uid, &c.name, id);
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        fs::write(&file, b"").map_err(|e| format!("creating {}: {e}", file.display()))?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).map_err(|e| e.to_string())?;
        mounts.push(Mount {
            source: file,
            destination: message_path,
            readonly: false,
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::volumes::Ready;
    use k8s_openapi::api::core::v1::VolumeMount;

    #[test]
    fn sub_paths_stay_in_their_volume() {
        let mut env = Env::default();
        env.set("POD", "web-0".into());
        assert_eq!(sub_path(Some("a/b"), None, &env).as_deref(), Ok("a/b"));
        assert_eq!(
            sub_path(None, Some("logs/$(POD)"), &env).as_deref(),
            Ok("logs/web-0")
        );
        assert_eq!(
            sub_path(None, Some("$(NOPE)/$(X)"), &env).unwrap_err(),
            "missing value for NOPE, X"
        );
        assert!(sub_path(Some("../etc"), None, &env).is_err());
        assert!(sub_path(Some("/etc"), None, &env).is_err());
        assert_eq!(sub_path(None, None, &env).as_deref(), Ok(""));
    }

    #[test]
    fn mounts_cover_volumes_hosts_and_the_termination_log() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), &dir.path().join("logs"));
        let vol = dir.path().join("vol");
        fs::create_dir_all(&vol).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("escape")).unwrap();
        let volumes: Volumes = [(
            "data".to_string(),
            Ready {
                path: vol.clone(),
                read_only: true,
            },
        )]
        .into();
        let c = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                sub_path: Some("sub".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mounts = build(
            &layout,
            "u1",
            &c,
            "0123456789abcdef",
            &volumes,
            &Env::default(),
        )
        .unwrap();
        let dests: Vec<&str> = mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(
            dests,
            vec![
                "/data",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/dev/termination-log"
            ]
        );
        assert!(mounts[0].readonly && vol.join("sub").is_dir());
        let log = &mounts[3].source;
        assert_eq!(
            fs::metadata(log).unwrap().permissions().mode() & 0o777,
            0o666
        );
        let escaping = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/x".into(),
                sub_path: Some("escape".into()),
                ..Default::default()
            }]),
            ..c.clone()
        };
        assert!(build(&layout, "u1", &escaping, "id", &volumes, &Env::default()).is_err());
        let unknown = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]),
            ..c
        };
        assert!(build(&layout, "u1", &unknown, "id", &volumes, &Env::default()).is_err());
    }
}
