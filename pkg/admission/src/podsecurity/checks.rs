//! The Pod Security Standards' checks (version "latest"): each finds what in a pod
//! template breaks it and says so as kube-apiserver's PodSecurity admission does.

use serde_json::Value;

/// baseline and restricted, in order of strictness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// `container "a"` or `containers "a", "b"`.
fn plural(what: &str, names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    if names.len() == 1 {
        format!("{what} {}", quoted[0])
    } else {
        format!("{what}s {}", quoted.join(", "))
    }
}

struct Pod<'a> {
    meta: &'a Value,
    spec: &'a Value,
}

impl<'a> Pod<'a> {
    fn containers(&self) -> impl Iterator<Item = &'a Value> {
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .filter_map(|k| self.spec[k].as_array())
            .flatten()
    }

    fn names_where(&self, f: impl Fn(&Value) -> bool) -> Vec<String> {
        self.containers()
            .filter(|c| f(c))
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn pod_sc(&self) -> &'a Value {
        &self.spec["securityContext"]
    }
}

/// Every way `template` (a pod, or a pod template: metadata and spec) breaks `level`.
pub fn violations(level: Level, meta: &Value, spec: &Value) -> Vec<String> {
    let pod = Pod { meta, spec };
    let mut out = Vec::new();
    if level >= Level::Baseline {
        baseline(&pod, &mut out);
    }
    if level >= Level::Restricted {
        restricted(&pod, &mut out);
    }
    out
}

fn baseline(pod: &Pod<'_>, out: &mut Vec<String>) {
    let host_process = pod.pod_sc()["windowsOptions"]["hostProcess"] == true
        || pod
            .containers()
            .any(|c| c["securityContext"]["windowsOptions"]["hostProcess"] == true);
    if host_process {
        out.push("hostProcess (pod and containers must not set securityContext.windowsOptions.hostProcess to true)".into());
    }
    let hosts: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| pod.spec[**k] == true)
        .map(|k| format!("{k}=true"))
        .collect();
    if !hosts.is_empty() {
        out.push(format!("host namespaces ({})", hosts.join(", ")));
    }
    let privileged = pod.names_where(|c| c["securityContext"]["privileged"] == true);
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} must not set securityContext.privileged=true)",
            plural("container", &privileged)
        ));
    }
    let mut caps = Vec::new();
    for c in pod.containers() {
        for cap in c["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let cap = cap.as_str().unwrap_or("");
            if !BASELINE_CAPS.contains(&cap) {
                caps.push(format!(
                    "container {:?} must not include {cap:?} in securityContext.capabilities.add",
                    c["name"].as_str().unwrap_or("")
                ));
            }
        }
    }
    if !caps.is_empty() {
        out.push(format!("non-default capabilities ({})", caps.join("; ")));
    }
    let volumes = pod.spec["volumes"].as_array();
    let host_path: Vec<String> = volumes
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| v["name"].as_str().unwrap_or("").to_string())
        .collect();
    if !host_path.is_empty() {
        out.push(format!(
            "hostPath volumes ({})",
            plural("volume", &host_path)
        ));
    }
    let mut ports = Vec::new();
    for c in pod.containers() {
        for p in c["ports"].as_array().into_iter().flatten() {
            if let Some(hp) = p["hostPort"].as_i64().filter(|p| *p != 0) {
                ports.push(format!(
                    "container {:?} uses hostPort {hp}",
                    c["name"].as_str().unwrap_or("")
                ));
            }
        }
    }
    if !ports.is_empty() {
        out.push(format!("hostPort ({})", ports.join(", ")));
    }
    app_armor(pod, out);
    se_linux(pod, out);
    let proc_mount = pod.names_where(|c| {
        c["securityContext"]["procMount"]
            .as_str()
            .is_some_and(|m| m != "Default")
    });
    if !proc_mount.is_empty() {
        out.push(format!(
            "procMount ({} must not set securityContext.procMount to \"Unmasked\")",
            plural("container", &proc_mount)
        ));
    }
    let unconfined = |sc: &Value| sc["seccompProfile"]["type"] == "Unconfined";
    let mut seccomp = Vec::new();
    if unconfined(pod.pod_sc()) {
        seccomp.push(
            "pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_string(),
        );
    }
    let cs = pod.names_where(|c| unconfined(&c["securityContext"]));
    if !cs.is_empty() {
        seccomp.push(format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            plural("container", &cs)
        ));
    }
    if !seccomp.is_empty() {
        out.push(format!("seccompProfile ({})", seccomp.join("; ")));
    }
    let sysctls: Vec<String> = pod.pod_sc()["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(str::to_string)
        .collect();
    if !sysctls.is_empty() {
        out.push(format!("forbidden sysctls ({})", sysctls.join(", ")));
    }
}

fn app_armor(pod: &Pod<'_>, out: &mut Vec<String>) {
    let bad_type = |p: &Value| p["type"] == "Unconfined";
    let mut found: Vec<String> = pod.meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
        .filter(|(_, v)| {
            let v = v.as_str().unwrap_or("");
            !(v.is_empty() || v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
        .collect();
    if bad_type(&pod.pod_sc()["appArmorProfile"]) {
        found
            .push("pod must not set securityContext.appArmorProfile.type to \"Unconfined\"".into());
    }
    let cs = pod.names_where(|c| bad_type(&c["securityContext"]["appArmorProfile"]));
    if !cs.is_empty() {
        found.push(format!(
            "{} must not set securityContext.appArmorProfile.type to \"Unconfined\"",
            plural("container", &cs)
        ));
    }
    if !found.is_empty() {
        out.push(format!("forbidden AppArmor profile ({})", found.join(", ")));
    }
}

fn se_linux(pod: &Pod<'_>, out: &mut Vec<String>) {
    let bad = |sc: &Value| {
        let o = &sc["seLinuxOptions"];
        !SELINUX_TYPES.contains(&o["type"].as_str().unwrap_or(""))
            || o["user"].as_str().is_some_and(|u| !u.is_empty())
            || o["role"].as_str().is_some_and(|r| !r.is_empty())
    };
    let cs = pod.names_where(|c| bad(&c["securityContext"]));
    if bad(pod.pod_sc()) || !cs.is_empty() {
        out.push("seLinuxOptions (pod and containers must not set forbidden securityContext.seLinuxOptions: type, user or role)".into());
    }
}

fn restricted(pod: &Pod<'_>, out: &mut Vec<String>) {
    let mut vols = Vec::new();
    for v in pod.spec["volumes"].as_array().into_iter().flatten() {
        let kind = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .find(|k| *k != "name");
        if let Some(kind) = kind.filter(|k| !RESTRICTED_VOLUMES.contains(k)) {
            vols.push(format!(
                "volume {:?} uses restricted volume type {kind:?}",
                v["name"].as_str().unwrap_or("")
            ));
        }
    }
    if !vols.is_empty() {
        out.push(format!("restricted volume types ({})", vols.join(", ")));
    }
    let escalation = pod.names_where(|c| c["securityContext"]["allowPrivilegeEscalation"] != false);
    if !escalation.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            plural("container", &escalation)
        ));
    }
    let mut caps = Vec::new();
    let no_drop = pod.names_where(|c| {
        !c["securityContext"]["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d == "ALL"))
    });
    if !no_drop.is_empty() {
        caps.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            plural("container", &no_drop)
        ));
    }
    for c in pod.containers() {
        for cap in c["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if cap != "NET_BIND_SERVICE" {
                caps.push(format!(
                    "container {:?} must not include {:?} in securityContext.capabilities.add",
                    c["name"].as_str().unwrap_or(""),
                    cap.as_str().unwrap_or("")
                ));
            }
        }
    }
    if !caps.is_empty() {
        out.push(format!("unrestricted capabilities ({})", caps.join("; ")));
    }
    let pod_non_root = pod.pod_sc()["runAsNonRoot"] == true;
    let pod_false = pod.pod_sc()["runAsNonRoot"] == false;
    let non_root = pod.names_where(|c| {
        let sc = &c["securityContext"]["runAsNonRoot"];
        sc == false || (!pod_non_root && sc != true)
    });
    if pod_false || !non_root.is_empty() {
        let who = if non_root.is_empty() {
            "pod".to_string()
        } else {
            format!("pod or {}", plural("container", &non_root))
        };
        out.push(format!(
            "runAsNonRoot != true ({who} must set securityContext.runAsNonRoot=true)"
        ));
    }
    let root = |sc: &Value| sc["runAsUser"] == 0;
    let root_cs = pod.names_where(|c| root(&c["securityContext"]));
    if root(pod.pod_sc()) || !root_cs.is_empty() {
        out.push("runAsUser=0 (pod and containers must not set runAsUser=0)".into());
    }
    let allowed = |sc: &Value| {
        matches!(
            sc["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let pod_ok = allowed(pod.pod_sc());
    let unset = pod.names_where(|c| {
        let t = &c["securityContext"]["seccompProfile"]["type"];
        !(allowed(&c["securityContext"]) || (pod_ok && t.is_null()))
    });
    if !unset.is_empty() {
        out.push(format!(
            "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            plural("container", &unset)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_privileged_pod_breaks_baseline_and_a_hardened_one_passes_restricted() {
        let spec = json!({"hostNetwork": true, "containers": [{"name": "c",
            "securityContext": {"privileged": true}}]});
        let v = violations(Level::Baseline, &json!({}), &spec);
        assert_eq!(
            v,
            vec![
                "host namespaces (hostNetwork=true)".to_string(),
                "privileged (container \"c\" must not set securityContext.privileged=true)".into(),
            ]
        );
        assert!(violations(Level::Privileged, &json!({}), &spec).is_empty());
        let hardened = json!({"securityContext": {"runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}}}]});
        assert_eq!(
            violations(Level::Restricted, &json!({}), &hardened),
            Vec::<String>::new()
        );
        let plain = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let v = violations(Level::Restricted, &json!({}), &plain);
        assert_eq!(
            v[0],
            "allowPrivilegeEscalation != false (containers \"a\", \"b\" must set securityContext.allowPrivilegeEscalation=false)"
        );
        assert_eq!(v.len(), 4, "{v:?}");
    }
}
