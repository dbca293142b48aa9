//! Fake plugins: shell scripts that record their stdin, CNI_* environment and call order,
//! and print a fixed result or error. No root needed.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Setup, pod, write_script};
use crate::cni::Cni;
use crate::pod::{NetworkError, PodNetwork};

struct Fakes {
    s: Setup,
    rec: PathBuf,
    netns: PathBuf,
}

impl Fakes {
    fn new() -> Fakes {
        let s = Setup::new();
        let rec = s.path("rec");
        std::fs::create_dir_all(&rec).unwrap();
        let netns = s.path("netns");
        std::fs::write(&netns, b"").unwrap();
        Fakes { s, rec, netns }
    }

    /// A plugin `name` that records its call and then runs `tail`.
    fn script(&self, name: &str, tail: &str) {
        let body = format!(
            "d='{}'\nn=$(basename \"$0\")\ncat > \"$d/$n-$CNI_COMMAND.json\"\n\
             env | grep '^CNI_' | sort > \"$d/$n-$CNI_COMMAND.env\"\n\
             echo \"$CNI_COMMAND $n\" >> \"$d/log\"\n{tail}\n",
            self.rec.display()
        );
        write_script(&self.s.bin_dir.join(name), &body);
    }

    /// A plugin that prints `result` on ADD.
    fn plugin(&self, name: &str, result: &Value) {
        self.script(
            name,
            &format!("[ \"$CNI_COMMAND\" = ADD ] && printf '%s' '{result}'\nexit 0"),
        );
    }

    /// A plugin that fails every command with an error result.
    fn failing(&self, name: &str) {
        let err = json!({"cniVersion": "1.0.0", "code": 11, "msg": "boom from fake", "details": "try later"});
        self.script(name, &format!("printf '%s' '{err}'\nexit 1"));
    }

    fn cni(&self) -> Cni {
        self.s
            .cni_with(vec![self.s.path("nothing-here"), self.s.bin_dir.clone()])
    }

    fn conf(&self, version: &str, plugins: &[&str]) {
        let plugins: Vec<Value> = plugins
            .iter()
            .map(|p| json!({"type": p, "opt": p}))
            .collect();
        self.s.write_conf(
            "10-fake.conflist",
            &json!({"cniVersion": version, "name": "fakenet", "plugins": plugins}),
        );
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.rec.join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn stdin(&self, plugin: &str, cmd: &str) -> Value {
        serde_json::from_slice(
            &std::fs::read(self.rec.join(format!("{plugin}-{cmd}.json"))).unwrap(),
        )
        .unwrap()
    }

    fn env(&self, plugin: &str, cmd: &str) -> HashMap<String, String> {
        std::fs::read_to_string(self.rec.join(format!("{plugin}-{cmd}.env")))
            .unwrap()
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }
}

fn result_a() -> Value {
    json!({"cniVersion": "1.0.0",
           "interfaces": [{"name": "eth0", "sandbox": "/x"}],
           "ips": [{"address": "fd00::5/64", "interface": 0}, {"address": "10.1.2.3/24", "interface": 0}]})
}

fn result_b() -> Value {
    json!({"cniVersion": "1.0.0",
           "interfaces": [{"name": "eth0", "sandbox": "/x"}],
           "ips": [{"address": "fd00::5/64", "interface": 0}, {"address": "10.1.2.3/24", "interface": 0}],
           "dns": {"nameservers": ["10.43.0.10"]}})
}

/// Two plugins a then b, cniVersion `version`.
fn two(version: &str) -> Fakes {
    let f = Fakes::new();
    f.plugin("a", &result_a());
    f.plugin("b", &result_b());
    f.conf(version, &["a", "b"]);
    f
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn add_runs_the_list_in_order_with_the_cni_environment() {
    let f = two("1.0.0");
    let p = pod("uid-1");
    assert_eq!(
        f.cni().add(&p, &f.netns).unwrap(),
        ips(&["10.1.2.3", "fd00::5"])
    );
    assert_eq!(f.log(), ["ADD a", "ADD b"]);
    assert_eq!(
        f.stdin("a", "ADD"),
        json!({"cniVersion": "1.0.0", "name": "fakenet", "type": "a", "opt": "a"})
    );
    assert_eq!(
        f.stdin("b", "ADD"),
        json!({"cniVersion": "1.0.0", "name": "fakenet", "type": "b", "opt": "b", "prevResult": result_a()})
    );
    let env = f.env("b", "ADD");
    let want = [
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", "uid-1".to_string()),
        ("CNI_NETNS", f.netns.display().to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-uid-1;K8S_POD_INFRA_CONTAINER_ID=uid-1;K8S_POD_UID=uid-1".to_string(),
        ),
        (
            "CNI_PATH",
            format!("{}:{}", f.s.path("nothing-here").display(), f.s.bin_dir.display()),
        ),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k), Some(&v), "{k}");
    }
    // Cached: the final result and the config used.
    let cached: Value =
        serde_json::from_slice(&std::fs::read(f.s.cache_file("uid-1")).unwrap()).unwrap();
    assert_eq!(cached["result"], result_b());
    assert_eq!(cached["config"]["name"], "fakenet");
    // Again: the cached addresses, no plugin runs.
    assert_eq!(
        f.cni().add(&p, &f.netns).unwrap(),
        ips(&["10.1.2.3", "fd00::5"])
    );
    assert_eq!(f.log().len(), 2);
}

#[test]
fn del_uses_the_cached_result_and_config_in_reverse_order() {
    let f = two("1.0.0");
    let p = pod("uid-2");
    f.cni().add(&p, &f.netns).unwrap();
    // The config changes to another plugin: DEL still runs the plugins that attached.
    f.plugin("c", &result_a());
    f.conf("1.0.0", &["c"]);
    f.cni().del(&p, Some(&f.netns)).unwrap();
    assert_eq!(f.log(), ["ADD a", "ADD b", "DEL b", "DEL a"]);
    assert_eq!(f.stdin("a", "DEL")["prevResult"], result_b());
    assert_eq!(f.stdin("b", "DEL")["prevResult"], result_b());
    assert!(!f.s.cache_file("uid-2").exists());
    // DEL again (namespace gone): the current config, no prevResult, no CNI_NETNS; fine.
    std::fs::remove_file(&f.netns).unwrap();
    f.cni().del(&p, Some(&f.netns)).unwrap();
    assert_eq!(f.log()[4..], ["DEL c"]);
    assert_eq!(f.stdin("c", "DEL").get("prevResult"), None);
    assert_eq!(f.env("c", "DEL").get("CNI_NETNS"), None);
}

#[test]
fn check_runs_in_order_with_the_cached_result() {
    let f = two("0.4.0");
    let p = pod("uid-3");
    let cni = f.cni();
    match cni.check(&p, &f.netns) {
        Err(NetworkError::Failed(msg)) => assert!(msg.contains("no cached CNI result"), "{msg}"),
        other => panic!("{other:?}"),
    }
    cni.add(&p, &f.netns).unwrap();
    cni.check(&p, &f.netns).unwrap();
    assert_eq!(f.log(), ["ADD a", "ADD b", "CHECK a", "CHECK b"]);
    // The 1.0.0 result reaches 0.4.0 plugins with ips[].version.
    let prev = &f.stdin("a", "CHECK")["prevResult"];
    assert_eq!(prev["cniVersion"], "0.4.0");
    assert_eq!(
        prev["ips"][1],
        json!({"address": "10.1.2.3/24", "interface": 0, "version": "4"})
    );
    assert_eq!(f.stdin("b", "CHECK")["prevResult"], *prev);
}

#[test]
fn configs_older_than_0_4_0_skip_check_and_get_no_prev_result_on_del() {
    let f = two("0.3.1");
    let p = pod("uid-4");
    let cni = f.cni();
    cni.add(&p, &f.netns).unwrap();
    cni.check(&p, &f.netns).unwrap();
    cni.del(&p, Some(&f.netns)).unwrap();
    assert_eq!(f.log(), ["ADD a", "ADD b", "DEL b", "DEL a"]);
    assert_eq!(f.stdin("a", "DEL").get("prevResult"), None);
}

#[test]
fn a_plugin_error_surfaces_its_msg_and_undoes_the_add() {
    let f = Fakes::new();
    f.plugin("a", &result_a());
    f.failing("bad");
    f.conf("1.0.0", &["a", "bad"]);
    let p = pod("uid-5");
    match f.cni().add(&p, &f.netns) {
        Err(NetworkError::Failed(msg)) => {
            assert_eq!(
                msg,
                "plugin type=\"bad\" name=\"fakenet\" failed (add): boom from fake; try later"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.log(), ["ADD a", "ADD bad", "DEL bad", "DEL a"]);
    assert!(!f.s.cache_file("uid-5").exists());
    // DEL's errors surface too.
    match f.cni().del(&p, Some(&f.netns)) {
        Err(NetworkError::Failed(msg)) => {
            assert!(msg.contains("failed (del): boom from fake"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_plugin_and_a_silent_crash_are_errors() {
    let f = Fakes::new();
    f.conf("1.0.0", &["nope"]);
    match f.cni().add(&pod("uid-6"), &f.netns) {
        Err(NetworkError::Failed(msg)) => assert!(
            msg.starts_with("failed to find plugin \"nope\" in path ["),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
    f.script("crash", "echo 'segfault' >&2\nexit 3");
    f.conf("1.0.0", &["crash"]);
    match f.cni().add(&pod("uid-6"), &f.netns) {
        Err(NetworkError::Failed(msg)) => {
            assert!(msg.contains("exit status: 3: segfault"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    // A plugin that succeeds without a result, or without an address, fails the ADD.
    f.plugin("empty", &json!({"cniVersion": "1.0.0", "ips": []}));
    f.conf("1.0.0", &["empty"]);
    match f.cni().add(&pod("uid-6"), &f.netns) {
        Err(NetworkError::Failed(msg)) => assert!(msg.contains("no address"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(!f.s.cache_file("uid-6").exists());
}

#[test]
fn no_config_is_not_ready_and_del_of_an_unknown_pod_is_fine() {
    let f = Fakes::new();
    let cni = f.cni();
    match cni.add(&pod("uid-7"), &f.netns) {
        Err(NetworkError::NotReady(msg)) => {
            assert_eq!(
                msg,
                format!("no network config found in {}", f.s.conf_dir.display())
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(cni.ready(), Err(NetworkError::NotReady(_))));
    cni.del(&pod("uid-7"), None).unwrap();
    assert!(f.log().is_empty());
    assert!(matches!(
        cni.add(&pod("../x"), &f.netns),
        Err(NetworkError::Failed(_))
    ));
}

#[test]
fn a_cached_pod_in_a_new_namespace_is_detached_then_attached_again() {
    let f = two("1.0.0");
    let p = pod("uid-8");
    let cni = f.cni();
    cni.add(&p, &f.netns).unwrap();
    let netns2 = f.s.path("netns2");
    std::fs::write(&netns2, b"").unwrap();
    cni.add(&p, &netns2).unwrap();
    assert_eq!(
        f.log(),
        ["ADD a", "ADD b", "DEL b", "DEL a", "ADD a", "ADD b"]
    );
    assert_eq!(
        f.env("a", "DEL").get("CNI_NETNS"),
        Some(&f.netns.display().to_string())
    );
    assert_eq!(
        f.env("a", "ADD").get("CNI_NETNS"),
        Some(&netns2.display().to_string())
    );
}

#[test]
fn gc_deletes_only_pods_that_are_gone() {
    let f = two("1.0.0");
    let cni = f.cni();
    cni.add(&pod("live"), &f.netns).unwrap();
    cni.add(&pod("gone"), &f.netns).unwrap();
    std::fs::write(f.s.cache_file("corrupt"), b"{").unwrap();
    let live: HashSet<String> = ["live".to_string()].into();
    cni.gc(&live).unwrap();
    assert!(f.s.cache_file("live").exists());
    assert!(!f.s.cache_file("gone").exists());
    assert!(!f.s.cache_file("corrupt").exists());
    let dels: Vec<_> = f
        .log()
        .into_iter()
        .filter(|l| l.starts_with("DEL"))
        .collect();
    assert_eq!(dels, ["DEL b", "DEL a", "DEL b", "DEL a"]);
    assert_eq!(
        f.env("a", "DEL").get("CNI_CONTAINERID"),
        Some(&"gone".to_string())
    );
}

#[test]
fn a_plugin_that_hangs_is_killed_at_the_timeout() {
    let f = Fakes::new();
    f.script("hang", "exec sleep 30");
    f.conf("1.0.0", &["hang"]);
    let cni = f
        .cni()
        .with_plugin_timeout(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    match cni.add(&pod("uid-9"), &f.netns) {
        Err(NetworkError::Failed(msg)) => {
            assert!(msg.contains("failed (add): timed out after 300ms"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    // ADD and the DEL that undoes it were both cut short.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(f.log(), ["ADD hang", "DEL hang"]);
}
