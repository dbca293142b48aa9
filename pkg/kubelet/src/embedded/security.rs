//! Who a container runs as and with what privileges: the pod's and container's
//! securityContext merged (container wins), the image's user resolved through the image's
//! /etc/passwd and /etc/group as containerd does, and kubelet's runAsNonRoot check.

use std::fs;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use minik_runtime::Security;

/// A file of the image's root filesystem, read from the topmost layer that has it (None if
/// absent, deleted by a whiteout, or a symlink: it is never followed out of the image).
pub fn image_file(layers: &[PathBuf], path: &str) -> Option<String> {
    let rel = Path::new(path.trim_start_matches('/'));
    let name = rel.file_name()?.to_string_lossy().into_owned();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for layer in layers.iter().rev() {
        let candidate = layer.join(rel);
        if let Ok(meta) = fs::symlink_metadata(&candidate) {
            return (meta.is_file())
                .then(|| fs::read_to_string(&candidate).ok())
                .flatten();
        }
        let dir = layer.join(parent);
        if dir.join(format!(".wh.{name}")).exists() || dir.join(".wh..wh..opq").exists() {
            return None;
        }
    }
    None
}

/// One /etc/passwd entry: (name, uid, gid).
fn passwd(text: &str) -> Vec<(String, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// One /etc/group entry: (name, gid, members).
fn groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3).map_or(Vec::new(), |m| {
                m.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            });
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members))
        })
        .collect()
}

/// The securityContext fields that exist at both levels, container first.
struct Effective<'a> {
    pod: Option<&'a PodSecurityContext>,
    container: Option<&'a SecurityContext>,
}

impl Effective<'_> {
    fn run_as_user(&self) -> Option<i64> {
        self.container
            .and_then(|c| c.run_as_user)
            .or(self.pod.and_then(|p| p.run_as_user))
    }
    fn run_as_group(&self) -> Option<i64> {
        self.container
            .and_then(|c| c.run_as_group)
            .or(self.pod.and_then(|p| p.run_as_group))
    }
    fn run_as_non_root(&self) -> bool {
        self.container
            .and_then(|c| c.run_as_non_root)
            .or(self.pod.and_then(|p| p.run_as_non_root))
            .unwrap_or(false)
    }
    fn seccomp(&self) -> Option<String> {
        self.container
            .and_then(|c| c.seccomp_profile.as_ref())
            .or(self.pod.and_then(|p| p.seccomp_profile.as_ref()))
            .map(|s| s.type_.clone())
    }
}

fn id(v: i64, what: &str) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
}

/// `name_namespace(uid)`, as the kubelet names a pod in messages.
pub fn pod_name(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The container's Security. `image_user` is the image config's User; `layers` its root
/// filesystem. Errors are CreateContainerConfigError messages.
pub fn resolve(
    pod: &Pod,
    c: &Container,
    image_user: Option<&str>,
    layers: &[PathBuf],
) -> Result<Security, String> {
    let spec = pod.spec.as_ref();
    let pod_sc = spec.and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let eff = Effective {
        pod: pod_sc,
        container: sc,
    };
    let image_user = image_user.unwrap_or_default();
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let image_uid: Option<u32> = if user_part.is_empty() {
        Some(0)
    } else {
        user_part.parse().ok()
    };
    if eff.run_as_non_root() {
        let who = format!("(pod: {:?}, container: {})", pod_name(pod), c.name);
        match (eff.run_as_user(), image_uid) {
            (Some(0), _) => {
                return Err(format!(
                    "container's runAsUser breaks non-root policy {who}"
                ));
            }
            (Some(_), _) => {}
            (None, Some(0)) => {
                return Err(format!(
                    "container has runAsNonRoot and image will run as root {who}"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "container has runAsNonRoot and image has non-numeric user ({user_part}), cannot verify user is non-root {who}"
                ));
            }
            (None, Some(_)) => {}
        }
    }
    let users = image_file(layers, "/etc/passwd")
        .map(|t| passwd(&t))
        .unwrap_or_default();
    let entry = |uid: u32| users.iter().find(|(_, u, _)| *u == uid);
    let uid = match eff.run_as_user() {
        Some(u) => id(u, "runAsUser")?,
        None => match image_uid {
            Some(u) => u,
            None => users
                .iter()
                .find(|(n, _, _)| n == user_part)
                .map(|(_, u, _)| *u)
                .ok_or_else(|| {
                    format!("failed to find user {user_part:?} in the image's /etc/passwd")
                })?,
        },
    };
    let group_list = image_file(layers, "/etc/group")
        .map(|t| groups(&t))
        .unwrap_or_default();
    let gid = match (eff.run_as_group(), group_part) {
        (Some(g), _) => id(g, "runAsGroup")?,
        (None, Some(g)) => match g.parse() {
            Ok(g) => g,
            Err(_) => group_list
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, gid, _)| *gid)
                .ok_or_else(|| format!("failed to find group {g:?} in the image's /etc/group"))?,
        },
        (None, None) => entry(uid).map_or(0, |(_, _, g)| *g),
    };
    let mut supplemental: Vec<u32> = Vec::new();
    let mut add = |g: u32| {
        if !supplemental.contains(&g) {
            supplemental.push(g);
        }
    };
    // containerd's default (Merge): the groups the image's /etc/group gives the user.
    if let Some((name, _, _)) = entry(uid) {
        for (_, g, members) in &group_list {
            if members.contains(name) {
                add(*g);
            }
        }
    }
    for g in pod_sc
        .and_then(|p| p.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
    {
        add(id(*g, "supplementalGroup")?);
    }
    if let Some(g) = pod_sc.and_then(|p| p.fs_group) {
        add(id(g, "fsGroup")?);
    }
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let seccomp = eff.seccomp();
    if seccomp.as_deref() == Some("Localhost") {
        return Err("seccomp profiles of type Localhost are not supported on this node".into());
    }
    Ok(Security {
        uid,
        gid,
        supplemental_groups: supplemental,
        privileged,
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        add_capabilities: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop_capabilities: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false)
            && !privileged,
        seccomp_default: seccomp.as_deref() == Some("RuntimeDefault") && !privileged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSpec, SeccompProfile};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(sc: PodSecurityContext) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                security_context: Some(sc),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn image() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let (low, high) = (dir.path().join("0"), dir.path().join("1"));
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::create_dir_all(high.join("etc")).unwrap();
        fs::write(low.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(
            high.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            low.join("etc/group"),
            "root:x:0:\napp:x:1001:\nextra:x:2000:app,other\n",
        )
        .unwrap();
        (dir, vec![low, high])
    }

    #[test]
    fn users_come_from_the_context_or_the_image() {
        let (_dir, layers) = image();
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let s = resolve(
            &pod(PodSecurityContext::default()),
            &c,
            Some("app"),
            &layers,
        )
        .unwrap();
        assert_eq!(
            (s.uid, s.gid, s.supplemental_groups),
            (1000, 1001, vec![2000])
        );
        let sc = PodSecurityContext {
            run_as_user: Some(5),
            run_as_group: Some(6),
            fs_group: Some(7),
            supplemental_groups: Some(vec![8]),
            ..Default::default()
        };
        let s = resolve(&pod(sc), &c, Some("app"), &layers).unwrap();
        assert_eq!((s.uid, s.gid, s.supplemental_groups), (5, 6, vec![8, 7]));
        let s = resolve(
            &pod(PodSecurityContext::default()),
            &c,
            Some("1000:50"),
            &layers,
        )
        .unwrap();
        assert_eq!((s.uid, s.gid), (1000, 50));
        assert!(
            resolve(
                &pod(PodSecurityContext::default()),
                &c,
                Some("nobody"),
                &layers
            )
            .is_err()
        );
    }

    #[test]
    fn run_as_non_root_is_checked_as_the_kubelet_does() {
        let (_dir, layers) = image();
        let non_root = PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        };
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        assert_eq!(
            resolve(&pod(non_root.clone()), &c, None, &layers).unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)"
        );
        assert!(
            resolve(&pod(non_root.clone()), &c, Some("app"), &layers)
                .unwrap_err()
                .contains("non-numeric user (app)")
        );
        assert!(resolve(&pod(non_root.clone()), &c, Some("1000"), &layers).is_ok());
        let root = Container {
            security_context: Some(SecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            }),
            ..c.clone()
        };
        assert!(
            resolve(&pod(non_root), &root, Some("1000"), &layers)
                .unwrap_err()
                .starts_with("container's runAsUser breaks non-root policy")
        );
    }

    #[test]
    fn privileges_follow_the_container_context() {
        let c = Container {
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    add: Some(vec!["NET_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                }),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = resolve(&pod(PodSecurityContext::default()), &c, None, &[]).unwrap();
        assert!(s.no_new_privileges && s.readonly_rootfs && s.seccomp_default && !s.privileged);
        assert_eq!(
            (s.add_capabilities, s.drop_capabilities),
            (vec!["NET_ADMIN".into()], vec!["ALL".into()])
        );
    }
}
