//! How this host mounts cgroups (v2 unified, or v1 hierarchies, possibly hybrid) and which
//! controllers it has, from /proc/self/mountinfo and /sys/fs/cgroup/cgroup.controllers.

/// How cgroups are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cgroups {
    /// The unified hierarchy at /sys/fs/cgroup and its controllers.
    V2 {
        controllers: Vec<String>,
    },
    /// v1 controllers; `unified`: where a hybrid host also mounts cgroup2.
    V1 {
        controllers: Vec<String>,
        unified: Option<String>,
    },
    None,
}

/// The layout from mountinfo and /sys/fs/cgroup/cgroup.controllers (if it exists).
pub(super) fn cgroup_layout(mountinfo: &str, v2_controllers: Option<&str>) -> Cgroups {
    if let Some(list) = v2_controllers {
        return Cgroups::V2 {
            controllers: list.split_whitespace().map(String::from).collect(),
        };
    }
    let mut controllers = Vec::new();
    let mut unified = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or_default();
        let mut fields = right.split(' ');
        match fields.next() {
            Some("cgroup") => {
                let options = fields.nth(1).unwrap_or_default();
                controllers.extend(
                    options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                        .map(String::from),
                );
            }
            Some("cgroup2") => unified = Some(mount_point.to_string()),
            _ => {}
        }
    }
    if controllers.is_empty() {
        return Cgroups::None;
    }
    Cgroups::V1 {
        controllers,
        unified,
    }
}

impl Cgroups {
    pub(super) fn describe(&self) -> (bool, String) {
        match self {
            Cgroups::V2 { .. } => (true, "cgroup v2 (unified at /sys/fs/cgroup)".to_string()),
            Cgroups::V1 {
                unified: Some(at), ..
            } => (true, format!("cgroup v1 (hybrid: cgroup2 also at {at})")),
            Cgroups::V1 { .. } => (true, "cgroup v1".to_string()),
            Cgroups::None => (false, "no cgroup file system is mounted".to_string()),
        }
    }

    pub(super) fn controller(&self, name: &str) -> (bool, String) {
        let (list, version) = match self {
            Cgroups::V2 { controllers } => (controllers, "v2"),
            Cgroups::V1 { controllers, .. } => (controllers, "v1"),
            Cgroups::None => return (false, "no cgroups".to_string()),
        };
        if list.iter().any(|c| c == name) {
            (true, format!("{version} controller {name}"))
        } else {
            (false, format!("no {version} {name} controller is mounted"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn reads_a_hybrid_v1_layout() {
        let layout = cgroup_layout(HYBRID, None);
        assert_eq!(
            layout,
            Cgroups::V1 {
                controllers: vec!["cpu".into(), "memory".into()],
                unified: Some("/sys/fs/cgroup/unified".into()),
            }
        );
        assert!(layout.describe().1.contains("cgroup v1"));
        assert!(layout.controller("memory").0);
        assert!(!layout.controller("pids").0);
    }

    #[test]
    fn reads_a_v2_layout() {
        let layout = cgroup_layout("", Some("cpuset cpu io memory pids\n"));
        assert!(layout.describe().1.contains("cgroup v2"));
        assert!(layout.controller("pids").0);
        assert!(!cgroup_layout("", None).describe().0);
    }
}
