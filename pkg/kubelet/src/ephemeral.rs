//! Ephemeral containers (`kubectl debug`) as the kubelet sees them: each one's spec as a
//! Container, as kubelet's `(*v1.Container)(&ec.EphemeralContainerCommon)` does, so the
//! code that starts containers and writes their statuses serves them as well. The fields
//! ephemeral containers may not have (ports, probes, lifecycle, resources) are refused by
//! the API server and carried over unchanged.

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};

/// The container part of an ephemeral container (all but targetContainerName).
pub fn as_container(ec: &EphemeralContainer) -> Container {
    let ec = ec.clone();
    Container {
        name: ec.name,
        image: ec.image,
        image_pull_policy: ec.image_pull_policy,
        command: ec.command,
        args: ec.args,
        working_dir: ec.working_dir,
        env: ec.env,
        env_from: ec.env_from,
        volume_mounts: ec.volume_mounts,
        volume_devices: ec.volume_devices,
        security_context: ec.security_context,
        stdin: ec.stdin,
        stdin_once: ec.stdin_once,
        tty: ec.tty,
        termination_message_path: ec.termination_message_path,
        termination_message_policy: ec.termination_message_policy,
        ports: ec.ports,
        resources: ec.resources,
        resize_policy: ec.resize_policy,
        restart_policy: ec.restart_policy,
        restart_policy_rules: ec.restart_policy_rules,
        lifecycle: ec.lifecycle,
        liveness_probe: ec.liveness_probe,
        readiness_probe: ec.readiness_probe,
        startup_probe: ec.startup_probe,
    }
}

/// The pod's ephemeral containers, in spec order, as Containers.
pub fn specs(pod: &Pod) -> Vec<Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .map(as_container)
        .collect()
}

/// The container an ephemeral container named `name` targets (shares the PID namespace
/// of), if it names one.
pub fn target<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .find(|ec| ec.name == name)?
        .target_container_name
        .as_deref()
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    #[test]
    fn an_ephemeral_container_is_a_container_and_may_target_one() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "app"}], "ephemeralContainers": [
                {"name": "dbg", "image": "busybox", "command": ["sh"], "stdin": true,
                 "tty": true, "targetContainerName": "app",
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "plain", "image": "busybox", "targetContainerName": ""}]}
        }))
        .unwrap();
        let specs = specs(&pod);
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "dbg");
        assert_eq!(specs[0].command, Some(vec!["sh".to_string()]));
        assert_eq!((specs[0].stdin, specs[0].tty), (Some(true), Some(true)));
        assert_eq!(
            specs[0].volume_mounts.as_ref().unwrap()[0].mount_path,
            "/data"
        );
        assert_eq!(target(&pod, "dbg"), Some("app"));
        assert_eq!(target(&pod, "plain"), None);
        assert_eq!(target(&pod, "app"), None);
        let none = Pod {
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        assert!(super::specs(&none).is_empty());
    }
}
