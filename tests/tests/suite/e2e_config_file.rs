//! The config file of `minik server` (--config, config.yaml.d/): its keys act as flags, later
//! drop-ins win, the command line wins over both, and bad files are refused clearly.

use minik_tests::minik;
use minik_tests::server::Server;
use minik_tests::server::text;

/// A config file with `body` and drop-ins `(name, body)` in a fresh directory.
fn config(body: &str, dropins: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, body).unwrap();
    if !dropins.is_empty() {
        let d = dir.path().join("config.yaml.d");
        std::fs::create_dir(&d).unwrap();
        for (name, body) in dropins {
            std::fs::write(d.join(name), body).unwrap();
        }
    }
    (dir, file.to_string_lossy().into_owned())
}

#[test]
fn config_file_keys_act_as_flags() {
    let (_cfg, file) = config(
        // The harness's own --https-listen-port wins over this one, else the server would
        // not answer where the test looks.
        "service-cidr: 10.55.0.0/16\ncluster-dns: 10.55.0.10\nhttps-listen-port: 1\ndebug: true\nsimulated-nodes: 2\n\
         disable-scheduler: false\n",
        &[
            (
                "10-cidr.yaml",
                "service-cidr: 10.56.0.0/16\ncluster-dns: 10.56.0.10\n",
            ),
            ("20-ignored.yaml.bak", "service-cidr: 10.57.0.0/16\n"),
        ],
    );
    let server = Server::start_with(&["--config", &file]);
    // The drop-in's service CIDR replaced the file's.
    let svc = server.until(
        &["get", "service", "kubernetes", "-n", "default"],
        "the kubernetes service",
        |v| v.is_some(),
    );
    let ip = svc.unwrap()["spec"]["clusterIP"].clone();
    assert_eq!(ip, "10.56.0.1");
    // A number: two simulated nodes.
    server.until(&["get", "nodes"], "two simulated nodes", |v| {
        v.as_ref().and_then(|v| v["items"].as_array().map(Vec::len)) == Some(2)
    });
    // A boolean: debug logging.
    assert!(server.log().contains("DEBUG"), "no debug log lines");
}

#[test]
fn command_line_list_flags_replace_the_files() {
    // --disable given on the command line replaces the file's list.
    let (_cfg, file) = config(
        "disable: [local-storage]\nservice-cidr: 10.58.0.0/16\ncluster-dns: 10.58.0.10\n",
        &[],
    );
    let server = Server::start_with(&["--config", &file, "--disable", "coredns"]);
    server.until(
        &["get", "storageclass", "local-path"],
        "the local-path class (local-storage not disabled)",
        |v| v.is_some(),
    );
    let svc = server.get_json(&["service", "kubernetes", "-n", "default"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.58.0.1");
}

/// `minik server --config <file>` in a fresh directory: it must fail, create nothing, and
/// say `expect` (every part).
fn refused(file: &str, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let kubeconfig = dir.path().join("kc.yaml");
    let out = minik(&[
        "server",
        "--config",
        file,
        "--data-dir",
        data.to_str().unwrap(),
        "--write-kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--disable-agent",
        "--https-listen-port",
        "0",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for part in expect {
        assert!(t.contains(part), "{part:?} not in: {t}");
    }
    assert!(!t.contains("panicked"), "{t}");
    assert!(
        !data.exists() && !kubeconfig.exists(),
        "something was created"
    );
}

#[test]
fn bad_config_files_are_refused_clearly() {
    refused(
        "/nonexistent/minik/config.yaml",
        &["/nonexistent/minik/config.yaml"],
    );
    let (_a, file) = config("service-cidr: [10.1.0.0/16\n", &[]);
    refused(&file, &[&file, "not valid YAML"]);
    let (_b, file) = config("no-such-flag: 1\n", &[]);
    refused(
        &file,
        &[&file, "no-such-flag", "not a flag of `minik server`"],
    );
    let (_c, file) = config("data-dir: [/a, /b]\n", &[]);
    refused(&file, &[&file, "data-dir", "takes one value"]);
    // A bad drop-in is named, not the main file.
    let (_d, file) = config("debug: true\n", &[("50-x.yaml", "token: [a, b]\n")]);
    refused(&file, &["50-x.yaml", "token", "takes one value"]);
}

#[test]
fn agent_refuses_server_keys() {
    let (_c, file) = config("disable-scheduler: true\n", &[]);
    let out = minik(&[
        "agent",
        "--config",
        &file,
        "--server",
        "https://127.0.0.1:1",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("disable-scheduler") && t.contains("not a flag of `minik agent`"),
        "{t}"
    );
}
