//! `minik server --agent-token`, `--agent-token-file` and `--token-file` (k3s's flags), run
//! as the real binary: the agent token authenticates as a bootstrapper (not as the server
//! token), is written for agents to `<data-dir>/server/agent-token` as
//! `K10<CA hash>::node:<secret>` (0600) and stops working once the flag is dropped; token
//! files (also named in the config file) are read, and a missing or empty one stops the
//! server before it writes anything.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use minik_tests::minik_bin;
use minik_tests::server::{Server, ok, text};

/// Who `token` authenticates as.
fn whoami(s: &Server, token: &str) -> Output {
    s.kubectl(&[
        "--token",
        token,
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo}",
    ])
}

fn username(s: &Server, token: &str) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&ok(whoami(s, token))).expect("userInfo JSON");
    info["username"].as_str().unwrap_or_default().to_string()
}

fn server_file(s: &Server, name: &str) -> std::path::PathBuf {
    s.dir.path().join("data/server").join(name)
}

/// The CA hash and user:secret of a full token kept in a file.
fn full_token(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).expect("token file");
    let rest = text.trim().strip_prefix("K10").expect("a K10 token");
    let (hash, cred) = rest.split_once("::").expect("K10<hash>::<user>:<secret>");
    (hash.to_string(), cred.to_string())
}

/// `minik server ARGS` that must fail at start: its output (a timeout stops one that runs).
fn failing_server(dir: &Path, args: &[&str]) -> Output {
    let data = dir.join("data");
    let out = Command::new("timeout")
        .arg("60")
        .arg(minik_bin())
        .arg("server")
        .args(["--disable-agent", "--bind-address", "127.0.0.1"])
        .args(["--https-listen-port", "1"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--write-kubeconfig")
        .arg(dir.join("kubeconfig.yaml"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run minik server");
    assert!(!out.status.success(), "the server started: {}", text(&out));
    assert_ne!(
        out.status.code(),
        Some(124),
        "the server ran until the timeout"
    );
    assert!(!data.exists(), "a refused start made {}", data.display());
    out
}

#[test]
fn the_agent_token_joins_as_a_bootstrapper_until_it_is_dropped() {
    let mut s = Server::start_with(&["--token", "srv-secret", "--agent-token", "agt-secret"]);
    // (a) Both secrets are bootstrappers: a kubelet client CSR, not pods.
    assert_eq!(username(&s, "agt-secret"), "system:bootstrap:agent");
    assert_eq!(username(&s, "srv-secret"), "system:bootstrap:server");
    let can = |verb: &str, what: &str| {
        let out = s.kubectl(&["--token", "agt-secret", "auth", "can-i", verb, what]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can("create", "certificatesigningrequests"), "yes");
    assert_eq!(can("list", "pods"), "no");
    let pods = s.kubectl(&["--token", "agt-secret", "get", "pods", "-A"]);
    assert!(!pods.status.success());
    assert!(text(&pods).contains("Forbidden"), "{}", text(&pods));
    // (b) A wrong token is 401.
    let wrong = s.kubectl(&["--token", "not-a-token", "get", "--raw", "/api"]);
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("Unauthorized"), "{}", text(&wrong));
    // (c) The agent token is written for agents, pinning the same CA as the server token.
    let file = server_file(&s, "agent-token");
    let (hash, cred) = full_token(&file);
    assert_eq!(cred, "node:agt-secret");
    assert_eq!(hash.len(), 64);
    assert_eq!(hash, full_token(&server_file(&s, "node-token")).0);
    let mode = std::fs::metadata(&file)
        .expect("agent-token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let join_with = format!("--token-file {}", file.display());
    assert!(s.log().contains(&join_with), "{}", s.log());
    // The full token given again keeps the same agent token.
    let full = std::fs::read_to_string(&file).expect("agent-token");
    s.extra = ["--token", "srv-secret", "--agent-token", full.trim()]
        .map(String::from)
        .into();
    s.restart(false);
    assert_eq!(username(&s, "agt-secret"), "system:bootstrap:agent");
    assert_eq!(std::fs::read_to_string(&file).expect("agent-token"), full);
    // Dropped: the agent token no longer authenticates and its file is gone.
    s.extra = ["--token", "srv-secret"].map(String::from).into();
    s.restart(false);
    let gone = whoami(&s, "agt-secret");
    assert!(!gone.status.success());
    assert!(text(&gone).contains("Unauthorized"), "{}", text(&gone));
    assert!(!file.exists());
    assert_eq!(username(&s, "srv-secret"), "system:bootstrap:server");
}

#[test]
fn token_files_and_config_keys_are_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "  file-secret\n").expect("token file");
    let agent = dir.path().join("agent-token");
    std::fs::write(&agent, "file-agent-secret\n").expect("agent token file");
    let s = Server::start_with(&[
        "--token-file",
        token.to_str().expect("UTF-8 path"),
        "--agent-token-file",
        agent.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(username(&s, "file-secret"), "system:bootstrap:server");
    assert_eq!(username(&s, "file-agent-secret"), "system:bootstrap:agent");
    let node_token = full_token(&server_file(&s, "node-token")).1;
    assert_eq!(node_token, "server:file-secret");
    drop(s);
    // The config file's keys are the same flags.
    let config = dir.path().join("config.yaml");
    let yaml = format!("token-file: {}\nagent-token: cfg-agent\n", token.display());
    std::fs::write(&config, yaml).expect("config file");
    let s = Server::start_with(&["--config", config.to_str().expect("UTF-8 path")]);
    assert_eq!(username(&s, "file-secret"), "system:bootstrap:server");
    assert_eq!(username(&s, "cfg-agent"), "system:bootstrap:agent");
    assert_eq!(
        full_token(&server_file(&s, "agent-token")).1,
        "node:cfg-agent"
    );
}

#[test]
fn missing_or_empty_token_files_stop_the_server_before_anything_is_made() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-token");
    let out = failing_server(
        dir.path(),
        &["--token-file", missing.to_str().expect("path")],
    );
    let err = text(&out);
    assert!(err.contains("--token-file"), "{err}");
    assert!(err.contains("no-such-token"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("empty file");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("agent-token-file: {}\n", empty.display())).expect("yaml");
    let out = failing_server(dir.path(), &["--config", config.to_str().expect("path")]);
    let err = text(&out);
    assert!(err.contains("--agent-token-file"), "{err}");
    assert!(err.contains("the file is empty"), "{err}");
    // The agent token may not be the server token.
    let out = failing_server(dir.path(), &["--token", "same", "--agent-token", "same"]);
    assert!(
        text(&out).contains("--agent-token must not be the server token"),
        "{}",
        text(&out)
    );
    // --token and --token-file conflict.
    let both = [
        "--token",
        "x",
        "--token-file",
        missing.to_str().expect("path"),
    ];
    let out = failing_server(dir.path(), &both);
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
}
