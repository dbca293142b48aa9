//! Units: versions, addresses from results, result conversion, config file choice.

use std::net::IpAddr;

use serde_json::json;

use super::Setup;
use crate::cni::config::{self, NetworkList, Version};
use crate::cni::result::{addresses, convert};
use crate::pod::NetworkError;

#[test]
fn versions_parse_and_order() {
    assert_eq!(Version::parse("0.4.0"), Some(Version(0, 4, 0)));
    assert_eq!(Version::parse("1.0"), Some(Version(1, 0, 0)));
    assert_eq!(Version::parse("x"), None);
    assert_eq!(Version::parse("1.0.0.0"), None);
    assert!(Version::parse("0.3.1").unwrap() < Version::V0_4_0);
    assert!(Version::parse("1.0.0").unwrap() > Version::V0_4_0);
}

#[test]
fn addresses_ipv4_first_and_only_the_pod_interface() {
    let result = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [
            {"address": "fd00::5/64", "interface": 2},
            {"address": "10.88.0.1/16", "interface": 0},
            {"address": "10.88.0.5/16", "interface": 2},
        ],
    });
    let want: Vec<IpAddr> = vec!["10.88.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
    assert_eq!(addresses(&result, "eth0"), want);
    // Without interface indices every address counts.
    let plain = json!({"ips": [{"address": "fd00::7/64"}, {"address": "10.1.0.7/24"}]});
    let want: Vec<IpAddr> = vec!["10.1.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
    assert_eq!(addresses(&plain, "eth0"), want);
    // 0.2.0 results.
    let old = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.2.0.9/24"}});
    assert_eq!(
        addresses(&old, "eth0"),
        vec!["10.2.0.9".parse::<IpAddr>().unwrap()]
    );
    assert!(addresses(&json!({}), "eth0").is_empty());
}

#[test]
fn results_convert_between_0_4_and_1_0() {
    let r100 = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}, {"address": "fd00::2/64"}]});
    let r040 = convert(&r100, Some("0.4.0"));
    assert_eq!(
        r040,
        json!({"cniVersion": "0.4.0", "ips": [
            {"address": "10.0.0.2/24", "version": "4"},
            {"address": "fd00::2/64", "version": "6"}
        ]})
    );
    assert_eq!(convert(&r040, Some("1.0.0")), r100);
    // Old-style results and unknown targets pass unchanged.
    let old = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.2.0.9/24"}});
    assert_eq!(convert(&old, Some("1.0.0")), old);
    assert_eq!(convert(&r100, None), r100);
}

#[test]
fn plugin_config_gets_name_version_and_prev_result() {
    let list = NetworkList::from_value(json!({
        "cniVersion": "1.0.0", "name": "net",
        "plugins": [{"type": "a", "cniVersion": "0.3.1", "x": 1}, {"type": "b"}],
    }))
    .unwrap();
    assert_eq!(
        list.plugin_config(0, None),
        json!({"type": "a", "cniVersion": "1.0.0", "name": "net", "x": 1})
    );
    let prev = json!({"cniVersion": "1.0.0", "ips": []});
    assert_eq!(
        list.plugin_config(1, Some(&prev)),
        json!({"type": "b", "cniVersion": "1.0.0", "name": "net", "prevResult": prev})
    );
}

#[test]
fn config_lists_are_validated() {
    for (bad, why) in [
        (json!([]), "not a JSON object"),
        (json!({"plugins": [{"type": "a"}]}), "missing network name"),
        (
            json!({"name": "n", "plugins": []}),
            "the plugin list is empty",
        ),
        (
            json!({"name": "n", "plugins": [{"x": 1}]}),
            "plugin 0 has no type",
        ),
        (json!({"name": "n", "type": ""}), "plugin 0 has no type"),
        (
            json!({"name": "n", "cniVersion": "new", "type": "a"}),
            "invalid cniVersion",
        ),
    ] {
        let err = NetworkList::from_value(bad.clone()).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn config_dir_first_valid_file_by_name_and_single_plugins_wrapped() {
    let s = Setup::new();
    match config::load(&s.conf_dir) {
        Err(NetworkError::NotReady(msg)) => {
            assert_eq!(
                msg,
                format!("no network config found in {}", s.conf_dir.display())
            )
        }
        other => panic!("{other:?}"),
    }
    match config::load(&s.path("missing")) {
        Err(NetworkError::NotReady(msg)) => assert!(msg.starts_with("no network config found")),
        other => panic!("{other:?}"),
    }
    std::fs::write(s.conf_dir.join("00-broken.conflist"), b"{not json").unwrap();
    match config::load(&s.conf_dir) {
        Err(NetworkError::NotReady(msg)) => assert!(msg.contains("00-broken.conflist"), "{msg}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(s.conf_dir.join("05-ignored.txt"), b"{}").unwrap();
    s.write_conf(
        "20-b.conflist",
        &json!({"cniVersion": "1.0.0", "name": "b", "plugins": [{"type": "b"}]}),
    );
    s.write_conf(
        "10-a.conf",
        &json!({"cniVersion": "0.4.0", "name": "a", "type": "bridge", "bridge": "x"}),
    );
    let list = config::load(&s.conf_dir).unwrap();
    assert_eq!(list.name, "a");
    assert_eq!(list.version(), Version::V0_4_0);
    assert_eq!(
        list.raw,
        json!({"cniVersion": "0.4.0", "name": "a", "plugins": [
            {"cniVersion": "0.4.0", "name": "a", "type": "bridge", "bridge": "x"}
        ]})
    );
}
