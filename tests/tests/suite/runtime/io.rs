//! Terminals, stdin, users, read-only root filesystems and bind mounts.

use std::io::Write;
use std::time::Duration;

use minik_runtime::Mount;

use super::env::Env;

#[tokio::test]
async fn a_terminal_container_logs_its_output_as_stdout() {
    let env = Env::new();
    let pod = env.sandbox("tty", false);
    let mut config = env.config(
        &pod,
        "echo to-terminal; echo also >&2; test -t 1 && echo is-a-tty",
    );
    config.tty = true;
    let id = config.id.clone();
    env.run(config).await;
    env.assert_exit_code(&id, 0).await;
    let log = env.log(&id);
    assert!(
        log.iter().all(|(stream, _, _)| stream == "stdout"),
        "{log:?}"
    );
    let lines: Vec<&str> = log.iter().map(|(_, _, text)| text.as_str()).collect();
    assert_eq!(lines, ["to-terminal", "also", "is-a-tty"]);
}

#[tokio::test]
async fn stdin_reads_from_the_containers_pipe() {
    let env = Env::new();
    let pod = env.sandbox("stdin", false);
    let mut config = env.config(&pod, "read line; echo got-$line");
    config.stdin = true;
    let id = config.id.clone();
    env.run(config).await;
    let path = env.runtime.stdin_path(&id).expect("a stdin pipe");
    let mut pipe = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    pipe.write_all(b"ping\n").unwrap();
    drop(pipe);
    env.assert_exit_code(&id, 0).await;
    assert_eq!(env.stdout(&id), ["got-ping"]);
}

#[tokio::test]
async fn user_read_only_root_and_bind_mounts_apply() {
    let env = Env::new();
    let pod = env.sandbox("security", false);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "from-the-host").unwrap();
    let script = "id -u; id -g; id -G; cat /data/f; echo; \
        touch /x 2>/dev/null && echo root-writable || echo root-readonly; \
        touch /data/y 2>/dev/null && echo data-writable || echo data-readonly; \
        touch /tmp/y 2>/dev/null && echo tmp-writable || echo tmp-readonly";
    let mut config = env.config(&pod, script);
    config.security.uid = 65534;
    config.security.gid = 65534;
    config.security.supplemental_groups = vec![1234];
    config.security.readonly_rootfs = true;
    config.mounts = vec![Mount {
        source: data.path().to_path_buf(),
        destination: "/data".into(),
        readonly: true,
    }];
    let id = config.id.clone();
    env.run(config).await;
    env.assert_exit_code(&id, 0).await;
    assert_eq!(
        env.stdout(&id),
        [
            "65534",
            "65534",
            "65534 1234",
            "from-the-host",
            "root-readonly",
            "data-readonly",
            "tmp-readonly"
        ]
    );
    env.runtime
        .stop_container(&id, Duration::ZERO)
        .await
        .unwrap();
}

#[tokio::test]
async fn runtime_default_seccomp_filters_system_calls() {
    let env = Env::new();
    let pod = env.sandbox("seccomp", false);
    let script = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -d ' \\t'; \
        unshare -U true 2>/dev/null && echo userns-allowed || echo userns-denied";
    let mut ids = Vec::new();
    for (seccomp, no_new_privileges) in [(false, false), (true, false), (true, true)] {
        let mut config = env.config(&pod, script);
        config.security.seccomp_default = seccomp;
        config.security.no_new_privileges = no_new_privileges;
        ids.push(config.id.clone());
        env.run(config).await;
    }
    for id in &ids {
        let exit = env.exited(id).await;
        assert_eq!(exit.0, 0, "{exit:?}");
    }
    assert_eq!(
        env.stdout(&ids[0]),
        ["NoNewPrivs:0", "Seccomp:0", "userns-allowed"]
    );
    assert_eq!(
        env.stdout(&ids[1]),
        ["NoNewPrivs:0", "Seccomp:2", "userns-denied"]
    );
    assert_eq!(
        env.stdout(&ids[2]),
        ["NoNewPrivs:1", "Seccomp:2", "userns-denied"]
    );
}
