//! Tests of the config file: which files are read, how keys merge and become flags.

use super::*;
use clap::Parser;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn strings(args: Vec<OsString>) -> Vec<String> {
    args.into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// A config file `config.yaml` with `body` (and drop-ins) in a fresh directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(body: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), body).unwrap();
        Files { dir }
    }

    fn dropin(&self, name: &str, body: &str) {
        let d = self.dir.path().join("config.yaml.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), body).unwrap();
    }

    fn path(&self) -> String {
        self.dir
            .path()
            .join("config.yaml")
            .to_string_lossy()
            .into_owned()
    }

    /// `minik <args>` expanded with this file named by $MINIK_CONFIG_FILE.
    fn expand(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        expand_with(os(args), Some(OsString::from(self.path()))).map(strings)
    }
}

#[test]
fn keys_become_flags_after_the_subcommand() {
    let f = Files::new(
        "node-label: [a=b, c=d]\ndisable: coredns\nwrite-kubeconfig-mode: \"0644\"\n\
         debug: true\nhttps-listen-port: 7443\ndisable-scheduler: false\n",
    );
    let out = f.expand(&["minik", "server", "--token", "x"]).unwrap();
    assert_eq!(
        out,
        [
            "minik",
            "server",
            "--debug",
            "--disable=coredns",
            "--https-listen-port=7443",
            "--node-label=a=b",
            "--node-label=c=d",
            "--write-kubeconfig-mode=0644",
            "--token",
            "x"
        ]
    );
    let cli = crate::cli::Cli::try_parse_from(&out).unwrap();
    assert!(cli.debug);
    let crate::cli::Command::Server(s) = cli.command else {
        panic!("not server")
    };
    assert_eq!(s.https_listen_port, 7443);
    assert_eq!(s.node.node_label, ["a=b", "c=d"]);
    assert_eq!(s.write_kubeconfig_mode, "0644");
    assert!(!s.disable_scheduler);
}

#[test]
fn command_line_flags_win_and_repeats_parse() {
    let f = Files::new("https-listen-port: 7443\nnode-label: [a=b]\ndata-dir: /f\ndebug: true\n");
    let out = f
        .expand(&[
            "minik",
            "--debug",
            "server",
            "--https-listen-port=8443",
            "-d",
            "/cli",
            "--node-label",
            "x=y",
        ])
        .unwrap();
    assert_eq!(out[..3], ["minik", "--debug", "server"]);
    let cli = crate::cli::Cli::try_parse_from(&out).unwrap();
    let crate::cli::Command::Server(s) = cli.command else {
        panic!("not server")
    };
    assert_eq!(s.https_listen_port, 8443);
    assert_eq!(s.node.node_label, ["x=y"]);
    assert_eq!(s.node.data_dir, PathBuf::from("/cli"));
}

#[test]
fn dropins_override_by_name_order_and_plus_appends() {
    let f = Files::new(
        "write-kubeconfig-mode: \"0600\"\nnode-label: [a=1]\nnode-taint: [t=1:NoSchedule]\n",
    );
    f.dropin(
        "20-b.yaml",
        "write-kubeconfig-mode: \"0777\"\nnode-taint+: [t=2:NoSchedule]\n",
    );
    f.dropin(
        "10-a.yaml",
        "write-kubeconfig-mode: \"0644\"\nnode-label: [b=2]\n",
    );
    f.dropin("30-ignored.txt", "nonsense: [\n");
    let out = f.expand(&["minik", "server"]).unwrap();
    assert_eq!(
        out,
        [
            "minik",
            "server",
            "--node-label=b=2",
            "--node-taint=t=1:NoSchedule",
            "--node-taint=t=2:NoSchedule",
            "--write-kubeconfig-mode=0777"
        ]
    );
}

#[test]
fn dropins_alone_are_read_and_a_missing_default_is_fine() {
    let f = Files::new("");
    std::fs::remove_file(f.path()).unwrap();
    f.dropin("a.yaml", "node-name: n1\n");
    // The default file is missing: only the drop-ins count.
    let keys = read_all(Path::new(&f.path()), false).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys["node-name"].0, Value::String("n1".into()));
    let none = read_all(Path::new("/nonexistent/minik/config.yaml"), false).unwrap();
    assert!(none.is_empty());
}

#[test]
fn a_named_missing_file_is_an_error() {
    let err = expand_with(
        os(&["minik", "server", "--config", "/nonexistent/c.yaml"]),
        None,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent/c.yaml"),
        "{err:#}"
    );
    let err = expand_with(
        os(&["minik", "agent"]),
        Some(OsString::from("/nonexistent/e.yaml")),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent/e.yaml"),
        "{err:#}"
    );
}

#[test]
fn the_command_line_file_wins_over_the_environment() {
    let f = Files::new("node-name: from-flag\n");
    for form in [
        format!("--config {}", f.path()),
        format!("--config={}", f.path()),
        format!("-c {}", f.path()),
        format!("-c{}", f.path()),
    ] {
        let mut args = vec!["minik", "agent"];
        args.extend(form.split(' '));
        let out = expand_with(os(&args), Some(OsString::from("/nonexistent/e.yaml"))).unwrap();
        assert_eq!(out[2], "--node-name=from-flag", "{form}");
    }
}

#[test]
fn bad_keys_and_values_name_the_file_and_key() {
    let cases = [
        (
            "no-such-flag: 1\n",
            "no-such-flag",
            "not a flag of `minik server`",
        ),
        ("data-dir: [a, b]\n", "data-dir", "takes one value"),
        ("debug: maybe\n", "debug", "true or false"),
        (
            "node-label: {a: b}\n",
            "node-label",
            "strings, numbers or booleans",
        ),
        ("help: true\n", "help", "not a flag"),
        ("config: /x\n", "config", "cannot name another"),
        ("d: /x\n", "\"d\"", "not a flag"),
    ];
    for (body, key, why) in cases {
        let f = Files::new(body);
        let err = format!("{:#}", f.expand(&["minik", "server"]).unwrap_err());
        assert!(err.contains(&f.path()), "{body}: {err}");
        assert!(err.contains(key) && err.contains(why), "{body}: {err}");
    }
    // A server-only flag is not an agent's.
    let f = Files::new("disable-scheduler: true\n");
    let err = format!("{:#}", f.expand(&["minik", "agent"]).unwrap_err());
    assert!(err.contains("not a flag of `minik agent`"), "{err}");
}

#[test]
fn invalid_yaml_is_an_error_naming_the_file() {
    for body in ["node-label: [a\n", "- a\n- b\n", "just text\n"] {
        let f = Files::new(body);
        let err = format!("{:#}", f.expand(&["minik", "server"]).unwrap_err());
        assert!(err.contains(&f.path()), "{body}: {err}");
    }
}

#[test]
fn other_subcommands_and_help_are_left_alone() {
    let f = Files::new("no-such-flag: 1\n");
    for args in [
        vec!["minik", "token", "list"],
        vec!["minik", "server", "--help"],
        vec!["minik", "agent", "-h"],
        vec!["minik", "--version"],
        vec!["minik"],
    ] {
        assert_eq!(f.expand(&args).unwrap(), args);
    }
}

#[test]
fn values_after_a_double_dash_are_not_flags() {
    let flags = Flags::of("server").unwrap();
    let given = flags.given(&os(&["server", "--token", "--debug", "--", "--node-name"]));
    assert!(given.contains("token"));
    assert!(!given.contains("debug"), "--debug is the token's value");
    assert!(!given.contains("node-name"));
}

#[test]
fn an_unquoted_octal_mode_keeps_its_digits() {
    let f = Files::new("write-kubeconfig-mode: 0644\n");
    let out = f.expand(&["minik", "server"]).unwrap();
    let mode = out[2].trim_start_matches("--write-kubeconfig-mode=");
    assert_eq!(u32::from_str_radix(mode, 8).ok(), Some(0o644), "{out:?}");
}
